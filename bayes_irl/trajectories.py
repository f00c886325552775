"""Batches of tabular trajectories, padded and masked for variable lengths.

A trajectory of length L is x = (s_0, a_0, s_1, ..., a_{L-1}, s_L) with L <= T (the MDP
horizon). A shorter trajectory is a *truncated observation*: the demonstrator went on to
step T, but only the first L actions were recorded. Likelihoods marginalise the unobserved
remainder exactly (see :class:`bayes_irl.models.MaxEntTrajectory`).

The tensor encoding used as a Pyro observation is ``value[..., t, 0] = s_t`` and
``value[..., t, 1] = a_t`` with shape ``(..., T + 1, 2)``; entries past the length are -1
(the action at t = T is always -1).

This module is below :mod:`bayes_irl.mdp` (which imports it for the trajectory-space
methods of :class:`~bayes_irl.TabularMDP`): functions taking an ``mdp`` use only its
attributes and do not import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.distributions import constraints

from bayes_irl.validation import as_int_tensor

__all__ = [
    "PAD",
    "TrajectoryBatch",
    "TrajectoryConstraint",
    "feature_counts",
    "trajectory_returns",
]

PAD = -1
"""Padding value for unobserved states and actions in the tensor encoding."""


def _take(table: torch.Tensor, index: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Entries ``table[..., index]`` broadcast to ``shape + (L,)``.

    Args:
        table: ``batch + (M,)`` (batch broadcastable to ``shape``).
        index: int tensor ``value_batch + (L,)`` with entries in [0, M).
        shape: the broadcast of ``batch`` and ``value_batch``.

    Returns:
        Tensor of shape ``shape + (L,)``.

    When the table is shared by the indexed items (the dimensions of ``batch`` that align
    with ``value_batch`` are all 1: a theta batch ``(..., 1)`` against n demonstrations in
    a plate) this indexes directly: O(n·L) time and a backward pass that accumulates into a
    table-sized gradient, instead of gathering from the table expanded to n copies (whose
    backward allocated n·M numbers: 1 GB for 500 demonstrations of a 30x30 grid, H = 60,
    under the causal model).
    """
    batch = table.shape[:-1]
    k = index.dim() - 1
    overlap = batch[-k:] if k else torch.Size()
    if all(size == 1 for size in overlap):
        lead = batch[: len(batch) - len(overlap)]
        core = table.reshape(*lead, table.shape[-1])
        return core[..., index].expand(*shape, index.shape[-1])
    size = table.shape[-1]
    return table.expand(*shape, size).gather(-1, index.expand(*shape, index.shape[-1]))


