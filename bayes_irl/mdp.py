"""Finite-horizon tabular Markov decision processes: the base measure of the maxent model.

A :class:`TabularMDP` fixes everything about the trajectory distribution except the reward:

    b(x) = p0(s_0) * prod_{t=0}^{T-1} beta(a_t | s_t) p(s_{t+1} | s_t, a_t)

for a trajectory x = (s_0, a_0, s_1, ..., a_{T-1}, s_T) with T = ``horizon`` actions. The
action base measure beta is the counting measure (``action_log_base = 0``) for an MDP in
the sense of Ziebart et al. (2008), or a reference policy pi_ref for the sequence / RLHF
case, where the maxent distribution P(x) ∝ b(x) exp R(x) is the KL-regularised optimum.

Transitions are stored sparsely: for each (s, a) a fixed fan-out F of successor indices
``successors[s, a, f]`` with probabilities ``successor_probs[s, a, f]`` (zero-probability
padding allowed), so the exact recursion costs O(S·A·F·T) rather than O(S²·A·T). A dense
tensor ``P[s, a, s']`` is accepted as input and converted.

Time-indexing convention (used by every reward model and normaliser): the step reward
r(s_t, a_t) is earned at t = 0..T-1; the final state s_T earns nothing. State features
(S, K) give r(s, a) = theta . phi(s) for every action a.

A :class:`TabularMDP` is also the trajectory space of its trajectories
(:class:`bayes_irl.protocols.TrajectorySpace`): the encoding ``value[..., t, 0] = s_t``,
``value[..., t, 1] = a_t`` of shape ``(T + 1, 2)`` with -1 padding (see
:mod:`bayes_irl.trajectories`), its support, ``split``, the base measure ``log b(x)``,
validation of user data (``prepare``) and the ArviZ groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.distributions import constraints

from bayes_irl.toy_text_tables import read_toy_text_model
from bayes_irl.trajectories import TrajectoryBatch, TrajectoryConstraint
from bayes_irl.validation import (
    as_int_tensor,
    check_finite,
    check_precision,
    integer_scalar,
    positive_int,
)

__all__ = ["TabularMDP"]

_ROW_SUM_ATOL = 1e-6


def _as_tensor(value, *, name: str, dtype, device) -> torch.Tensor:
    try:
        tensor = torch.as_tensor(np.asarray(value) if not torch.is_tensor(value) else value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be array-like; got {type(value).__name__}") from err
    return tensor.to(device=device, dtype=dtype)


@dataclass(frozen=True, eq=False)
class TabularMDP:
    """A finite-horizon tabular MDP with sparse transitions and reward features.

    Build it with :meth:`from_dense` or :meth:`from_sparse` (both validate every argument);
    the dataclass fields are the validated, canonical tensors.

    Attributes:
        successors: ``successors[s, a, f]``, int64 of shape (S, A, F): successor states.
        successor_log_probs: ``log p(successors[s, a, f] | s, a)``, shape (S, A, F);
            ``-inf`` marks padding.
        initial: ``p0[s]``, shape (S,), sums to one.
        features: ``phi[s, a, k]``, shape (S, A, K) (state features are broadcast over a).
        horizon: number of actions T per trajectory; states are indexed 0..T.
        action_log_base: ``log beta(a | s)``, shape (S, A): the action base measure (zeros
            for the counting measure of an ordinary MDP, ``log pi_ref`` for RLHF).
        state_features: True when the features were given per state, shape (S, K).
        feature_names: K names used as coordinates in ArviZ output.
        layout: optional ``(rows, cols)`` with ``rows * cols == S``: state ``s`` is the grid
            cell ``(s // cols, s % cols)`` (row-major). Plots draw reward maps with it.
        reference_reward: optional ``r_ref[s, a]``, shape (S, A): a reward known from
            elsewhere (e.g. the Gymnasium environment's own reward), kept for comparisons
            (reward distances, regret). Inference never reads it.
    """

    successors: torch.Tensor
    successor_log_probs: torch.Tensor
    initial: torch.Tensor
    features: torch.Tensor
    horizon: int
    action_log_base: torch.Tensor
    state_features: bool
    feature_names: tuple[str, ...]
    layout: tuple[int, int] | None = None
    reference_reward: torch.Tensor | None = None

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_dense(
        cls,
        *,
        transitions,
        initial,
        features,
        horizon: int,
        action_log_base=None,
        feature_names: list[str] | None = None,
        layout: tuple[int, int] | None = None,
        reference_reward=None,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device | None = None,
        allow_float32: bool = False,
    ) -> TabularMDP:
        """Build an MDP from a dense transition tensor.

        Args:
            transitions: ``P[s, a, s']``, shape (S, A, S); non-negative rows summing to 1.
            initial: ``p0[s]``, shape (S,).
            features: shape (S, K) for state features or (S, A, K) for state-action ones.
            horizon: number of actions T >= 1.
            action_log_base: optional ``log beta(a | s)``, shape (S, A).
            feature_names: optional K names.
            layout: optional grid shape ``(rows, cols)``, ``rows * cols == S`` (row-major).
            reference_reward: optional reference reward ``r_ref[s, a]``, shape (S, A).
            dtype: floating dtype of every tensor (float64 by default: the exact
                recursion is the reference the approximations are tested against).
            device: torch device of every tensor.
            allow_float32: accept float32 where :func:`bayes_irl.validation.check_precision`
                refuses it (long horizons, large features).

        Returns:
            The validated MDP, with transitions stored at fan-out F = the largest number of
            non-zero successors of any (s, a).

        Raises:
            ValueError: naming the offending argument and what was expected.
        """
        p = _as_tensor(transitions, name="transitions", dtype=dtype, device=device)
        if p.dim() != 3 or p.shape[0] != p.shape[2]:
            raise ValueError(f"transitions must have shape (S, A, S); got {tuple(p.shape)}")
        if p.numel() == 0:
            raise ValueError(
                f"transitions must have at least one state and one action; got {tuple(p.shape)}"
            )
        check_finite(p, "transitions")
        if (p < 0).any():
            s, a, s2 = (p < 0).nonzero()[0].tolist()
            raise ValueError(
                f"transitions must be non-negative; P[{s}, {a}, {s2}] = {p[s, a, s2].item():.4g}"
            )
        fan_out = max(int((p > 0).sum(-1).max().item()), 1)
        probs, successors = torch.topk(p, fan_out, dim=-1)
        return cls.from_sparse(
            successors=successors,
            successor_probs=probs,
            initial=initial,
            features=features,
            horizon=horizon,
            action_log_base=action_log_base,
            feature_names=feature_names,
            layout=layout,
            reference_reward=reference_reward,
            dtype=dtype,
            device=device,
            allow_float32=allow_float32,
        )

    @classmethod
    def from_sparse(
        cls,
        *,
        successors,
        successor_probs,
        initial,
        features,
        horizon: int,
        action_log_base=None,
        feature_names: list[str] | None = None,
        layout: tuple[int, int] | None = None,
        reference_reward=None,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device | None = None,
        allow_float32: bool = False,
    ) -> TabularMDP:
        """Build an MDP from fixed fan-out successor lists.

        Args:
            successors: int array of shape (S, A, F); entries in [0, S).
            successor_probs: float array of shape (S, A, F); non-negative, summing to 1
                over f for every (s, a). Zero entries are padding.
            initial: ``p0[s]``, shape (S,).
            features: shape (S, K) or (S, A, K).
            horizon: number of actions T >= 1.
            action_log_base: optional ``log beta(a | s)``, shape (S, A).
            feature_names: optional K names.
            layout: optional grid shape ``(rows, cols)``, ``rows * cols == S`` (row-major).
            reference_reward: optional reference reward ``r_ref[s, a]``, shape (S, A).
            dtype: floating dtype.
            device: torch device.
            allow_float32: accept float32 (or lower) precision even where
                :func:`bayes_irl.validation.check_precision` refuses it.

        Returns:
            The validated MDP.

        Raises:
            ValueError: naming the offending argument and what was expected.
        """
        # as_int_tensor rejects non-integral floats (2.6 is an error, never state 2)
        succ = as_int_tensor(successors, "successors", "(S, A, F)").to(device)
        if succ.dim() != 3:
            raise ValueError(f"successors must have shape (S, A, F); got {tuple(succ.shape)}")
        num_states, num_actions, _ = succ.shape
        if num_states == 0 or num_actions == 0:
            raise ValueError(f"successors must have S >= 1 and A >= 1; got {tuple(succ.shape)}")
        probs = _as_tensor(successor_probs, name="successor_probs", dtype=dtype, device=device)
        if probs.shape != succ.shape:
            raise ValueError(
                f"successor_probs must have the shape of successors {tuple(succ.shape)}; "
                f"got {tuple(probs.shape)}"
            )
        check_finite(probs, "successor_probs")
        if (succ < 0).any() or (succ >= num_states).any():
            bad = ((succ < 0) | (succ >= num_states)).nonzero()[0].tolist()
            raise ValueError(
                f"successors must lie in [0, {num_states}); successors[{bad[0]}, {bad[1]}, "
                f"{bad[2]}] = {succ[tuple(bad)].item()}"
            )
        if (probs < 0).any():
            bad = (probs < 0).nonzero()[0].tolist()
            raise ValueError(
                f"transition probabilities must be non-negative; (s={bad[0]}, a={bad[1]}) "
                f"has {probs[tuple(bad)].item():.4g}"
            )
        row_sums = probs.sum(-1)
        off = (row_sums - 1).abs() > _ROW_SUM_ATOL
        if off.any():
            s, a = off.nonzero()[0].tolist()
            raise ValueError(
                f"transition rows must sum to 1; row (s={s}, a={a}) sums to "
                f"{row_sums[s, a].item():.6f}. Normalise P[s, a, :] before building the MDP."
            )
        log_probs = torch.where(probs > 0, probs.log(), torch.full_like(probs, -torch.inf))

        init = _as_tensor(initial, name="initial", dtype=dtype, device=device)
        if init.shape != (num_states,):
            raise ValueError(f"initial must have shape ({num_states},); got {tuple(init.shape)}")
        check_finite(init, "initial")
        if (init < 0).any() or abs(init.sum().item() - 1) > _ROW_SUM_ATOL:
            raise ValueError(
                f"initial must be a probability vector (non-negative, sums to 1); "
                f"sums to {init.sum().item():.6f} with min {init.min().item():.4g}"
            )

        feats = _as_tensor(features, name="features", dtype=dtype, device=device)
        state_features = feats.dim() == 2
        if state_features and feats.shape[0] == num_states:
            feats = feats.unsqueeze(1).expand(num_states, num_actions, feats.shape[1])
        elif not (feats.dim() == 3 and feats.shape[:2] == (num_states, num_actions)):
            raise ValueError(
                f"features must have shape ({num_states}, K) or ({num_states}, {num_actions}, K); "
                f"got {tuple(feats.shape)}"
            )
        if feats.shape[-1] == 0:
            raise ValueError("features must have at least one column (K >= 1)")
        check_finite(feats, "features")

        if torch.is_tensor(horizon) or isinstance(horizon, np.ndarray):
            horizon = integer_scalar(horizon, "horizon")  # 6.7 or [6, 9] raise, never truncate
        elif isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)):
            raise ValueError(f"horizon must be an int >= 1; got {horizon!r}")
        horizon = int(horizon)
        if horizon < 1:
            raise ValueError(f"horizon must be an int >= 1; got {horizon}")

        if action_log_base is None:
            base = torch.zeros(num_states, num_actions, dtype=dtype, device=device)
        else:
            base = _as_tensor(action_log_base, name="action_log_base", dtype=dtype, device=device)
            if base.shape != (num_states, num_actions):
                raise ValueError(
                    f"action_log_base must have shape ({num_states}, {num_actions}); "
                    f"got {tuple(base.shape)}"
                )
            if torch.isnan(base).any() or (base == torch.inf).any():
                raise ValueError("action_log_base must not contain NaN or +inf")

        check_precision(dtype, horizon, float(feats.abs().max()), allow_float32=allow_float32)
        num_features = feats.shape[-1]
        if feature_names is None:
            names = tuple(f"feature_{k}" for k in range(num_features))
        else:
            names = tuple(str(n) for n in feature_names)
            if len(names) != num_features or len(set(names)) != num_features:
                raise ValueError(
                    f"feature_names must be {num_features} distinct names; got {list(names)}"
                )
        grid = None
        if layout is not None:
            try:
                grid = tuple(positive_int(v, "layout entries") for v in layout)
            except (TypeError, ValueError):
                grid = None
            if grid is None or len(grid) != 2 or grid[0] * grid[1] != num_states:
                raise ValueError(
                    f"layout must be (rows, cols) with rows * cols = S = {num_states}; "
                    f"got {layout!r}"
                )
        ref = None
        if reference_reward is not None:
            ref = _as_tensor(reference_reward, name="reference_reward", dtype=dtype, device=device)
            if ref.shape != (num_states, num_actions):
                raise ValueError(
                    f"reference_reward must have shape ({num_states}, {num_actions}); "
                    f"got {tuple(ref.shape)}"
                )
            check_finite(ref, "reference_reward")
        return cls(
            successors=succ,
            successor_log_probs=log_probs,
            initial=init,
            features=feats,
            horizon=horizon,
            action_log_base=base,
            state_features=state_features,
            feature_names=names,
            layout=grid,
            reference_reward=ref,
        )

    @classmethod
    def from_gymnasium(
        cls,
        env: Any,
        *,
        features: str | Any = "onehot",
        horizon: int | None = None,
        feature_names: list[str] | None = None,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device | None = None,
    ) -> TabularMDP:
        """Convert a discrete Gymnasium environment that exposes ``env.unwrapped.P``.

        ``P[s][a]`` is the toy-text table of FrozenLake, CliffWalking, Taxi and friends: a
        list of ``(probability, next_state, reward, terminated)`` tuples. gymnasium itself
        is not imported; any object with that table, ``observation_space.n`` and
        ``action_space.n`` converts.

        Terminal states are made absorbing. A state is *terminal* when some transition
        into it has ``terminated=True``; its own rows of ``P`` (which Gymnasium never
        uses, since the episode ends on arrival) are replaced by a self-loop for every
        action, ``P[s_term, a, s_term] = 1``. A finite-horizon trajectory that reaches a
        terminal state therefore stays there until step T; a recorded episode that stops
        at termination is a truncated observation of it (see
        :class:`~bayes_irl.TrajectoryBatch.from_episodes`). Every other row equals
        ``unwrapped.P`` entry by entry (duplicate successors are summed).

        The environment's reward becomes the reference reward
        ``r_ref[s, a] = sum_{s'} p(s' | s, a) r(s, a, s')`` (0 in terminal states, which
        earn nothing after the episode ended); inference never reads it.

        Args:
            env: a Gymnasium environment (wrapped or not) whose ``unwrapped`` has ``P``.
            features: ``"onehot"`` (K = S indicator columns), ``"coordinates"``
                (K = 2: row and column scaled to [0, 1]; needs a grid layout, i.e.
                ``unwrapped.nrow``/``ncol`` or ``unwrapped.shape``), or an array of
                shape (S, K) or (S, A, K).
            horizon: T actions per trajectory; default ``env.spec.max_episode_steps``.
            feature_names: optional K names (generated for the built-in choices).
            dtype: floating dtype.
            device: torch device.

        Returns:
            The MDP, with ``layout`` set for grid environments and ``reference_reward``
            set to the environment's expected reward. The initial distribution is
            ``unwrapped.initial_state_distrib`` when present, else uniform.

        Raises:
            ValueError: for an environment without a tabular ``P``, a state reachable
                from the start that is entered both with and without termination, unknown
                feature choices or a missing horizon.

        Example:
            >>> import gymnasium as gym
            >>> mdp = TabularMDP.from_gymnasium(gym.make("FrozenLake-v1"), horizon=20)
            >>> mdp.num_states, mdp.num_actions, mdp.layout
            (16, 4, (4, 4))
        """
        model = read_toy_text_model(
            env, features=features, horizon=horizon, feature_names=feature_names
        )
        return cls.from_dense(**model._asdict(), dtype=dtype, device=device)

    # ------------------------------------------------------------------ properties
    @property
    def num_states(self) -> int:
        """Number of states S."""
        return self.successors.shape[0]

    @property
    def num_actions(self) -> int:
        """Number of actions A."""
        return self.successors.shape[1]

    @property
    def fan_out(self) -> int:
        """Successors stored per (s, a), F."""
        return self.successors.shape[2]

    @property
    def num_features(self) -> int:
        """Number of reward features K."""
        return self.features.shape[-1]

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the MDP's tensors."""
        return self.features.dtype

    @property
    def device(self) -> torch.device:
        """Device of the MDP's tensors."""
        return self.features.device

    def dense_transitions(self) -> torch.Tensor:
        """Return the dense transition tensor ``P[s, a, s']`` of shape (S, A, S)."""
        dense = torch.zeros(
            self.num_states, self.num_actions, self.num_states, dtype=self.dtype, device=self.device
        )
        dense.scatter_add_(-1, self.successors, self.successor_log_probs.exp())
        return dense

    def transition_log_prob(
        self, states: torch.Tensor, actions: torch.Tensor, next_states: torch.Tensor
    ) -> torch.Tensor:
        """Return ``log p(s' | s, a)`` elementwise (``-inf`` where impossible).

        Args:
            states: int tensor of s, any shape broadcastable with the others.
            actions: int tensor of a.
            next_states: int tensor of s'.

        Returns:
            Tensor of the broadcast shape.
        """
        succ = self.successors[states, actions]  # (..., F)
        logp = self.successor_log_probs[states, actions]
        match = succ == next_states.unsqueeze(-1)
        return torch.where(match, logp, torch.full_like(logp, -torch.inf)).logsumexp(-1)

    # ------------------------------------------------------------------ trajectory space
    @property
    def event_shape(self) -> torch.Size:
        """Shape of one encoded trajectory, ``(T + 1, 2)``."""
        return torch.Size((self.horizon + 1, 2))

    @property
    def support(self) -> constraints.Constraint:
        """:class:`~bayes_irl.trajectories.TrajectoryConstraint` of this MDP (event_dim 2)."""
        return TrajectoryConstraint(self.num_states, self.num_actions, self.horizon)

    def is_truncated(self, value: torch.Tensor) -> bool:
        """Whether any trajectory in ``value (..., T + 1, 2)`` is observed for fewer than T steps.

        Truncated trajectories (-1 padding) need the exact likelihood, which marginalises
        their unobserved remainder.
        """
        return bool((value[..., :-1, 1] < 0).any())

    def split(self, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode ``value (..., T + 1, 2)`` into ``states (..., T + 1)``, ``actions (..., T)``.

        Both int, -1 where unobserved (views of ``value``).
        """
        return value[..., 0], value[..., :-1, 1]

    def log_base(self, value: torch.Tensor, *, given_initial_state: bool = False) -> torch.Tensor:
        """``log b(x) = log p0(s_0) + sum_{t<L} [log beta(a_t | s_t) + log p(s_{t+1} | s_t, a_t)]``.

        Args:
            value: trajectories ``(..., T + 1, 2)`` (-1 padding; unobserved steps add 0).
            given_initial_state: leave out ``log p0(s_0)`` (s_0 is a context).

        Returns:
            Shape ``value.shape[:-2]`` (``-inf`` for impossible trajectories).
        """
        value = value.to(self.device)
        states, actions = self.split(value)
        observed = actions >= 0
        s = states[..., :-1].clamp(min=0)
        a = actions.clamp(min=0)
        s_next = states[..., 1:].clamp(min=0)
        per_step = self.transition_log_prob(s, a, s_next) + self.action_log_base[s, a]
        out = torch.where(observed, per_step, per_step.new_zeros(())).sum(-1)
        if not given_initial_state:
            out = out + self.initial.log()[states[..., 0]]
        return out

    def prepare(self, data: Any) -> torch.Tensor:
        """Validate demonstrations against the MDP and return the (n, T + 1, 2) tensor.

        Args:
            data: a :class:`~bayes_irl.TrajectoryBatch` or an int array/tensor of shape
                (n, T + 1, 2) in the encoding above.

        Returns:
            int64 tensor of shape (n, T + 1, 2) on the MDP's device.

        Raises:
            ValueError: if the data do not fit the MDP (shape, ranges, impossible moves).
        """
        if data is None:
            raise ValueError("data must hold demonstrations; got None")
        if isinstance(data, TrajectoryBatch):
            data.validate_against(self)
            return data.as_tensor(self.device)
        if torch.is_tensor(data) or isinstance(data, np.ndarray):
            value = torch.as_tensor(data)
            return TrajectoryBatch.from_tensor(value, mdp=self).as_tensor(self.device)
        raise ValueError(
            f"data must be a TrajectoryBatch or a (n, T + 1, 2) tensor; got {type(data).__name__}"
        )

    def arviz_groups(self, data: torch.Tensor) -> dict:
        """Return observed_data, constant_data, coords and dims for ArviZ.

        Args:
            data: prepared demonstrations (n, T + 1, 2).

        Returns:
            Dict with keys ``observed_data`` (states, actions, lengths), ``constant_data``
            (features, initial, horizon; name -> numpy array), ``coords`` and ``dims``.
        """
        batch = TrajectoryBatch.from_tensor(data.cpu())
        features = self.features[:, 0, :] if self.state_features else self.features
        feature_dims = (
            ["mdp_state", "feature"]
            if self.state_features
            else ["mdp_state", "mdp_action", "feature"]
        )
        return {
            "observed_data": {
                "states": batch.states.numpy(),
                "actions": batch.actions.numpy(),
                "lengths": batch.lengths.numpy(),
            },
            "constant_data": {
                "features": features.cpu().numpy(),
                "initial": self.initial.cpu().numpy(),
                "horizon": np.asarray(self.horizon),
            },
            "coords": {
                "demo": np.arange(len(batch)),
                "time": np.arange(self.horizon + 1),
                "step": np.arange(self.horizon),
                "mdp_state": np.arange(self.num_states),
                "mdp_action": np.arange(self.num_actions),
                "feature": list(self.feature_names),
            },
            "dims": {
                "states": ["demo", "time"],
                "actions": ["demo", "step"],
                "lengths": ["demo"],
                "features": feature_dims,
                "initial": ["mdp_state"],
            },
        }

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None):
        """Return a copy with every tensor moved to ``device`` and cast to ``dtype``."""
        dtype = dtype or self.dtype

        def move(t, floating=True):
            return t.to(device=device, dtype=dtype if floating else t.dtype)

        return TabularMDP(
            successors=move(self.successors, floating=False),
            successor_log_probs=move(self.successor_log_probs),
            initial=move(self.initial),
            features=move(self.features),
            horizon=self.horizon,
            action_log_base=move(self.action_log_base),
            state_features=self.state_features,
            feature_names=self.feature_names,
            layout=self.layout,
            reference_reward=None if self.reference_reward is None else move(self.reference_reward),
        )

    def __repr__(self) -> str:
        return (
            f"TabularMDP(S={self.num_states}, A={self.num_actions}, F={self.fan_out}, "
            f"K={self.num_features}, horizon={self.horizon}, dtype={self.dtype}"
            + ("" if self.layout is None else f", layout={self.layout[0]}x{self.layout[1]}")
            + ("" if self.reference_reward is None else ", reference_reward")
            + ")"
        )
