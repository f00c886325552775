"""Recorded episodes in, :class:`~bayes_irl.TrajectoryBatch` out: Gymnasium rollouts and Minari.

Two sources of demonstrations for a tabular MDP built with
:meth:`bayes_irl.TabularMDP.from_gymnasium`:

* :func:`rollout_episodes` runs a policy in a Gymnasium environment (``reset``/``step``
  only) and returns the episodes as dicts ``{"observations": (L + 1,), "actions": (L,)}``;
* :func:`load_minari` reads a Minari dataset (``pip install bayes_irl[minari]``) that is
  already on disk (nothing is downloaded) and returns its episodes as a batch.

Both end in :meth:`bayes_irl.TrajectoryBatch.from_episodes`, which pads the ragged
episodes with -1 and records their lengths. An episode that ended because the environment
terminated (a FrozenLake hole, the goal) is a truncated observation of a trajectory that
stays in the absorbing terminal state until the horizon, so its likelihood is exact.

Examples:
    >>> import gymnasium as gym
    >>> import numpy as np
    >>> env = gym.make("FrozenLake-v1")
    >>> episodes = rollout_episodes(env, np.full((16, 4), 0.25), num_episodes=3,
    ...                             max_steps=10, seed=0)
    >>> batch = TrajectoryBatch.from_episodes(episodes, horizon=10)
    >>> len(batch)
    3
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bayes_irl.trajectories import TrajectoryBatch
from bayes_irl.validation import positive_int

__all__ = ["load_minari", "rollout_episodes"]

_MINARI_MISSING = (
    "reading Minari datasets needs the minari package, an optional dependency: "
    "`pip install bayes_irl[minari]` (or `pip install minari`)"
)


def _action_sampler(policy: Any, rng: np.random.Generator) -> Callable[[int, int], int]:
    """Turn ``policy`` (a callable or a probability table) into ``(t, state) -> action``."""
    if callable(policy):
        return lambda t, s: int(policy(s, t, rng))
    table = policy.detach().cpu().numpy() if torch.is_tensor(policy) else np.asarray(policy)
    if table.ndim not in (2, 3) or not np.isfinite(table).all() or (table < 0).any():
        raise ValueError(
            "policy must be a callable (state, t, rng) -> action or a table of action "
            "probabilities pi[s, a] (S, A) or pi[t, s, a] (T, S, A), finite and "
            f"non-negative; got shape {table.shape}"
        )
    sums = table.sum(-1)
    if not np.allclose(sums, 1.0, atol=1e-6):
        raise ValueError(
            "policy probabilities must sum to 1 over actions (pass probabilities, e.g. "
            "log_pi.exp(), not log-probabilities)"
        )

    def sample(t: int, s: int) -> int:
        row = table[min(t, table.shape[0] - 1), s] if table.ndim == 3 else table[s]
        return int(rng.choice(row.shape[0], p=row / row.sum()))

    return sample


def rollout_episodes(
    env: Any,
    policy: Any,
    *,
    num_episodes: int,
    max_steps: int,
    seed: int,
) -> list[dict[str, np.ndarray]]:
    """Roll a policy out in a discrete Gymnasium environment and record the episodes.

    Each episode starts with ``env.reset`` and runs until the environment terminates or
    truncates, or ``max_steps`` actions were taken.

    Args:
        env: a Gymnasium environment with integer observations and actions.
        policy: a callable ``policy(state, t, rng) -> action`` (``rng`` a numpy
            Generator), or action probabilities ``pi[s, a]`` of shape (S, A), or a
            time-dependent ``pi[t, s, a]`` of shape (T, S, A) (e.g.
            ``soft_policy(mdp, r, kind="causal").exp()``; steps t >= T use the last row).
        num_episodes: number of episodes n >= 1.
        max_steps: largest number of actions per episode (>= 1).
        seed: seeds the first ``reset`` (then the environment's own RNG) and the action
            draws.

    Returns:
        n dicts with ``"observations"`` int (L_i + 1,) and ``"actions"`` int (L_i,), for
        :meth:`~bayes_irl.TrajectoryBatch.from_episodes`.

    Raises:
        ValueError: for bad counts or a malformed policy table.
    """
    num_episodes = positive_int(num_episodes, "num_episodes")
    max_steps = positive_int(max_steps, "max_steps")
    rng = np.random.default_rng(seed)
    act = _action_sampler(policy, rng)
    episodes = []
    for i in range(num_episodes):
        obs, _ = env.reset(seed=int(seed) if i == 0 else None)
        states, actions = [int(obs)], []
        for t in range(max_steps):
            action = act(t, states[-1])
            obs, _, terminated, truncated, _ = env.step(action)
            actions.append(action)
            states.append(int(obs))
            if terminated or truncated:
                break
        episodes.append({"observations": np.asarray(states), "actions": np.asarray(actions)})
    return episodes


def load_minari(
    dataset: Any,
    *,
    mdp: Any = None,
    horizon: int | None = None,
    truncate: bool = False,
    episode_indices: list[int] | None = None,
) -> TrajectoryBatch:
    """Read the episodes of a local Minari dataset into a :class:`TrajectoryBatch`.

    Args:
        dataset: a ``minari.MinariDataset`` or the id of a dataset already on disk
            (``minari.load_dataset(id, download=False)``; nothing is downloaded).
        mdp: the :class:`~bayes_irl.TabularMDP` to validate against (e.g. from
            :meth:`~bayes_irl.TabularMDP.from_gymnasium` on the dataset's environment).
        horizon: T; default the MDP's horizon, else the longest episode.
        truncate: keep the first T actions of longer episodes instead of raising.
        episode_indices: optional subset of episodes to read.

    Returns:
        The batch (one row per episode, lengths from the episodes).

    Raises:
        ImportError: when minari is not installed.
        ValueError: for non-discrete observations/actions or data that do not fit ``mdp``.
    """
    try:
        import minari
    except ImportError as err:  # pragma: no cover - exercised only without minari
        raise ImportError(_MINARI_MISSING) from err
    if isinstance(dataset, str):
        dataset = minari.load_dataset(dataset, download=False)
    episodes = list(dataset.iterate_episodes(episode_indices))
    for ep in episodes:
        obs = np.asarray(ep.observations)
        if obs.dtype.kind not in "iu" or obs.ndim != 1:
            raise ValueError(
                f"Minari episode {ep.id} has observations of shape {obs.shape} and dtype "
                f"{obs.dtype}; a tabular MDP needs integer states of shape (L + 1,)"
            )
    return TrajectoryBatch.from_episodes(episodes, horizon=horizon, truncate=truncate, mdp=mdp)
