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

from bayes_irl.shapes import broadcast_shapes
from bayes_irl.validation import as_int_tensor, positive_int

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
    shape = broadcast_shapes(step_rewards.shape[:-2], traj_batch)
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


def _lengths_from_padding(states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Lengths of -1-padded trajectories ``states (n, T + 1)``, ``actions (n, T)``, shape (n,).

    Raises:
        ValueError: when padding is followed by an observed step, a value is below -1, or a
            trajectory has no observed action.
    """
    for name, value in (("states", states), ("actions", actions)):
        if (value < PAD).any():
            i, t = (value < PAD).nonzero()[0].tolist()
            raise ValueError(
                f"{name} must be >= 0, or -1 for padding; {name}[{i}, {t}] = {int(value[i, t])}"
            )
    observed = actions >= 0
    lengths = observed.long().cumprod(-1).sum(-1)
    steps = torch.arange(actions.shape[1])
    late = observed & (steps >= lengths[:, None])
    if late.any():
        i, t = late.nonzero()[0].tolist()
        raise ValueError(
            f"actions[{i}] has -1 padding at step {int(lengths[i])} followed by an action at "
            f"step {t}; padding must come after the observed steps (or pass lengths)"
        )
    if (lengths < 1).any():
        i = int((lengths < 1).nonzero()[0, 0])
        raise ValueError(f"trajectory {i} has no observed action (actions[{i}, 0] = -1)")
    state_steps = torch.arange(states.shape[1])
    late_states = (states >= 0) & (state_steps > lengths[:, None])
    if late_states.any():
        i, t = late_states.nonzero()[0].tolist()
        raise ValueError(
            f"states[{i}, {t}] is observed after the last action (length {int(lengths[i])}); "
            "pad states past the length with -1 too (or pass lengths)"
        )
    return lengths


def _episode_arrays(episode: Any, index: int) -> tuple[Any, Any]:
    """``(states, actions)`` of one episode given as a pair, a mapping or an object."""
    if isinstance(episode, dict):
        keys = ("observations", "states")
        key = next((k for k in keys if k in episode), None)
        if key is None or "actions" not in episode:
            raise ValueError(
                f"episode {index} must have keys 'observations' (or 'states') and 'actions'; "
                f"got {sorted(episode)}"
            )
        return episode[key], episode["actions"]
    if hasattr(episode, "observations") and hasattr(episode, "actions"):
        return episode.observations, episode.actions
    if isinstance(episode, (tuple, list)) and len(episode) == 2:
        return episode[0], episode[1]
    raise ValueError(
        f"episode {index} must be a (states, actions) pair, a dict with 'observations' and "
        f"'actions', or an object with those attributes; got {type(episode).__name__}"
    )


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
            lengths: optional int array of shape (n,) with entries in [1, T]. Entries past
                a length are ignored (and set to PAD). Without it, the lengths are read off
                the -1 padding: L_i is the number of actions before the first -1 (T when
                there is none), and the padding must run to the end.
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
            lengths_t = _lengths_from_padding(states_t, actions_t)
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
    def from_episodes(
        cls,
        episodes: Any = None,
        *,
        states: Any = None,
        actions: Any = None,
        horizon: int | None = None,
        truncate: bool = False,
        contexts=None,
        mdp: Any = None,
    ) -> TrajectoryBatch:
        """Build a padded batch from ragged episodes (what Gymnasium rollouts give).

        Give either ``episodes`` or the two ragged lists ``states`` and ``actions``.
        Episode i has L_i >= 1 actions and L_i + 1 states (the observation before every
        action and the one after the last); it is padded with -1 to the horizon T and its
        length L_i is recorded, so the likelihood marginalises the unobserved rest (an
        episode that ended at a terminal state made absorbing by
        :meth:`~bayes_irl.TabularMDP.from_gymnasium` is exactly such a truncated
        observation).

        Args:
            episodes: iterable of episodes, each a ``(states, actions)`` pair, a mapping
                with keys ``"observations"`` (or ``"states"``) and ``"actions"``, or an
                object with those attributes (a Minari ``EpisodeData``). States are ints of
                shape (L_i + 1,), actions ints of shape (L_i,).
            states: list of n int arrays, shapes (L_i + 1,) (with ``actions``).
            actions: list of n int arrays, shapes (L_i,).
            horizon: T; default the MDP's horizon when ``mdp`` is given, else max_i L_i.
            truncate: keep the first T actions of longer episodes instead of raising.
            contexts: optional int array of shape (n,).
            mdp: when given, validated against it (ranges, horizon, feasibility).

        Returns:
            The batch: states (n, T + 1), actions (n, T), lengths (n,).

        Raises:
            ValueError: naming the episode and what is wrong (lengths that do not match,
                empty episodes, episodes longer than T without ``truncate``).

        Example:
            >>> batch = TrajectoryBatch.from_episodes(states=[[0, 1, 2], [3, 4]],
            ...                                       actions=[[1, 1], [0]])
            >>> batch.lengths.tolist(), batch.states[1].tolist()
            ([2, 1], [3, 4, -1])
        """
        if (episodes is None) == (states is None and actions is None):
            raise ValueError(
                "give either episodes or the ragged lists states= and actions=, not both"
            )
        if episodes is None:
            if states is None or actions is None:
                raise ValueError("states and actions must be given together")
            if len(states) != len(actions):
                raise ValueError(
                    f"states and actions must list the same number of episodes; got "
                    f"{len(states)} and {len(actions)}"
                )
            pairs = list(zip(states, actions, strict=True))
        else:
            pairs = [_episode_arrays(ep, i) for i, ep in enumerate(episodes)]
        if not pairs:
            raise ValueError("at least one episode is needed; got none")
        seqs = []
        for i, (s, a) in enumerate(pairs):
            s_t = as_int_tensor(s, f"states of episode {i}").reshape(-1)
            a_t = as_int_tensor(a, f"actions of episode {i}").reshape(-1)
            if a_t.numel() < 1:
                raise ValueError(f"episode {i} has no actions; every episode needs L >= 1")
            if s_t.numel() != a_t.numel() + 1:
                raise ValueError(
                    f"episode {i} has {a_t.numel()} actions and {s_t.numel()} states; "
                    "expected L + 1 states (the observation before each action and the "
                    "final one)"
                )
            if (s_t < 0).any() or (a_t < 0).any():
                raise ValueError(f"episode {i} has negative states or actions")
            seqs.append((s_t, a_t))
        if horizon is None:
            horizon = mdp.horizon if mdp is not None else max(a.numel() for _, a in seqs)
        horizon = positive_int(horizon, "horizon")
        n = len(seqs)
        states_p = torch.full((n, horizon + 1), PAD, dtype=torch.int64)
        actions_p = torch.full((n, horizon), PAD, dtype=torch.int64)
        lengths = torch.empty(n, dtype=torch.int64)
        for i, (s_t, a_t) in enumerate(seqs):
            length = a_t.numel()
            if length > horizon:
                if not truncate:
                    raise ValueError(
                        f"episode {i} has {length} actions, more than the horizon T = "
                        f"{horizon}; pass truncate=True to keep its first {horizon} or a "
                        "larger horizon"
                    )
                length = horizon
            states_p[i, : length + 1] = s_t[: length + 1]
            actions_p[i, :length] = a_t[:length]
            lengths[i] = length
        return cls.create(
            states=states_p, actions=actions_p, lengths=lengths, contexts=contexts, mdp=mdp
        )

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

    def __repr__(self) -> str:
        lengths = self.lengths.to(torch.float64)
        lo, hi = int(self.lengths.min()), int(self.lengths.max())
        span = f"{lo}" if lo == hi else f"{lo}-{hi}, mean {lengths.mean().item():.1f}"
        ctx = "" if self.contexts is None else ", contexts"
        return f"TrajectoryBatch(n={len(self)}, horizon={self.horizon}, lengths {span}{ctx})"

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
