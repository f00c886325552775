"""Batches of tabular trajectories, padded and masked for variable lengths.

A trajectory of length L is x = (s_0, a_0, s_1, ..., a_{L-1}, s_L) with L <= T (the MDP
horizon). A shorter trajectory is a *truncated observation*: the demonstrator went on to
step T, but only the first L actions were recorded. Likelihoods marginalise the unobserved
remainder exactly (see :class:`bayes_irl.models.MaxEntTrajectory`).

The tensor encoding used as a Pyro observation is ``value[..., t, 0] = s_t`` and
``value[..., t, 1] = a_t`` with shape ``(..., T + 1, 2)``; entries past the length are -1
(the action at t = T is always -1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bayes_irl.mdp import TabularMDP

__all__ = ["TrajectoryBatch", "PAD", "as_int_tensor"]

PAD = -1
"""Padding value for unobserved states and actions in the tensor encoding."""


def as_int_tensor(value, name: str, expected: str = "") -> torch.Tensor:
    """Convert integer-valued ``value`` to int64, rejecting NaN/inf and non-integral floats.

    Args:
        value: array-like or tensor.
        name: argument name used in the error messages.
        expected: optional description of the expected shape, appended to the messages.

    Raises:
        ValueError: naming ``name`` for non-finite, non-integral or non-numeric input.
    """
    what = f" {expected}" if expected else ""
    array = value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise ValueError(f"{name} must be finite integers{what}; found NaN or inf")
        if not np.array_equal(array, np.round(array)):
            raise ValueError(f"{name} must hold integers{what}; got non-integral floats")
    elif array.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer array{what}; got dtype {array.dtype}")
    return torch.as_tensor(array.astype(np.int64))


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
        mdp: TabularMDP | None = None,
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
    def from_tensor(cls, value: torch.Tensor, *, mdp: TabularMDP | None = None) -> TrajectoryBatch:
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

    def feature_counts(self, mdp: TabularMDP) -> torch.Tensor:
        """Return summed features ``sum_{t < L_i} phi(s_t, a_t)``, shape (n, K)."""
        mask = self.actions >= 0
        s = self.states[:, :-1].clamp(min=0).to(mdp.device)
        a = self.actions.clamp(min=0).to(mdp.device)
        phi = mdp.features[s, a]  # (n, T, K)
        return (phi * mask.to(mdp.device, phi.dtype).unsqueeze(-1)).sum(1)

    def validate_against(self, mdp: TabularMDP) -> None:
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
