"""The built-in N×N gridworld with slippery moves and a secret linear reward.

States are cells ``s = row * N + col``; actions are ``0 up, 1 down, 2 left, 3 right,
4 stay``. With probability ``1 - slip`` the intended move happens, otherwise a uniformly
random one of the five (moves into a wall stay put). Transitions are stored sparsely with
fan-out 5 (one entry per possible outcome), so a 300×300 grid costs 4.5·10⁵ entries, not
8·10⁹.

Features (state features, shape (S, K), each column centred and scaled to unit variance):

* ``"random"``: K i.i.d. standard normal columns.
* ``"designer"``: K = 4 interpretable columns: closeness to the goal corner (N-1, N-1),
  a hazard block in the middle, the row coordinate, the column coordinate.

Centring guarantees no feature column is constant; :func:`check_identifiable` then
confirms that no *combination* of columns is constant, which makes the linear weights
identifiable under the global maxent model (adding a constant to every step reward changes
nothing there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from bayes_irl.mdp import TabularMDP
from bayes_irl.rewards import LinearReward, check_identifiable
from bayes_irl.soft_bellman import MaxEntKind, sample_maxent_trajectories
from bayes_irl.trajectories import TrajectoryBatch

__all__ = ["GridWorld", "ACTION_NAMES"]

ACTION_NAMES = ("up", "down", "left", "right", "stay")
_MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1), (0, 0))


def _grid_successors(size: int, slip: float) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.divmod(np.arange(size * size), size)
    outcome = np.empty((size * size, len(_MOVES)), dtype=np.int64)
    for m, (dr, dc) in enumerate(_MOVES):
        r = np.clip(rows + dr, 0, size - 1)
        c = np.clip(cols + dc, 0, size - 1)
        outcome[:, m] = r * size + c
    num_actions = len(_MOVES)
    if slip == 0:
        return outcome[:, :, None], np.ones((size * size, num_actions, 1))
    successors = np.broadcast_to(outcome[:, None, :], (size * size, num_actions, num_actions))
    probs = np.full((num_actions, num_actions), slip / num_actions)
    probs[np.arange(num_actions), np.arange(num_actions)] += 1 - slip
    return successors.copy(), np.broadcast_to(probs, successors.shape).copy()


def _designer_features(size: int) -> tuple[np.ndarray, list[str]]:
    rows, cols = np.divmod(np.arange(size * size), size)
    goal_distance = (size - 1 - rows) + (size - 1 - cols)
    lo, hi = size // 3, size - size // 3
    hazard = ((rows >= lo) & (rows < hi) & (cols >= lo) & (cols < hi)).astype(float)
    columns = [
        np.exp(-goal_distance / max(size / 2, 1)),
        hazard,
        rows / (size - 1),
        cols / (size - 1),
    ]
    return np.stack(columns, -1), ["goal", "hazard", "row", "col"]


@dataclass(frozen=True, eq=False)
class GridWorld:
    """A seeded gridworld: the MDP, its linear reward model and the secret true weights.

    Attributes:
        size: N.
        slip: probability that a random action replaces the chosen one.
        mdp: the :class:`TabularMDP` (S = N², A = 5, state features (S, K)).
        reward_model: :class:`LinearReward` on the MDP's features, prior Normal(0, 1).
        true_weights: the secret theta*, shape (K,), drawn from the prior with ``seed``.
    """

    size: int
    slip: float
    mdp: TabularMDP
    reward_model: LinearReward
    true_weights: torch.Tensor

    @classmethod
    def create(
        cls,
        *,
        size: int = 5,
        num_features: int = 4,
        features: Literal["random", "designer"] = "random",
        slip: float = 0.1,
        horizon: int | None = None,
        seed: int = 0,
        true_weights=None,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device | None = None,
    ) -> GridWorld:
        """Build a gridworld.

        Args:
            size: N >= 2 (S = N² states).
            num_features: K (must be 4 for ``features="designer"``).
            features: ``"random"`` or ``"designer"`` (see module docstring).
            slip: in [0, 1).
            horizon: T; default 2N.
            seed: seeds the random features and the true weights.
            true_weights: optional theta* of shape (K,); default a Normal(0, 1) draw.
            dtype: floating dtype.
            device: torch device.

        Returns:
            The gridworld, uniform initial distribution.

        Raises:
            ValueError: on out-of-range arguments or non-identifiable features.
        """
        if int(size) != size or size < 2:
            raise ValueError(f"size must be an int >= 2; got {size!r}")
        if not 0 <= slip < 1:
            raise ValueError(f"slip must lie in [0, 1); got {slip!r}")
        rng = np.random.default_rng(seed)
        num_states = size * size
        if features == "designer":
            if num_features != 4:
                raise ValueError(
                    f"designer features have K = 4 columns; got num_features={num_features}"
                )
            raw, names = _designer_features(size)
        elif features == "random":
            if not 1 <= num_features < num_states:
                raise ValueError(f"num_features must lie in [1, {num_states}); got {num_features}")
            raw = rng.standard_normal((num_states, num_features))
            names = [f"feature_{k}" for k in range(num_features)]
        else:
            raise ValueError(f"features must be 'random' or 'designer'; got {features!r}")
        raw = raw - raw.mean(0)
        raw = raw / raw.std(0)
        successors, probs = _grid_successors(size, slip)
        mdp = TabularMDP.from_sparse(
            successors=successors,
            successor_probs=probs,
            initial=np.full(num_states, 1.0 / num_states),
            features=raw,
            horizon=2 * size if horizon is None else horizon,
            feature_names=names,
            layout=(size, size),
            dtype=dtype,
            device=device,
        )
        if not check_identifiable(mdp.features):
            raise ValueError("features are not identifiable: some combination is constant")
        if true_weights is None:
            true_weights = rng.standard_normal(num_features)
        weights = torch.as_tensor(np.asarray(true_weights), dtype=dtype, device=device)
        if weights.shape != (num_features,):
            raise ValueError(
                f"true_weights must have shape ({num_features},); got {tuple(weights.shape)}"
            )
        reward_model = LinearReward(mdp.features, feature_names=names)
        return cls(size=size, slip=slip, mdp=mdp, reward_model=reward_model, true_weights=weights)

    def true_step_rewards(self) -> torch.Tensor:
        """Return the true step rewards r*[s, a], shape (S, A)."""
        return self.reward_model.step_rewards(self.true_weights)

    def sample_demonstrations(
        self, num: int, *, seed: int = 0, kind: MaxEntKind = "global"
    ) -> TrajectoryBatch:
        """Draw ``num`` exact demonstrations from the maxent distribution of the true reward.

        Args:
            num: number of trajectories n >= 1.
            seed: seeds a private torch generator (global RNG untouched).
            kind: ``"global"`` or ``"causal"`` demonstrator.

        Returns:
            A :class:`TrajectoryBatch` of n full-length trajectories.
        """
        generator = torch.Generator(device=self.mdp.device).manual_seed(seed)
        value = sample_maxent_trajectories(
            self.mdp, self.true_step_rewards(), num, kind=kind, generator=generator
        )
        return TrajectoryBatch.from_tensor(value.cpu(), mdp=self.mdp)
