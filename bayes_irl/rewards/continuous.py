r"""Reward models of continuous trajectories (states ``(..., T+1, dx)``, actions ``(..., T, du)``).

Both subclass :class:`bayes_irl.rewards.base.RewardModel` (``forward()`` samples theta in
``pyro.plate(dim_name, P, dim=-1)`` and returns it; ``returns(theta, states, actions)``),
and give their per-step values as ``rewards_per_step(theta, states, actions) -> (..., T)``:

* :class:`QuadraticReward`: :math:`r_\theta(x, u) = -\tfrac12 (\sum_i q_i x_i^2 +
  \sum_j r_j u_j^2)`, :math:`\theta = (q, r) > 0`, prior LogNormal(0, 1) per coordinate;
  the reward of :mod:`bayes_irl.linear_quadratic`, for which ``ExactNormalizer(lq_mdp)``
  computes ``log Z`` analytically;
* :class:`NeuralStateReward`: :math:`r_w(x, u) = \sum_h w_{2,h} \tanh(W_1 x + b_1)_h -
  \tfrac12 \sum_j \rho_j u_j^2` with every MLP weight drawn from its prior (a Bayesian
  neural reward) and a fixed, known control cost :math:`\rho > 0`. The state part is
  bounded (:math:`|r| \le \sum_h |w_{2,h}|`), so :math:`Z < \infty` for every :math:`w`;
  the output bias is omitted because a constant step reward cancels in :math:`Z`.

Shapes: ``theta`` is ``theta_batch + (P,)``; results broadcast ``theta_batch`` against the
trajectories' batch right-aligned (``theta[..., None, :]`` scores every theta against every
trajectory).
"""

from __future__ import annotations

from typing import Any

import pyro.distributions as dist
import torch
from torch import Tensor
from torch.distributions import constraints

from bayes_irl.continuous import quadratic_features
from bayes_irl.rewards.base import RewardModel
from bayes_irl.validation import positive_int

__all__ = ["NeuralStateReward", "QuadraticReward"]


class QuadraticReward(RewardModel):
    """``r(x, u) = -1/2 (sum_i q_i x_i^2 + sum_j r_j u_j^2)`` with ``theta = (q, r) > 0``.

    The reward of :mod:`bayes_irl.linear_quadratic` (same parameter order and names), so
    the exact normaliser applies to it on LQ dynamics.

    Args:
        state_dim: ``dx``.
        action_dim: ``du``.
        prior: univariate prior with positive support; default LogNormal(0, 1).
        dtype: dtype of the default prior.

    Raises:
        ValueError: for bad dimensions or a prior whose support is not positive.

    Examples:
        >>> import torch
        >>> reward = QuadraticReward(2, 1)
        >>> states, actions = torch.ones(4, 11, 2), torch.ones(4, 10, 1)
        >>> reward.returns(torch.ones(3, 1, 3), states, actions).shape
        torch.Size([3, 4])
        >>> reward.rewards_per_step(torch.ones(3), states, actions).shape
        torch.Size([4, 10])
    """

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        *,
        prior: dist.Distribution | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        self.state_dim = positive_int(state_dim, "`state_dim`")
        self.action_dim = positive_int(action_dim, "`action_dim`")
        if prior is None:
            prior = dist.LogNormal(torch.tensor(0.0, dtype=dtype), torch.tensor(1.0, dtype=dtype))
        support = getattr(prior, "support", None)
        if support not in (constraints.positive, constraints.nonnegative) and not isinstance(
            support, (constraints.greater_than, constraints.greater_than_eq)
        ):
            raise ValueError(
                f"`prior` must have positive support (theta > 0), e.g. LogNormal or "
                f"HalfNormal; got {prior!r} with support {support}"
            )
        super().__init__(prior=prior, num_params=self.state_dim + self.action_dim)

    @property
    def param_names(self) -> list[str]:
        """``["q_0", ..., "q_{dx-1}", "r_0", ..., "r_{du-1}"]`` (state then control costs)."""
        return [f"q_{i}" for i in range(self.state_dim)] + [
            f"r_{j}" for j in range(self.action_dim)
        ]

    def check_theta(self, theta: Any) -> Tensor:
        """As :meth:`RewardModel.check_theta`, and every ``theta`` must be > 0.

        Raises:
            ValueError: for a wrong shape, NaN/inf, or a non-positive weight.
        """
        theta = super().check_theta(theta)
        if not bool((theta > 0).all()):
            raise ValueError(
                f"`theta` (the quadratic costs q, r) must be > 0; got {theta.detach()}"
            )
        return theta

    def features(self, states: Tensor, actions: Tensor) -> Tensor:
        """``-1/2 [sum_{t<T} x_t^2, sum_{t<T} u_t^2]``, shape ``traj_batch + (D,)``.

        See :func:`bayes_irl.continuous.quadratic_features`.
        """
        return quadratic_features(states, actions)

    def rewards_per_step(self, theta: Tensor, states: Tensor, actions: Tensor) -> Tensor:
        """``r_theta(x_t, u_t)`` for ``t < T``.

        Args:
            theta: shape ``theta_batch + (D,)``.
            states: shape ``traj_batch + (T+1, dx)`` (``x_T`` is unused).
            actions: shape ``traj_batch + (T, du)``.

        Returns:
            Shape ``broadcast(theta_batch, traj_batch) + (T,)``.
        """
        theta = self.check_theta(theta).to(states.dtype)
        q, r = theta[..., None, : self.state_dim], theta[..., None, self.state_dim :]
        return -0.5 * ((states[..., :-1, :].pow(2) * q).sum(-1) + (actions.pow(2) * r).sum(-1))

    def returns(self, theta: Tensor, states: Tensor, actions: Tensor) -> Tensor:
        """``R_theta = theta . features``; shape ``broadcast(theta_batch, traj_batch)``."""
        theta = self.check_theta(theta).to(states.dtype)
        return (theta * self.features(states, actions)).sum(-1)


