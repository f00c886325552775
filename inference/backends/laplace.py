r"""The MAP and the Laplace approximation on a cheap potential: the first stage of every fit.

For a model that offers a potential energy U(theta) = -log p(theta, data) + const whose
cost does not grow with the number of observations
(:class:`bayes_irl.protocols.SufficientStatistics`), the MAP is found by L-BFGS
(SciPy's L-BFGS-B) on U, then polished by Newton steps on the exact Hessian H of U
(D x D, D small: double back-propagation through the recursion, or central differences
of the exact gradient), and the Laplace covariance is the inverse Hessian at the MAP:

    theta_MAP = argmin U(theta),        Sigma = [nabla^2 U(theta_MAP)]^{-1}.

Convergence is judged on the scale of the posterior, not of the gradient: the Newton
decrement

    delta = sqrt(g^T H^{-1} g),          g = nabla U(theta),

is the length of the remaining Newton step measured in posterior standard deviations
(the Mahalanobis norm of Sigma), so ``delta <= 1e-3`` says the MAP lies within a
thousandth of a posterior sd of the stationary point whatever the units of the features
or the number of observations. A raw gradient tolerance is not portable: U is a sum over
n observations, and the rounding floor of its gradient grows with n and with the
summation order (BLAS, threads, the compiled kernel), so a tolerance set near it passes
on one machine and fails on another. The decrement's own rounding floor is
~eps · (sum of |terms| of the gradient) · sd, many orders below 1e-3.

The result starts every default fit: ``method="laplace"`` returns N(theta_MAP, Sigma);
SVI initialises its guide there; NUTS/HMC start at the MAP with Sigma as the inverse mass
matrix. No Pyro tracing happens per evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pyro
import scipy.optimize
import torch

from bayes_irl.models.lean_potential import numpy_value_and_grad

__all__ = [
    "NEWTON_TOLERANCE",
    "LaplaceFit",
    "NewtonPolish",
    "find_laplace",
    "model_laplace",
    "newton_polish",
    "positive_definite_cholesky",
    "sufficient_statistics_potential",
]

NEWTON_TOLERANCE = 1e-3
"""Largest Newton decrement sqrt(g^T H^{-1} g) of a converged MAP, in posterior sds."""

_POLISH = 1e-3
"""The Newton polish aims at ``_POLISH * newton_tol`` (convergence is judged at newton_tol)."""


def sufficient_statistics_potential(model, data):
    """Return ``(potential_fn, site_name, num_params)``, or None where it does not apply.

    Asks the model (:class:`bayes_irl.protocols.SufficientStatistics`): a model without
    ``sufficient_statistics_potential``, or whose method returns None, gets None. The site
    and its size come from ``model.latent_dims`` (one latent site).

    Args:
        model: the model.
        data: its prepared data.

    Returns:
        ``potential_fn({site_name: theta (D,)}) -> scalar`` equal to the negative log joint
        density up to a constant, the latent site's name, and D; or None.
    """
    method = getattr(model, "sufficient_statistics_potential", None)
    potential = None if method is None else method(data)
    if potential is None or len(model.latent_dims) != 1:
        return None
    ((site, (_, names)),) = model.latent_dims.items()
    return potential, site, len(names)


@dataclass
class LaplaceFit:
    """The MAP and the Laplace covariance of a one-site potential.

    Attributes:
        site: the latent site's name.
        loc: the MAP theta_MAP, shape (D,).
        covariance: the inverse Hessian of U at the MAP, shape (D, D).
        potential: the potential ``U({site: theta}) -> scalar`` that was minimised.
        grad_norm: max |dU/dtheta| at the MAP (reported; not the stopping criterion).
        newton_decrement: sqrt(g^T H^{-1} g) at the MAP, the remaining Newton step in
            posterior standard deviations (the stopping criterion's quantity).
        num_evaluations: potential evaluations by L-BFGS (line search included) and the
            Newton polish.
        num_newton_steps: Newton steps taken after L-BFGS.
        converged: whether ``newton_decrement <= newton_tol``.
        wall_time: seconds for the optimisation and the Hessian.
    """

    site: str
    loc: torch.Tensor
    covariance: torch.Tensor
    potential: Callable
    grad_norm: float
    newton_decrement: float
    num_evaluations: int
    num_newton_steps: int
    converged: bool
    wall_time: float


def find_laplace(
    potential: Callable,
    site: str,
    init: torch.Tensor,
    *,
    newton_tol: float = NEWTON_TOLERANCE,
    max_iter: int = 500,
    max_newton_steps: int = 20,
) -> LaplaceFit:
    """MAP by L-BFGS and a Newton polish on the exact Hessian, then the Laplace covariance.

    L-BFGS brings theta close to the mode; Newton steps theta <- theta - H^{-1} g (halved
    until U does not rise beyond its rounding) then converge quadratically. The fit has
    converged when the Newton decrement sqrt(g^T H^{-1} g) is at most ``newton_tol``
    posterior sds (see the module docstring for why this criterion is portable and a
    gradient tolerance is not); the polish goes on to 1e-3 of that, or until the
    decrement stops halving (its rounding floor), so that the covariance is the inverse
    Hessian at the mode itself.

    Args:
        potential: ``U({site: theta (D,)}) -> scalar``, differentiable twice.
        site: the latent site's name.
        init: starting point, shape (D,) (its dtype and device are used throughout).
        newton_tol: tolerance on the Newton decrement, in posterior standard deviations.
        max_iter: the most L-BFGS iterations.
        max_newton_steps: the most Newton steps after L-BFGS.

    Returns:
        The :class:`LaplaceFit`; ``converged`` is False (and the fit's convergence check
        fails) when the decrement is still above ``newton_tol`` after the polish.

    Raises:
        FloatingPointError: if U or its gradient becomes non-finite.
        ValueError: if ``newton_tol`` is not positive, or the Hessian at the optimum is not
            positive definite (the potential has no proper mode there; use SVI or NUTS).
    """
    if not newton_tol > 0:
        raise ValueError(f"newton_tol must be > 0 (posterior sds); got {newton_tol}")
    start = time.perf_counter()
    dtype, device = init.dtype, init.device
    evaluations = 0

    # the model's NumPy evaluator where it has one (no autograd graph per call)
    evaluate = numpy_value_and_grad(potential, site, dtype=dtype, device=device)

    def value_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal evaluations
        evaluations += 1
        out = evaluate(x)
        if not (np.isfinite(out[0]) and np.isfinite(out[1]).all()):
            raise FloatingPointError(
                f"the potential (or its gradient) became {out[0]} during the MAP search; "
                "check the data and the prior"
            )
        return float(out[0]), np.asarray(out[1], dtype=float)

    # SciPy's L-BFGS-B (no torch.optim: its first use imports torch._dynamo, ~4 s); its
    # own stop only needs to bring theta into Newton's basin, the polish below decides
    found = scipy.optimize.minimize(
        value_and_grad,
        init.detach().cpu().double().numpy(),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "maxcor": 20, "gtol": 1e-8, "ftol": 0.0},
    )
    theta = np.asarray(found.x, dtype=float)
    value, grad = value_and_grad(theta)
    polished = newton_polish(
        value_and_grad,
        lambda x: positive_definite_cholesky(_hessian(potential, site, x, dtype, device)),
        theta, value, grad, newton_tol=newton_tol, max_newton_steps=max_newton_steps)
    theta, grad, chol, decrement, newton_steps = polished
    covariance = torch.cholesky_inverse(chol)
    return LaplaceFit(
        site=site,
        loc=torch.as_tensor(theta, dtype=dtype, device=device),
        covariance=0.5 * (covariance + covariance.T),
        potential=potential,
        grad_norm=float(np.abs(grad).max()),
        newton_decrement=decrement,
        num_evaluations=evaluations,
        num_newton_steps=newton_steps,
        converged=bool(decrement <= newton_tol),
        wall_time=time.perf_counter() - start,
    )


class NewtonPolish(NamedTuple):
    """Where :func:`newton_polish` stopped."""

    theta: np.ndarray
    """The polished point, shape (D,)."""
    grad: np.ndarray
    """dU/dtheta there, shape (D,)."""
    chol: torch.Tensor
    """Lower Cholesky factor of the Hessian there, shape (D, D)."""
    decrement: float
    """The Newton decrement sqrt(g^T H^{-1} g) there, in posterior sds."""
    steps: int
    """Newton steps taken."""


def newton_polish(
    value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]],
    hessian_chol: Callable[[np.ndarray], torch.Tensor],
    theta: np.ndarray,
    value: float,
    grad: np.ndarray,
    *,
    newton_tol: float,
    max_newton_steps: int,
) -> NewtonPolish:
    """Newton steps theta <- theta - H^{-1} g from a point near the mode (e.g. L-BFGS's).

    Each step is halved until U does not rise beyond its rounding; the polish goes past
    ``newton_tol`` to ``1e-3 * newton_tol`` (quadratic convergence: one or two more
    steps), so that the Hessian, and so the covariance, is taken at the mode itself, and
    stops early where the decrement, once within ``newton_tol``, no longer halves (its
    rounding floor), or where the Newton direction does not descend.

    Args:
        value_and_grad: ``theta (D,) -> (U, dU/dtheta)``.
        hessian_chol: ``theta (D,) -> L`` with ``L L^T`` the Hessian of U, shape (D, D).
        theta: the starting point, shape (D,).
        value: U at ``theta``.
        grad: dU/dtheta at ``theta``, shape (D,).
        newton_tol: the convergence tolerance on the decrement, in posterior sds.
        max_newton_steps: the most Newton steps.

    Returns:
        The :class:`NewtonPolish` ``(theta, grad, chol, decrement, steps)``.
    """
    chol = hessian_chol(theta)
    decrement = _newton_decrement(chol, grad)
    steps = 0
    while decrement > _POLISH * newton_tol and steps < max_newton_steps:
        step = torch.cholesky_solve(torch.from_numpy(grad).to(chol).unsqueeze(-1),
                                    chol).squeeze(-1).cpu().double().numpy()
        # rounding of U at this scale: a step whose rise stays below it is accepted
        slack = 1e3 * np.finfo(float).eps * max(abs(value), 1.0)
        scale = 1.0
        for _ in range(30):
            trial = theta - scale * step
            trial_value, trial_grad = value_and_grad(trial)
            if trial_value <= value + slack:
                break
            scale *= 0.5
        else:
            break  # no descent along the Newton direction: report the decrement reached
        theta, value, grad = trial, trial_value, trial_grad
        steps += 1
        chol = hessian_chol(theta)
        previous, decrement = decrement, _newton_decrement(chol, grad)
        if decrement <= newton_tol and decrement > 0.5 * previous:
            break
    return NewtonPolish(theta, grad, chol, decrement, steps)


def _hessian(potential, site: str, theta: np.ndarray, dtype, device) -> torch.Tensor:
    """The Hessian of U at ``theta``, shape (D, D).

    Central differences of the exact NumPy gradient where the potential has one
    (float64), autograd otherwise.
    """
    hessian = _lean_hessian(potential, theta) if dtype == torch.float64 else None
    if hessian is None:
        point = torch.as_tensor(theta, dtype=dtype, device=device)
        hessian = torch.autograd.functional.hessian(lambda t: potential({site: t}), point)
    return hessian.to(dtype=dtype, device=device)


def positive_definite_cholesky(hessian: torch.Tensor) -> torch.Tensor:
    """The lower Cholesky factor of the symmetrised ``hessian`` (D, D).

    Raises:
        ValueError: if it is not positive definite.
    """
    hessian = 0.5 * (hessian + hessian.T)
    chol, info = torch.linalg.cholesky_ex(hessian)
    if int(info) != 0 or not torch.isfinite(hessian).all():
        raise ValueError(
            "the Hessian of the negative log joint at the MAP is not positive definite; the "
            "Laplace approximation does not apply (try method='svi' or 'nuts')"
        )
    return chol


def _newton_decrement(chol: torch.Tensor, grad: np.ndarray) -> float:
    """sqrt(g^T H^{-1} g) for H = chol chol^T: the Newton step's length in posterior sds."""
    whitened = torch.linalg.solve_triangular(
        chol, torch.from_numpy(grad).to(chol).unsqueeze(-1), upper=False)
    return float(whitened.square().sum().sqrt())


def _lean_hessian(potential, theta: np.ndarray, step: float = 1e-4) -> torch.Tensor | None:
    """Hessian of U by central differences of its exact gradient, or None.

    Only for a potential with a NumPy ``value_and_grad`` (the model's lean evaluator):
    2·D gradient evaluations per pass instead of D double back-propagations through the
    recursion (2.1 s against ~20 ms at 10×10, D = 4). A first pass steps by
    ``step·max(1, |theta_i|)``; a second steps by 1e-3 of each coordinate's posterior sd
    as the first pass estimates it (1/sqrt(H_ii)), because the first step can be a large
    fraction of the sd of a badly scaled coordinate (features x1000: 25% of an sd, a 1%
    error in the covariance). At 1e-3 sd the truncation error is O(1e-6) relative and the
    rounding error eps·|grad|/step is far below it.
    """
    lean = getattr(potential, "value_and_grad", None)
    if lean is None:
        return None
    first = _central_differences(lean, theta, step * np.maximum(1.0, np.abs(theta)))
    if first is None:
        return None
    curvature = np.diag(first)
    if (curvature > 0).all():
        second = _central_differences(lean, theta, 1e-3 / np.sqrt(curvature))
        if second is not None:
            return torch.from_numpy(second)
    return torch.from_numpy(first)


def _central_differences(lean, theta: np.ndarray, steps: np.ndarray) -> np.ndarray | None:
    """Rows (grad(theta + h_i e_i) - grad(theta - h_i e_i)) / 2h_i; None if lean declines."""
    dim = theta.shape[0]
    hessian = np.empty((dim, dim))
    for i in range(dim):
        up, down = theta.copy(), theta.copy()
        up[i] += steps[i]
        down[i] -= steps[i]
        plus, minus = lean(up), lean(down)
        if plus is None or minus is None:
            return None
        hessian[i] = (plus[1] - minus[1]) / (2 * steps[i])
    return hessian


def model_laplace(
    model,
    data,
    *,
    init_values: dict[str, torch.Tensor] | None = None,
    newton_tol: float = NEWTON_TOLERANCE,
    max_iter: int = 500,
    max_newton_steps: int = 20,
) -> LaplaceFit | None:
    """:func:`find_laplace` on the model's cheap potential, or None where it has none.

    Args:
        model: a bayes_irl model.
        data: its prepared data.
        init_values: latent site -> starting value (e.g. a previous MAP); default zeros
            (the centre of the usual N(0, 1) prior).
        newton_tol: see :func:`find_laplace`.
        max_iter: see :func:`find_laplace`.
        max_newton_steps: see :func:`find_laplace`.

    Returns:
        The :class:`LaplaceFit`, or None when the model offers no potential.
    """
    found = sufficient_statistics_potential(model, data)
    if found is None:
        return None
    potential, site, dim = found
    if init_values is not None and site in init_values:
        init = torch.as_tensor(init_values[site]).reshape(dim)
    else:
        init = torch.zeros(dim, dtype=_site_dtype(model, data, site))
    return find_laplace(potential, site, init.to(_site_dtype(model, data, site)),
                        newton_tol=newton_tol, max_iter=max_iter,
                        max_newton_steps=max_newton_steps)


def _site_dtype(model, data, site: str) -> torch.dtype:
    """The dtype the model samples ``site`` in (one trace; the RNG state is restored)."""
    with torch.random.fork_rng(devices=[]):
        return pyro.poutine.trace(model).get_trace(data).nodes[site]["value"].dtype
