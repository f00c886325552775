r"""The MAP and the Laplace approximation on a cheap potential: the first stage of every fit.

For a model that offers a potential energy U(theta) = -log p(theta, data) + const whose
cost does not grow with the number of observations
(:class:`bayes_irl.protocols.SufficientStatistics`), the MAP is found by L-BFGS
(SciPy's L-BFGS-B) on U to a gradient tolerance, and the Laplace covariance is the
inverse of the exact Hessian of U at the MAP (D x D, D small, by double back-propagation
through the recursion):

    theta_MAP = argmin U(theta),        Sigma = [nabla^2 U(theta_MAP)]^{-1}.

The result starts every default fit: ``method="laplace"`` returns N(theta_MAP, Sigma);
SVI initialises its guide there; NUTS/HMC start at the MAP with Sigma as the inverse mass
matrix. No Pyro tracing happens per evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyro
import scipy.optimize
import torch

from bayes_irl.models.lean_potential import numpy_value_and_grad

__all__ = ["LaplaceFit", "find_laplace", "model_laplace", "sufficient_statistics_potential"]


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
        grad_norm: max |dU/dtheta| at the MAP (the stopping criterion's quantity).
        num_evaluations: potential evaluations by L-BFGS (line search included).
        converged: whether the gradient tolerance was reached.
        wall_time: seconds for the optimisation and the Hessian.
    """

    site: str
    loc: torch.Tensor
    covariance: torch.Tensor
    potential: Callable
    grad_norm: float
    num_evaluations: int
    converged: bool
    wall_time: float


def find_laplace(
    potential: Callable,
    site: str,
    init: torch.Tensor,
    *,
    grad_tol: float = 1e-6,
    max_iter: int = 500,
) -> LaplaceFit:
    """MAP by L-BFGS to ``max |grad U| <= grad_tol``, then the exact Hessian.

    Args:
        potential: ``U({site: theta (D,)}) -> scalar``, differentiable twice.
        site: the latent site's name.
        init: starting point, shape (D,) (its dtype and device are used throughout).
        grad_tol: tolerance on the largest absolute gradient coordinate; U is a sum over
            observations, so 1e-6 puts the MAP within ~1e-6 / (n · curvature) of the
            optimum, far below any posterior sd.
        max_iter: the most L-BFGS iterations.

    Returns:
        The :class:`LaplaceFit`.

    Raises:
        FloatingPointError: if U or its gradient becomes non-finite.
        ValueError: if the Hessian at the optimum is not positive definite (the potential
            has no proper mode there; use SVI or NUTS).
    """
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
        return out

    # SciPy's L-BFGS-B (no torch.optim: its first use imports torch._dynamo, ~4 s) stops
    # when max |grad U| <= grad_tol; ftol=0 turns off the relative-decrease stop
    found = scipy.optimize.minimize(
        value_and_grad,
        init.detach().cpu().double().numpy(),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "maxcor": 20, "gtol": grad_tol, "ftol": 0.0},
    )
    theta = torch.as_tensor(found.x, dtype=dtype, device=device)
    loc = theta.detach()
    with torch.enable_grad():
        point = loc.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(potential({site: point}), point)
    grad_norm = float(grad.abs().max())
    if not torch.isfinite(grad).all():
        raise FloatingPointError("the potential's gradient at the MAP is not finite")
    hessian = _lean_hessian(potential, found.x) if dtype == torch.float64 else None
    if hessian is None:
        hessian = torch.autograd.functional.hessian(lambda t: potential({site: t}), loc)
    hessian = 0.5 * (hessian.to(dtype) + hessian.to(dtype).T)
    chol, info = torch.linalg.cholesky_ex(hessian)
    if int(info) != 0:
        raise ValueError(
            "the Hessian of the negative log joint at the MAP is not positive definite; the "
            "Laplace approximation does not apply (try method='svi' or 'nuts')"
        )
    covariance = torch.cholesky_inverse(chol)
    return LaplaceFit(
        site=site,
        loc=loc,
        covariance=0.5 * (covariance + covariance.T),
        potential=potential,
        grad_norm=grad_norm,
        num_evaluations=evaluations,
        converged=grad_norm <= grad_tol,
        wall_time=time.perf_counter() - start,
    )


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
    grad_tol: float = 1e-6,
    max_iter: int = 500,
) -> LaplaceFit | None:
    """:func:`find_laplace` on the model's cheap potential, or None where it has none.

    Args:
        model: a bayes_irl model.
        data: its prepared data.
        init_values: latent site -> starting value (e.g. a previous MAP); default zeros
            (the centre of the usual N(0, 1) prior).
        grad_tol: see :func:`find_laplace`.
        max_iter: see :func:`find_laplace`.

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
                        grad_tol=grad_tol, max_iter=max_iter)


def _site_dtype(model, data, site: str) -> torch.dtype:
    """The dtype the model samples ``site`` in (one trace; the RNG state is restored)."""
    with torch.random.fork_rng(devices=[]):
        return pyro.poutine.trace(model).get_trace(data).nodes[site]["value"].dtype