class NeuralStateReward(RewardModel):
    """Bayesian MLP state reward plus a known quadratic control cost.

    ``r_w(x, u) = w2 . tanh(x W1 + b1) - 1/2 sum_j rho_j u_j^2``; ``theta`` packs
    ``W1 (dx, H)``, ``b1 (H,)``, ``w2 (H,)`` (``P = dx H + 2 H``), each with the prior.

    Args:
        state_dim: ``dx``.
        action_dim: ``du``.
        control_cost: ``rho``, a positive float or ``(du,)`` values (known, not inferred).
        hidden: ``H``.
        prior: univariate prior of every weight; default Normal(0, 1).
        dtype: dtype of the default prior and of ``rho``.

    Raises:
        ValueError: for bad dimensions or ``rho <= 0``.

    Examples:
        >>> import torch
        >>> reward = NeuralStateReward(2, 1, control_cost=0.1, hidden=4)
        >>> theta = torch.zeros(5, 1, reward.num_params, dtype=torch.float64)
        >>> states = torch.zeros(7, 11, 2, dtype=torch.float64)
        >>> actions = torch.zeros(7, 10, 1, dtype=torch.float64)
        >>> reward.rewards_per_step(theta, states, actions).shape
        torch.Size([5, 7, 10])
    """

    site_name = "mlp_weights"
    dim_name = "mlp_param"

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        *,
        control_cost: float | Any,
        hidden: int = 8,
        prior: dist.Distribution | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        dx = positive_int(state_dim, "`state_dim`")
        du = positive_int(action_dim, "`action_dim`")
        h = positive_int(hidden, "`hidden`")
        if prior is None:
            prior = dist.Normal(torch.tensor(0.0, dtype=dtype), torch.tensor(1.0, dtype=dtype))
        super().__init__(prior=prior, num_params=dx * h + 2 * h)
        rho = torch.as_tensor(control_cost, dtype=dtype).expand(du).clone()
        if not bool(torch.isfinite(rho).all()) or not bool((rho > 0).all()):
            raise ValueError(
                f"`control_cost` rho must be finite and > 0 (it makes Z finite); got {rho}"
            )
        self.state_dim, self.action_dim = dx, du
        self.control_cost, self.hidden = rho, h

    @property
    def param_names(self) -> list[str]:
        """``w1[i,j]``, ``b1[j]``, ``w2[j]``: the packed MLP weights."""
        dx, h = self.state_dim, self.hidden
        return (
            [f"w1[{i},{j}]" for i in range(dx) for j in range(h)]
            + [f"b1[{j}]" for j in range(h)]
            + [f"w2[{j}]" for j in range(h)]
        )

    def state_reward(self, theta: Tensor, x: Tensor) -> Tensor:
        """The MLP part ``w2 . tanh(x W1 + b1)``.

        Args:
            theta: shape ``theta_batch + (P,)``.
            x: states, shape ``x_batch + (N, dx)`` (``N`` points per batch element).

        Returns:
            Shape ``broadcast(theta_batch, x_batch) + (N,)``.
        """
        theta = self.check_theta(theta).to(x.dtype)
        dx, h = self.state_dim, self.hidden
        batch = theta.shape[:-1]
        w1 = theta[..., : dx * h].reshape(*batch, dx, h)
        b1 = theta[..., dx * h : dx * h + h].reshape(*batch, 1, h)
        w2 = theta[..., dx * h + h :].reshape(*batch, h, 1)
        return (torch.tanh(x @ w1 + b1) @ w2).squeeze(-1)

    def rewards_per_step(self, theta: Tensor, states: Tensor, actions: Tensor) -> Tensor:
        """``r_w(x_t, u_t)`` for ``t < T``.

        Args:
            theta: shape ``theta_batch + (P,)``.
            states: shape ``traj_batch + (T+1, dx)`` (``x_T`` is unused).
            actions: shape ``traj_batch + (T, du)``.

        Returns:
            Shape ``broadcast(theta_batch, traj_batch) + (T,)``.
        """
        state_part = self.state_reward(theta, states[..., :-1, :])
        control = -0.5 * (actions.pow(2) * self.control_cost.to(actions.dtype)).sum(-1)
        return state_part + control

    def returns(self, theta: Tensor, states: Tensor, actions: Tensor) -> Tensor:
        """``R_w = sum_{t<T} r_w(x_t, u_t)``; shape ``broadcast(theta_batch, traj_batch)``."""
        return self.rewards_per_step(theta, states, actions).sum(-1)