def _check_split(states: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Return ``states[..., :T]`` and T for split tabular trajectories."""
    if not torch.is_tensor(states) or not torch.is_tensor(actions) or actions.dim() < 1:
        raise ValueError("states and actions must be int tensors (..., T + 1) and (..., T)")
    horizon = actions.shape[-1]
    if states.dim() < 1 or states.shape[-1] not in (horizon, horizon + 1):
        raise ValueError(
            f"states must have shape (..., T + 1) = (..., {horizon + 1}) to match actions "
            f"{tuple(actions.shape)}; got {tuple(states.shape)}"
        )
    return states[..., :horizon], horizon


def trajectory_returns(
    step_rewards: torch.Tensor, states: torch.Tensor, actions: torch.Tensor
) -> torch.Tensor:
    """Return ``R(x) = sum_{t < L} r[..., s_t, a_t]`` of split tabular trajectories.

    The one returns function of tabular trajectories (differentiable in r). Shapes broadcast
    right-aligned; with ``step_rewards`` of shape ``batch + (1, S, A)`` against n
    trajectories the table is indexed, never copied n times.

    Args:
        step_rewards: ``r[..., s, a]``, shape ``batch + (S, A)``.
        states: int ``traj_batch + (T + 1,)`` (``(T,)`` accepted; s_T is unused).
        actions: int ``traj_batch + (T,)``, -1 where unobserved (those steps contribute 0).

    Returns:
        Shape ``broadcast(batch, traj_batch)``.

    Raises:
        ValueError: on mis-shaped inputs.

    Example:
        >>> r = torch.arange(6.0).reshape(3, 2)
        >>> trajectory_returns(r, torch.tensor([[0, 2, 1]]), torch.tensor([[1, -1]]))
        tensor([1.])
    """
    if not torch.is_tensor(step_rewards) or step_rewards.dim() < 2:
        raise ValueError("step_rewards must be a tensor of shape (..., S, A)")
    states, horizon = _check_split(states, actions)
    num_states, num_actions = step_rewards.shape[-2:]
    device = step_rewards.device
    observed = (actions >= 0).to(device)
    index = (states.clamp(min=0) * num_actions + actions.clamp(min=0)).to(device)
    traj_batch = index.shape[:-1]
    shape = torch.broadcast_shapes(step_rewards.shape[:-2], traj_batch)
    flat = step_rewards.reshape(*step_rewards.shape[:-2], num_states * num_actions)
    per_step = _take(flat, index, shape)  # shape + (T,)
    return torch.where(observed, per_step, per_step.new_zeros(())).sum(-1)


def feature_counts(
    features: torch.Tensor, states: torch.Tensor, actions: torch.Tensor
) -> torch.Tensor:
    """Return summed features ``sum_{t < L} phi[s_t, a_t, :]`` of split tabular trajectories.

    The one feature-count function (empirical counts, sufficient statistics, predictive
    checks).

    Args:
        features: ``phi[s, a, k]``, shape (S, A, K).
        states: int ``traj_batch + (T + 1,)``.
        actions: int ``traj_batch + (T,)``, -1 where unobserved.

    Returns:
        Shape ``traj_batch + (K,)``.
    """
    states, _ = _check_split(states, actions)
    device = features.device
    mask = (actions >= 0).to(device)
    phi = features[states.clamp(min=0).to(device), actions.clamp(min=0).to(device)]
    return (phi * mask.to(phi.dtype).unsqueeze(-1)).sum(-2)


class TrajectoryConstraint(constraints.Constraint):
    """Support of tabular trajectories: valid, padded state/action index sequences.

    ``check(value)`` has shape ``value.shape[:-2]``: True where states lie in [0, S) up to
    the length and are -1 after it, actions lie in [0, A) for t < L and are -1 otherwise,
    and L >= 1.

    Args:
        num_states: S.
        num_actions: A.
        horizon: T (values have shape ``(..., T + 1, 2)``).
    """

    is_discrete = True
    event_dim = 2

    def __init__(self, num_states: int, num_actions: int, horizon: int) -> None:
        self.num_states, self.num_actions, self.horizon = num_states, num_actions, horizon
        super().__init__()

    def check(self, value: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if value.shape[-2:] != (self.horizon + 1, 2):
            return torch.zeros(value.shape[:-2], dtype=torch.bool, device=value.device)
        states, actions = value[..., 0], value[..., :-1, 1]
        observed = actions >= 0
        lengths = observed.sum(-1)
        steps = torch.arange(self.horizon + 1, device=value.device)
        state_observed = steps <= lengths.unsqueeze(-1)
        # actions must be a contiguous observed prefix: a -1 followed by an action is invalid
        prefix = (observed.long().cumprod(-1) == observed.long()).all(-1)
        ok_actions = torch.where(observed, actions < self.num_actions, actions == -1).all(-1)
        ok_states = torch.where(
            state_observed, (states >= 0) & (states < self.num_states), states == -1
        ).all(-1)
        return prefix & ok_actions & ok_states & (lengths >= 1) & (value[..., -1, 1] == -1)


@dataclass(frozen=True, eq=False)
class TrajectoryBatch:
    """n demonstrations on a tabular MDP, padded to a common horizon T.

    Attributes:
        states: int64 of shape (n, T + 1); ``states[i, t] = s_t`` of demonstration i,
            ``PAD`` (-1) for t > lengths[i].
        actions: int64 of shape (n, T); ``PAD`` for t >= lengths[i].
        lengths: int64 of shape (n,); number of observed actions L_i in [1, T].
        contexts: optional int64 of shape (n,), carried through to ArviZ.
    """

    states: torch.Tensor
    actions: torch.Tensor
    lengths: torch.Tensor
    contexts: torch.Tensor | None = None

    @classmethod
    def create(
        cls,
        *,
        states,
        actions,
        lengths=None,
        contexts=None,
        mdp: Any = None,
    ) -> TrajectoryBatch:
        """Validate and build a batch.

        Args:
            states: int array of shape (n, T + 1).
            actions: int array of shape (n, T).
            lengths: optional int array of shape (n,) with entries in [1, T]; defaults to
                T for every trajectory. Entries past a length are ignored (and set to PAD).
            contexts: optional int array of shape (n,).
            mdp: when given, states/actions are range-checked, T must equal the MDP's
                horizon and every observed transition must have non-zero probability.

        Returns:
            The batch with padding normalised to ``PAD``.

        Raises:
            ValueError: naming the argument and the expected shape or range.
        """
        states_t = as_int_tensor(states, "states")
        actions_t = as_int_tensor(actions, "actions")
        if states_t.dim() != 2:
            raise ValueError(f"states must have shape (n, T + 1); got {tuple(states_t.shape)}")
        if actions_t.dim() != 2:
            raise ValueError(f"actions must have shape (n, T); got {tuple(actions_t.shape)}")
        n, horizon_plus_one = states_t.shape
        if n == 0:
            raise ValueError("states is empty: at least one demonstration is needed (n >= 1)")
        horizon = horizon_plus_one - 1
        if horizon < 1:
            raise ValueError(f"states must have at least 2 columns (T >= 1); got shape {(n, 1)}")
        if actions_t.shape != (n, horizon):
            raise ValueError(
                f"actions must have shape (n, T) = ({n}, {horizon}) to match states "
                f"{tuple(states_t.shape)}; got {tuple(actions_t.shape)}"
            )
        if lengths is None:
            lengths_t = torch.full((n,), horizon, dtype=torch.int64)
        else:
            lengths_t = as_int_tensor(lengths, "lengths")
            if lengths_t.shape != (n,):
                raise ValueError(f"lengths must have shape ({n},); got {tuple(lengths_t.shape)}")
            if (lengths_t < 1).any() or (lengths_t > horizon).any():
                i = int(((lengths_t < 1) | (lengths_t > horizon)).nonzero()[0, 0])
                raise ValueError(
                    f"lengths must lie in [1, {horizon}]; lengths[{i}] = {int(lengths_t[i])}"
                )
        steps = torch.arange(horizon + 1)
        state_mask = steps <= lengths_t[:, None]  # (n, T + 1)
        action_mask = steps[:-1] < lengths_t[:, None]  # (n, T)
        states_t = torch.where(state_mask, states_t, torch.full_like(states_t, PAD))
        actions_t = torch.where(action_mask, actions_t, torch.full_like(actions_t, PAD))
        if (states_t[state_mask] < 0).any():
            i, t = (state_mask & (states_t < 0)).nonzero()[0].tolist()
            raise ValueError(f"states must be >= 0 within each length; states[{i}, {t}] < 0")
        if (actions_t[action_mask] < 0).any():
            i, t = (action_mask & (actions_t < 0)).nonzero()[0].tolist()
            raise ValueError(f"actions must be >= 0 within each length; actions[{i}, {t}] < 0")
        ctx = None
        if contexts is not None:
            ctx = as_int_tensor(contexts, "contexts")
            if ctx.shape != (n,):
                raise ValueError(f"contexts must have shape ({n},); got {tuple(ctx.shape)}")
        batch = cls(states=states_t, actions=actions_t, lengths=lengths_t, contexts=ctx)
        if mdp is not None:
            batch.validate_against(mdp)
        return batch

    @classmethod
    def from_tensor(cls, value: torch.Tensor, *, mdp: Any = None) -> TrajectoryBatch:
        """Decode the ``(n, T + 1, 2)`` tensor encoding (see module docstring)."""
        if value.dim() != 3 or value.shape[-1] != 2:
            raise ValueError(f"value must have shape (n, T + 1, 2); got {tuple(value.shape)}")
        actions = value[:, :-1, 1]
        lengths = (actions >= 0).sum(-1)
        return cls.create(states=value[..., 0], actions=actions, lengths=lengths, mdp=mdp)

    # ------------------------------------------------------------------ properties
    @property
    def num_trajectories(self) -> int:
        """Number of demonstrations n."""
        return self.states.shape[0]

    @property
    def horizon(self) -> int:
        """Padded horizon T (number of action slots)."""
        return self.actions.shape[1]

    def __len__(self) -> int:
        return self.num_trajectories

    def as_tensor(self, device: str | torch.device | None = None) -> torch.Tensor:
        """Return the observation encoding of shape (n, T + 1, 2), int64."""
        padded_actions = torch.cat(
            [self.actions, torch.full((len(self), 1), PAD, dtype=torch.int64)], dim=1
        )
        return torch.stack([self.states, padded_actions], dim=-1).to(device)

    def feature_counts(self, mdp: Any) -> torch.Tensor:
        """Return summed features ``sum_{t < L_i} phi(s_t, a_t)``, shape (n, K).

        Args:
            mdp: the :class:`~bayes_irl.TabularMDP` whose ``features`` (S, A, K) are summed.
        """
        return feature_counts(mdp.features, self.states, self.actions)

    def validate_against(self, mdp: Any) -> None:
        """Check ranges, horizon and transition feasibility against ``mdp``.

        Raises:
            ValueError: naming the first offending demonstration and step.
        """
        if self.horizon != mdp.horizon:
            raise ValueError(
                f"trajectories have horizon T = {self.horizon} (states of shape (n, "
                f"{self.horizon + 1})) but the MDP's horizon is {mdp.horizon}; pad shorter "
                "trajectories to the MDP horizon and pass lengths"
            )
        if (self.states >= mdp.num_states).any():
            i, t = (self.states >= mdp.num_states).nonzero()[0].tolist()
            raise ValueError(
                f"states must lie in [0, {mdp.num_states}); states[{i}, {t}] = "
                f"{int(self.states[i, t])}"
            )
        if (self.actions >= mdp.num_actions).any():
            i, t = (self.actions >= mdp.num_actions).nonzero()[0].tolist()
            raise ValueError(
                f"actions must lie in [0, {mdp.num_actions}); actions[{i}, {t}] = "
                f"{int(self.actions[i, t])}"
            )
        mask = (self.actions >= 0).to(mdp.device)
        s = self.states[:, :-1].clamp(min=0).to(mdp.device)
        a = self.actions.clamp(min=0).to(mdp.device)
        s_next = self.states[:, 1:].clamp(min=0).to(mdp.device)
        logp = mdp.transition_log_prob(s, a, s_next)
        impossible = mask & torch.isinf(logp)
        if impossible.any():
            i, t = impossible.nonzero()[0].tolist()
            raise ValueError(
                f"demonstration {i} makes an impossible transition at step {t}: "
                f"p(s'={int(s_next[i, t])} | s={int(s[i, t])}, a={int(a[i, t])}) = 0"
            )
        init_zero = mdp.initial[self.states[:, 0].to(mdp.device)] <= 0
        if init_zero.any():
            i = int(init_zero.nonzero()[0, 0])
            raise ValueError(
                f"demonstration {i} starts in state {int(self.states[i, 0])}, which has "
                "zero initial probability"
            )
        base = mdp.action_log_base[s, a]
        if (mask & torch.isinf(base)).any():
            i, t = (mask & torch.isinf(base)).nonzero()[0].tolist()
            raise ValueError(
                f"demonstration {i} takes action {int(a[i, t])} at step {t}, which has zero "
                "base-measure probability (action_log_base = -inf)"
            )

    def subset(self, index: torch.Tensor) -> TrajectoryBatch:
        """Return the demonstrations at ``index`` (int tensor of shape (m,))."""
        return TrajectoryBatch(
            states=self.states[index],
            actions=self.actions[index],
            lengths=self.lengths[index],
            contexts=None if self.contexts is None else self.contexts[index],
        )
