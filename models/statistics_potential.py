r"""A fast evaluator of the demonstration model's sufficient-statistics potential.

The potential energy of :meth:`bayes_irl.models.DemonstrationModel.sufficient_statistics_potential`
(linear reward r_theta[s, a] = theta . phi[s, a], exact normaliser on a tabular MDP) is, for
both kinds,

    U(theta) = -log p(theta) - theta . Phi - sum_{t, s} W[t, s] V_t(s) + m log Z(theta),

with the soft values V_t of the backward recursion, value weights W (T + 1, S) and a count m
computed once from the data (the global kind's m log Z with log Z = log sum_s p0(s)
exp V_0(s); m = 0 for the causal kind). Its gradient is phi contracted with dL/dlocal, the
adjoint of the recursion for dL/dV_t = W[t] (minus m softmax(V_0 + log p0) at t = 0). Both
are one call each of :func:`bayes_irl.soft_bellman_kernel.soft_bellman_forward` and
:func:`~bayes_irl.soft_bellman_kernel.soft_bellman_adjoint` (the one compiled copy of the
recursion) on float64 arrays built once, with no autograd graph, no Pyro and no per-call
validation.

:class:`DemonstrationPotential` is a :class:`~bayes_irl.protocols.Potential` (``value_and_grad``,
``torch``, ``hessian``, ``layout``) and a drop-in torch potential ``U({site: theta})``:

* one theta of shape (K,) in float64: the value comes from the kernel, and its backward
  pass returns the kernel's gradient (one ``torch.autograd.Function`` node);
* a second derivative (``create_graph=True``, e.g. the exact Laplace Hessian), a batch of
  thetas, another dtype, or an input the kernel does not take (a state without a finite
  action score, a non-finite value) is handed to the autograd potential it was built from,
  so the function is the same everywhere; only its cost differs.

:meth:`StatisticsPotential.value_and_grad` gives ``(U, dU/dtheta)`` for NumPy callers (the
MAP search, the NUTS and Gaussian-VI kernels); its Hessian is central differences of that
exact gradient. :class:`StatisticsPotential` is the base class of the exact fast potentials
(also :class:`~bayes_irl.models.preference_potential.BradleyTerryPotential`): each one is
proved equal to the potential traced from its model's Pyro program in the tests.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from bayes_irl.parameter_layout import ParameterLayout

__all__ = [
    "DemonstrationPotential",
    "StatisticsPotential",
    "central_difference_hessian",
    "closed_form_normal",
]


class StatisticsPotential:
    """An exact fast potential of one real-valued site theta (K,): z is theta itself.

    Implements :class:`~bayes_irl.protocols.Potential`. Subclasses set ``site``,
    ``reference`` (the autograd potential ``U({site: theta})`` they reproduce), ``_prior``
    and ``_normal`` (:func:`closed_form_normal`), call :meth:`_set_layout`, and implement
    :meth:`_evaluate`. Calling the object gives the torch interface: the NumPy value with
    the NumPy gradient as its backward for one float64 theta of shape (K,) on the CPU, and
    the reference for everything else (batches, other dtypes, second derivatives, inputs
    the evaluator declines).
    """

    site: str
    reference: Callable[[dict[str, Tensor]], Tensor]
    layout: ParameterLayout
    start: Tensor
    deterministic = True
    exact = True
    kind = "sufficient_statistics"
    _prior: object
    _normal: tuple[np.ndarray, np.ndarray] | None

    def _set_layout(self, size: int, dtype: torch.dtype = torch.float64) -> None:
        self.layout = ParameterLayout.real_vector(self.site, size, dtype=dtype)
        self.start = torch.zeros(size, dtype=dtype)

    def _evaluate(self, theta: np.ndarray) -> tuple[float, np.ndarray] | None:
        """``(U(theta), dU/dtheta)`` by the NumPy evaluator, or None to defer to the reference."""
        raise NotImplementedError

    def value_and_grad(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        """``(U(z), dU/dz)`` for z (K,) in float64 NumPy.

        The NumPy evaluator, or autograd through the reference where it declines the input.
        """
        theta = np.asarray(z, dtype=np.float64)
        out = self._evaluate(theta)
        if out is not None:
            return out
        with torch.enable_grad():
            point = torch.as_tensor(theta).requires_grad_(True)
            value = self.reference({self.site: point})
            (grad,) = (torch.autograd.grad(value, point) if value.requires_grad
                       else (torch.zeros_like(point),))
        return float(value.detach()), grad.detach().double().numpy()

    def torch(self, z: Tensor) -> Tensor:
        """``U(z)`` in torch for z (..., K), differentiable twice."""
        return self({self.site: z})

    def hessian(self, z: np.ndarray) -> np.ndarray:
        """Central differences of the exact gradient; autograd where they are not finite."""
        theta = np.asarray(z, dtype=np.float64)
        found = central_difference_hessian(self.value_and_grad, theta)
        if found is not None:
            return found
        return torch.autograd.functional.hessian(
            self.torch, torch.as_tensor(theta)).double().numpy()

    def _log_prior(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """``(log p(theta), d log p / d theta)``: closed form for a Normal, else torch."""
        if self._normal is not None:
            loc, scale = self._normal
            z = (theta - loc) / scale
            value = -0.5 * z @ z - np.log(scale).sum() - 0.5 * len(theta) * np.log(2 * np.pi)
            return float(value), -z / scale
        with torch.enable_grad():
            point = torch.as_tensor(theta).requires_grad_(True)
            value = self._prior.log_prob(point).sum()
            (grad,) = torch.autograd.grad(value, point)
        return float(value.detach()), grad.numpy()

    def __call__(self, params: dict[str, Tensor]) -> Tensor:
        """``U({site: theta})``: NumPy for one float64 theta (K,), the reference otherwise."""
        theta = params[self.site]
        if theta.dim() != 1 or theta.dtype != torch.float64 or theta.device.type != "cpu":
            return self.reference(params)
        if not theta.requires_grad:
            out = self._evaluate(theta.detach().numpy())
            return self.reference(params) if out is None else theta.new_tensor(out[0])
        out = self._evaluate(theta.detach().numpy())
        if out is None:
            return self.reference(params)
        return _FastValue.apply(theta, out[0], torch.from_numpy(out[1]), self)


def closed_form_normal(prior, size: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(loc, scale)`` of shape (size,) for a plain (or ``to_event``) torch Normal, else None.

    The NumPy evaluators write that log density out; any other prior goes through torch.
    """
    base = getattr(prior, "base_dist", prior)
    if type(base) in (torch.distributions.Normal,) or (
        isinstance(base, torch.distributions.Normal)
        and type(base).log_prob is torch.distributions.Normal.log_prob
    ):
        loc = base.loc.detach().cpu().double().numpy()
        scale = base.scale.detach().cpu().double().numpy()
        return np.broadcast_to(loc, (size,)), np.broadcast_to(scale, (size,))
    return None


