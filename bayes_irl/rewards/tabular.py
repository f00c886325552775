"""Reward models of tabular MDPs with priors: linear in features, tabular, and a small MLP.

Every tabular reward model maps a flat parameter vector theta (shape (..., D), any leading
batch dimensions) to a table of step rewards ``r[..., s, a]`` (shape (..., S, A)) with
:meth:`~TabularRewardModel.step_rewards`; the return of a trajectory is
``R(x) = sum_{t<L} r[s_t, a_t]`` (:func:`bayes_irl.trajectories.trajectory_returns`).
Calling a model draws theta from its prior inside a ``pyro.plate`` over the D parameters
and returns theta (see :mod:`bayes_irl.rewards.base`).

Identifiability: under the global maxent model with a fixed horizon, adding a constant c
to every step reward multiplies every exp R(x) by exp(c T), which cancels in Z. A linear
reward is identifiable only if no combination of its features is constant over the
visited state-actions; :func:`check_identifiable` tests the rank condition.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch

from bayes_irl.rewards.base import RewardModel, standard_normal_prior
from bayes_irl.trajectories import trajectory_returns
from bayes_irl.validation import positive_int

__all__ = [
    "LinearReward",
    "MLPReward",
    "TabularReward",
    "TabularRewardModel",
    "check_identifiable",
]

class TabularRewardModel(RewardModel):
    """Base of the tabular rewards: theta (..., D) -> step rewards r[..., s, a].

    Subclasses implement :meth:`step_rewards`; :meth:`returns` sums the step table along
    the trajectories without copying it per trajectory.
    """

    def step_rewards(self, theta: torch.Tensor) -> torch.Tensor:
        """Map theta of shape (..., D) to step rewards of shape (..., S, A)."""
        raise NotImplementedError

    def returns(
        self, theta: torch.Tensor, states: torch.Tensor, actions: torch.Tensor
    ) -> torch.Tensor:
        """``R_theta(x) = sum_{t<L} r_theta[s_t, a_t]``, -1 actions contribute zero.

        Args:
            theta: shape ``theta_batch + (D,)``.
            states: int ``traj_batch + (T + 1,)`` (or ``(T,)``).
            actions: int ``traj_batch + (T,)``, -1 where unobserved.

        Returns:
            Shape ``broadcast(theta_batch, traj_batch)``.
        """
        return trajectory_returns(self.step_rewards(theta), states, actions)


def _state_action_features(features: torch.Tensor, num_actions: int | None) -> torch.Tensor:
    if features.dim() == 2:
        if num_actions is None:
            raise ValueError("num_actions is required with state features of shape (S, K)")
        return features.unsqueeze(1).expand(-1, num_actions, -1)
    if features.dim() != 3:
        raise ValueError(
            f"features must have shape (S, K) or (S, A, K); got {tuple(features.shape)}"
        )
    return features


class LinearReward(TabularRewardModel):
    """Linear reward r(s, a) = theta . phi(s, a) with an independent prior per weight.

    Args:
        features: ``phi[s, a, k]`` of shape (S, A, K), or (S, K) with ``num_actions``.
        prior: univariate prior, batch_shape () or (K,); default Normal(0, 1).
        feature_names: K names (ArviZ coordinates).
        num_actions: A, needed only for state features (S, K).

    Example:
        >>> import torch
        >>> reward = LinearReward(torch.randn(4, 3, 2))
        >>> reward.step_rewards(torch.zeros(5, 2)).shape
        torch.Size([5, 4, 3])
    """

    site_name = "weights"
    dim_name = "feature"

    def __init__(
        self,
        features: torch.Tensor,
        *,
        prior: dist.Distribution | None = None,
        feature_names: list[str] | tuple[str, ...] | None = None,
        num_actions: int | None = None,
    ) -> None:
        feats = _state_action_features(torch.as_tensor(features), num_actions)
        if not torch.isfinite(feats).all():
            raise ValueError("features must be finite (found NaN or inf)")
        if prior is None:
            prior = standard_normal_prior(feats.dtype, feats.device)
        super().__init__(prior=prior, num_params=feats.shape[-1])
        self.features = feats
        names = feature_names or [f"feature_{k}" for k in range(self.num_params)]
        if len(names) != self.num_params:
            raise ValueError(f"feature_names must have {self.num_params} entries; got {len(names)}")
        self._names = list(names)

    @property
    def param_names(self) -> list[str]:  # noqa: D102
        return self._names

    def step_rewards(self, theta: torch.Tensor) -> torch.Tensor:
        """Return ``r[..., s, a] = sum_k theta[..., k] phi[s, a, k]``, shape (..., S, A)."""
        self._check_shape(theta)
        return torch.einsum("...k,sak->...sa", theta.to(self.features.dtype), self.features)


class TabularReward(TabularRewardModel):
    """One reward per state (or per state-action), each with its own prior.

    Not identified along the constant direction under the global model (see module
    docstring): the prior pins that direction down.

    Args:
        num_states: S.
        num_actions: A.
        per_action: if True, D = S·A parameters r[s, a]; else D = S, r[s, a] = theta[s].
        prior: univariate prior, batch_shape () or (D,); default Normal(0, 1).
        dtype: dtype of the default prior.
        device: device of the default prior.
    """

    site_name = "state_rewards"
    dim_name = "state"

    def __init__(
        self,
        num_states: int,
        num_actions: int,
        *,
        per_action: bool = False,
        prior: dist.Distribution | None = None,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device | None = None,
    ) -> None:
        num_states = positive_int(num_states, "num_states")
        num_actions = positive_int(num_actions, "num_actions")
        if prior is None:
            prior = standard_normal_prior(dtype, device)
        super().__init__(prior=prior, num_params=num_states * (num_actions if per_action else 1))
        self.num_states, self.num_actions, self.per_action = num_states, num_actions, per_action
        if per_action:
            self.site_name, self.dim_name = "state_action_rewards", "state_action"

    @property
    def param_names(self) -> list[str]:  # noqa: D102
        if self.per_action:
            return [f"s{s}_a{a}" for s in range(self.num_states) for a in range(self.num_actions)]
        return [f"s{s}" for s in range(self.num_states)]

    def step_rewards(self, theta: torch.Tensor) -> torch.Tensor:
        """Return r of shape (..., S, A)."""
        self._check_shape(theta)
        if self.per_action:
            return theta.reshape(*theta.shape[:-1], self.num_states, self.num_actions)
        return theta.unsqueeze(-1).expand(*theta.shape, self.num_actions)


class MLPReward(TabularRewardModel):
    """Bayesian neural reward: r(s, a) = w2 . tanh(W1^T phi(s, a) + b1).

    All D = K·H + 2H weights are sampled from the prior (a Bayesian neural network). The
    output bias is omitted: it is not identified under the global maxent model.

    Args:
        features: ``phi[s, a, k]`` of shape (S, A, K), or (S, K) with ``num_actions``.
        hidden: H hidden units.
        prior: univariate prior over every weight; default Normal(0, 1).
        num_actions: A, needed only for state features.
    """

    site_name = "mlp_weights"
    dim_name = "mlp_param"

    def __init__(
        self,
        features: torch.Tensor,
        *,
        hidden: int = 8,
        prior: dist.Distribution | None = None,
        num_actions: int | None = None,
    ) -> None:
        feats = _state_action_features(torch.as_tensor(features), num_actions)
        hidden = positive_int(hidden, "hidden")
        k = feats.shape[-1]
        if prior is None:
            prior = standard_normal_prior(feats.dtype, feats.device)
        super().__init__(prior=prior, num_params=k * hidden + 2 * hidden)
        self.features, self.hidden, self.num_inputs = feats, hidden, k

    @property
    def param_names(self) -> list[str]:  # noqa: D102
        k, h = self.num_inputs, self.hidden
        return (
            [f"w1[{i},{j}]" for i in range(k) for j in range(h)]
            + [f"b1[{j}]" for j in range(h)]
            + [f"w2[{j}]" for j in range(h)]
        )

    def step_rewards(self, theta: torch.Tensor) -> torch.Tensor:
        """Return r of shape (..., S, A)."""
        self._check_shape(theta)
        k, h = self.num_inputs, self.hidden
        batch = theta.shape[:-1]
        w1 = theta[..., : k * h].reshape(*batch, 1, k, h)
        b1 = theta[..., k * h : k * h + h].reshape(*batch, 1, 1, h)
        w2 = theta[..., k * h + h :].reshape(*batch, 1, h, 1)
        hidden = torch.tanh(self.features @ w1 + b1)  # (..., S, A, H)
        return (hidden @ w2).squeeze(-1)


def check_identifiable(features: torch.Tensor, *, atol: float = 1e-8) -> bool:
    """Return True when no combination of the features is constant (up to ``atol``).

    Args:
        features: ``phi[s, a, k]`` of shape (S, A, K) or (S, K).
        atol: singular-value threshold relative to the largest.

    Returns:
        Whether the centred feature matrix (rows = state-actions) has rank K, i.e. the
        linear weights are identifiable under the global maxent model when every
        state-action is reachable.
    """
    rows = features.reshape(-1, features.shape[-1]).to(torch.float64)
    centred = rows - rows.mean(0)
    sv = torch.linalg.svdvals(centred)
    return bool(sv.numel() == features.shape[-1] and sv.min() > atol * max(sv.max().item(), 1.0))
