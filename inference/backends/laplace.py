r"""The MAP and the Laplace approximation on a model's potential: the first stage of every fit.

On the model's :class:`~bayes_irl.protocols.Potential` U(z) = -log p(theta(z), data) + const
(:func:`bayes_irl.models.model_potential`: the exact fast one, or the one traced from the
Pyro program), the MAP is found by L-BFGS (SciPy's L-BFGS-B), then polished by Newton
steps on the Hessian H of U (``Potential.hessian``: central differences of the exact
gradient for the fast potentials, double back-propagation for the traced one; D x D, D
small), and the Laplace covariance is the inverse Hessian at the MAP:

    z_MAP = argmin U(z),        Sigma = [nabla^2 U(z_MAP)]^{-1}.

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

The result starts every default fit: ``method="laplace"`` returns N(z_MAP, Sigma)
(constrained through the potential's layout); SVI initialises its guide there; NUTS/HMC
start at the MAP with Sigma as the inverse mass matrix. A fast potential needs no Pyro
tracing per evaluation; the traced one runs the program once per evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.optimize
import torch

from bayes_irl.models.potential import model_potential
from bayes_irl.parameter_layout import ParameterLayout
from bayes_irl.protocols import Potential

__all__ = [
    "NEWTON_TOLERANCE",
    "LaplaceFit",
    "NewtonPolish",
    "find_laplace",
    "laplace_start",
    "model_laplace",
    "newton_polish",
    "positive_definite_cholesky",
]

NEWTON_TOLERANCE = 1e-3
"""Largest Newton decrement sqrt(g^T H^{-1} g) of a converged MAP, in posterior sds."""

_POLISH = 1e-3
"""The Newton polish aims at ``_POLISH * newton_tol`` (convergence is judged at newton_tol)."""


@dataclass
class LaplaceFit:
    """The MAP and the Laplace covariance of a potential, in its unconstrained space z.

    Attributes:
        layout: the parameter layout of z (latent sites, shapes, transforms).
        loc: the MAP z_MAP, shape (D,).
        covariance: the inverse Hessian of U at the MAP, shape (D, D).
        potential: the :class:`~bayes_irl.protocols.Potential` that was minimised.
        grad_norm: max |dU/dtheta| at the MAP (reported; not the stopping criterion).
        newton_decrement: sqrt(g^T H^{-1} g) at the MAP, the remaining Newton step in
            posterior standard deviations (the stopping criterion's quantity).
        num_evaluations: potential evaluations by L-BFGS (line search included) and the
            Newton polish.
        num_newton_steps: Newton steps taken after L-BFGS.
        converged: whether ``newton_decrement <= newton_tol``.
        wall_time: seconds for the optimisation and the Hessian.
    """

    layout: ParameterLayout
    loc: torch.Tensor
    covariance: torch.Tensor
    potential: Potential
    grad_norm: float
    newton_decrement: float
    num_evaluations: int
    num_newton_steps: int
    converged: bool
    wall_time: float

    def constrain(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """The latent sites' values of draws z (..., D): name -> (..., *site shape)."""
        return self.layout.constrain(z)


def find_laplace(
    potential: Potential,
    init: torch.Tensor | None = None,
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
        potential: the :class:`~bayes_irl.protocols.Potential`.
        init: starting point z, shape (D,); default zeros (the centre of the usual
            N(0, 1) prior), or the prior draw of a traced potential (``potential.start``)
            where zero is outside its support.
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
    dtype = potential.layout.dtype
    if init is None:
        init = torch.zeros(potential.layout.size, dtype=dtype)
        if not np.isfinite(potential.value_and_grad(init.double().numpy())[0]):
            init = potential.start
    evaluations = 0
    evaluate = potential.value_and_grad

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
        lambda x: positive_definite_cholesky(torch.from_numpy(potential.hessian(x))),
        theta, value, grad, newton_tol=newton_tol, max_newton_steps=max_newton_steps)
    theta, grad, chol, decrement, newton_steps = polished
    covariance = torch.cholesky_inverse(chol)
    covariance = 0.5 * (covariance + covariance.T)
    return LaplaceFit(
        layout=potential.layout,
        loc=torch.as_tensor(theta, dtype=dtype),
        covariance=covariance.to(dtype),
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


def model_laplace(
    model,
    data,
    *,
    init_values: dict[str, torch.Tensor] | None = None,
    newton_tol: float = NEWTON_TOLERANCE,
    max_iter: int = 500,
    max_newton_steps: int = 20,
    potential: Potential | None = None,
) -> LaplaceFit | None:
    """:func:`find_laplace` on the model's potential, or None where it is not deterministic.

    Args:
        model: a bayes_irl model.
        data: its prepared data.
        init_values: latent site -> starting value (constrained; e.g. a previous MAP);
            default zeros in z (the centre of the usual N(0, 1) prior).
        newton_tol: see :func:`find_laplace`.
        max_iter: see :func:`find_laplace`.
        max_newton_steps: see :func:`find_laplace`.
        potential: the model's potential when the caller has it
            (:func:`bayes_irl.models.model_potential` otherwise).

    Returns:
        The :class:`LaplaceFit`, or None when the model's potential is an estimate (an
        importance-sampled normaliser): a MAP of a noisy function is not defined.
    """
    if potential is None:
        potential = model_potential(model, data)
    if not potential.deterministic:
        return None
    layout = potential.layout
    init = None
    if init_values is not None and set(layout.names) <= set(init_values):
        init = layout.flatten({name: torch.as_tensor(init_values[name]).to(layout.dtype)
                               for name in layout.names}).reshape(layout.size)
    return find_laplace(potential, init, newton_tol=newton_tol, max_iter=max_iter,
                        max_newton_steps=max_newton_steps)


def laplace_start(model, data, **options) -> tuple[LaplaceFit | None, str]:
    """The Laplace fit that starts SVI and NUTS, or None with the reason it is not there.

    :func:`model_laplace`; where the Hessian at the MAP is not positive definite (a
    non-identifiable reward: the symmetric hidden units of an MLP) or the potential is an
    estimate, SVI starts from the guide's own initialisation and NUTS from Pyro's
    ``init_to_uniform``, and the reason goes into the posterior's ``attrs``.

    Returns:
        ``(fit, "")`` or ``(None, reason)``.
    """
    try:
        found = model_laplace(model, data, **options)
    except ValueError as error:
        return None, f"no Laplace start: {error}"
    if found is None:
        return None, "no Laplace start: the potential is an estimate"
    return found, ""