class DemonstrationPotential(StatisticsPotential):
    """U(theta) and its gradient by the compiled soft-Bellman kernel (see the module docstring).

    Args:
        mdp: the tabular MDP (successors, probabilities, p0, action base measure, horizon).
        features: phi[s, a, k], shape (S, A, K).
        prior: the prior on theta (batch shape (K,)); a Normal is evaluated in closed form,
            any other prior through torch.
        stats: Phi = sum of the demonstrations' feature counts, shape (K,).
        kind: ``"global"`` or ``"causal"``.
        reference: the autograd potential ``U({site: theta}) -> scalar`` this reproduces.
        site: the latent site's name.
        count: m, the multiplier of log Z (global kind: the number of demonstrations whose
            s_0 is modelled; 0 for the causal kind, which has no single Z).
        value_weights: W[t, s], shape (T + 1, S) (both kinds; None means zeros).

    Raises:
        ValueError: for an unknown kind, a causal kind with a log Z count, or value weights
            of the wrong shape.
    """

    def __init__(
        self,
        *,
        mdp,
        features: Tensor,
        prior,
        stats: Tensor,
        kind: str,
        reference: Callable[[dict[str, Tensor]], Tensor],
        site: str,
        count: int = 0,
        value_weights: Tensor | None = None,
    ) -> None:
        from bayes_irl import soft_bellman_kernel as kernel  # imports Numba (~0.3 s)

        self._kernel = kernel
        self._kind_code = kernel.kind_code(kind)
        if kind == "causal" and count != 0:
            raise ValueError(f"the causal kind has no log Z: count must be 0; got {count}")
        num_states, num_actions = mdp.num_states, mdp.num_actions
        self.maxent_kind, self.site, self.reference = kind, site, reference
        self.num_states, self.num_actions, self.horizon = num_states, num_actions, mdp.horizon
        self._succ, self._probs = kernel.padded_transitions(
            mdp.successors.cpu().numpy(),
            mdp.successor_log_probs.detach().exp().cpu().double().numpy(),
        )
        phi = features.detach().cpu().double().numpy()
        self._phi = np.ascontiguousarray(phi.reshape(num_states * num_actions, -1))  # (S·A, K)
        self._base = mdp.action_log_base.detach().cpu().double().numpy().reshape(-1)
        with np.errstate(divide="ignore"):
            self._log_p0 = np.log(mdp.initial.detach().cpu().double().numpy())
        self._stats = stats.detach().cpu().double().numpy()
        self._count = float(count)
        shape = (mdp.horizon + 1, num_states)
        if value_weights is None:
            weights = np.zeros(shape)
        else:
            weights = value_weights.detach().cpu().double().numpy()
        if weights.shape != shape:
            raise ValueError(f"value_weights must have shape (T + 1, S) = {shape}; "
                             f"got {weights.shape}")
        self._weights = np.ascontiguousarray(weights)
        self._prior = prior
        self._normal = closed_form_normal(prior, self._phi.shape[1])
        self._set_layout(self._phi.shape[1], stats.dtype)

    def _evaluate(self, theta: np.ndarray) -> tuple[float, np.ndarray] | None:
        """``(U(theta), dU/dtheta)`` for theta of shape (K,), or None.

        None where the kernel does not take the input (a state without a finite action
        score, a NaN) or the value is not finite: then evaluate the reference potential.
        """
        theta = np.asarray(theta, dtype=np.float64)
        local = self._phi @ theta + self._base  # (S·A,)
        if not self._kernel.local_is_supported(local, self.num_actions):
            return None
        log_lik, grad_local = self._log_likelihood(local)
        prior_value, prior_grad = self._log_prior(theta)
        value = -(prior_value + theta @ self._stats + log_lik)
        grad = -(prior_grad + self._stats + self._phi.T @ grad_local)
        if not (np.isfinite(value) and np.isfinite(grad).all()):
            return None
        return float(value), grad

    def _log_likelihood(self, local: np.ndarray) -> tuple[float, np.ndarray]:
        """``sum_{t,s} W[t, s] V_t(s) - m log Z`` and its gradient w.r.t. local (S·A,).

        One call of :func:`bayes_irl.soft_bellman_kernel.soft_bellman_forward` and one of
        its adjoint, with dL/dV_t = W[t] and, at t = 0, minus m softmax(V_0 + log p0).
        """
        values, policies, inverse_sums = self._kernel.soft_bellman_forward(
            local[None], self._succ, self._probs, self.num_actions, self.horizon,
            self._kind_code)
        values = values[0]
        total = float((self._weights * values).sum())
        grad_values = self._weights.copy()
        if self._count:
            start = values[0] + self._log_p0
            top = start.max()
            weights = np.exp(start - top)
            norm = weights.sum()
            total -= self._count * (top + np.log(norm))
            grad_values[0] -= self._count * weights / norm  # m d log Z / d V_0
        grad_local = self._kernel.soft_bellman_adjoint(
            grad_values[None], values[None], policies, inverse_sums, self._succ, self._probs,
            self.num_actions, self._kind_code)
        return total, grad_local[0]


def central_difference_hessian(
    value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]],
    theta: np.ndarray,
    step: float = 1e-4,
) -> np.ndarray | None:
    """The Hessian of U by central differences of its exact gradient, or None.

    2·D gradient evaluations instead of D double back-propagations through the recursion
    (about 20 ms against 2.1 s at 10×10, D = 4). A first pass steps by
    ``step·max(1, |theta_i|)``; a second steps by 1e-3 of each coordinate's posterior sd
    as the first pass estimates it (1/sqrt(H_ii)), because the first step can be a large
    fraction of the sd of a badly scaled coordinate (features x1000: 25% of an sd, a 1%
    error in the covariance). At 1e-3 sd the truncation error is O(1e-6) relative and the
    rounding error eps·|grad|/step is far below it. None where a gradient is not finite.
    """
    first = _central_differences(value_and_grad, theta, step * np.maximum(1.0, np.abs(theta)))
    if first is None:
        return None
    curvature = np.diag(first)
    if (curvature > 0).all():
        second = _central_differences(value_and_grad, theta, 1e-3 / np.sqrt(curvature))
        if second is not None:
            return second
    return first


def _central_differences(value_and_grad, theta: np.ndarray, steps: np.ndarray):
    """Rows (grad(theta + h_i e_i) - grad(theta - h_i e_i)) / 2h_i; None if not finite."""
    dim = theta.shape[0]
    hessian = np.empty((dim, dim))
    for i in range(dim):
        up, down = theta.copy(), theta.copy()
        up[i] += steps[i]
        down[i] -= steps[i]
        (_, plus), (_, minus) = value_and_grad(up), value_and_grad(down)
        row = (plus - minus) / (2 * steps[i])
        if not np.isfinite(row).all():
            return None
        hessian[i] = row
    return hessian


class _FastValue(torch.autograd.Function):
    """U with the fast gradient as its backward; double backward goes to the reference."""

    @staticmethod
    def forward(ctx, theta, value, grad, potential):  # noqa: D102
        ctx.save_for_backward(theta, grad)
        ctx.potential = potential
        return theta.new_tensor(value)

    @staticmethod
    def backward(ctx, grad_output):  # noqa: D102
        theta, grad = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: a Hessian is wanted
            with torch.enable_grad():
                point = theta.detach().requires_grad_(True)
                ref = ctx.potential.reference({ctx.potential.site: point})
                (ref_grad,) = torch.autograd.grad(ref, point, create_graph=True)
            # a graph through `theta` itself: re-express the gradient as a function of it
            ref_grad = _reattach(ref_grad, point, theta)
            return grad_output * ref_grad, None, None, None
        return grad_output * grad, None, None, None


def _reattach(value: Tensor, point: Tensor, theta: Tensor) -> Tensor:
    """``value(point)`` as a differentiable function of ``theta`` (same numbers)."""

    class _Through(torch.autograd.Function):
        @staticmethod
        def forward(ctx, theta):  # noqa: D102
            return value.detach().clone()

        @staticmethod
        def backward(ctx, grad):  # noqa: D102
            (out,) = torch.autograd.grad(value, point, grad, retain_graph=True)
            return out

    return _Through.apply(theta)
