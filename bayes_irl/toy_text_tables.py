"""Gymnasium's toy-text transition tables ``P[s][a]`` read into dense arrays.

FrozenLake, CliffWalking, Taxi and friends expose their model as
``env.unwrapped.P[s][a] = [(probability, next_state, reward, terminated), ...]``.
:func:`read_toy_text_model` turns that table into the dense arrays of
:meth:`bayes_irl.TabularMDP.from_dense` (which :meth:`bayes_irl.TabularMDP.from_gymnasium`
calls): transitions ``p[s, a, s']`` (S, A, S) with terminal states made absorbing, the
initial distribution (S,), state features (S, K) or (S, A, K), and the environment's
expected reward ``r_ref[s, a]`` (S, A). gymnasium itself is not imported.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

__all__ = ["ToyTextModel", "read_toy_text_model"]


class ToyTextModel(NamedTuple):
    """The dense model of a toy-text environment, the arguments of ``TabularMDP.from_dense``.

    Attributes:
        transitions: ``p[s, a, s']``, shape (S, A, S); terminal states absorbing.
        initial: ``p0[s]``, shape (S,).
        features: state features, shape (S, K), or (S, A, K) as given.
        horizon: T, the actions per trajectory.
        feature_names: K names, or None.
        layout: ``(rows, cols)`` of a grid environment, or None.
        reference_reward: ``r_ref[s, a] = sum_{s'} p(s' | s, a) r(s, a, s')``, shape (S, A);
            0 in terminal states.
    """

    transitions: np.ndarray
    initial: np.ndarray
    features: Any
    horizon: int
    feature_names: list[str] | None
    layout: tuple[int, int] | None
    reference_reward: np.ndarray


def read_toy_text_model(
    env: Any,
    *,
    features: str | Any = "onehot",
    horizon: int | None = None,
    feature_names: list[str] | None = None,
) -> ToyTextModel:
    """Read the dense model of a discrete environment that exposes ``env.unwrapped.P``.

    See :meth:`bayes_irl.TabularMDP.from_gymnasium` for the conversion (terminal states
    made absorbing, the reference reward, the feature choices).

    Args:
        env: a Gymnasium environment (wrapped or not) whose ``unwrapped`` has ``P``.
        features: ``"onehot"``, ``"coordinates"`` or an array of shape (S, K) or (S, A, K).
        horizon: T; default ``env.spec.max_episode_steps``.
        feature_names: optional K names (generated for the built-in choices).

    Returns:
        The :class:`ToyTextModel`.

    Raises:
        ValueError: for an environment without a tabular ``P``, a state reachable from the
            start that is entered both with and without termination, unknown feature
            choices or a missing horizon.
    """
    unwrapped = getattr(env, "unwrapped", env)
    table = getattr(unwrapped, "P", None)
    if not isinstance(table, dict):
        raise ValueError(
            "env must expose a tabular model env.unwrapped.P[s][a] = [(prob, next_state, "
            f"reward, terminated), ...] (as FrozenLake, CliffWalking, Taxi do); "
            f"{type(unwrapped).__name__} has none"
        )
    try:
        num_states = int(unwrapped.observation_space.n)
        num_actions = int(unwrapped.action_space.n)
    except AttributeError as err:
        raise ValueError(
            "env must have Discrete observation and action spaces (with .n)"
        ) from err
    p = np.zeros((num_states, num_actions, num_states))
    reward = np.zeros((num_states, num_actions))
    done_flags = np.zeros((num_states, num_actions, num_states), dtype=np.int8)
    for s in range(num_states):
        for a in range(num_actions):
            try:
                outcomes = table[s][a]
            except (KeyError, IndexError, TypeError) as err:
                raise ValueError(f"env.unwrapped.P lacks the entry P[{s}][{a}]") from err
            for prob, s_next, r, done in outcomes:
                p[s, a, int(s_next)] += prob
                reward[s, a] += prob * r
                if prob > 0:
                    # bit 1: entered with terminated=True, bit 2: with terminated=False
                    done_flags[s, a, int(s_next)] |= 1 if done else 2
    initial = getattr(unwrapped, "initial_state_distrib", None)
    if initial is None:
        initial = np.full(num_states, 1.0 / num_states)
    initial = np.asarray(initial, dtype=np.float64)
    terminal_mask = (done_flags & 1).any((0, 1))
    # Rows of terminal states are replaced, so only moves out of the other states that
    # an episode can reach must agree on the termination of the state they enter
    # (Taxi's table also holds unreachable states, e.g. a passenger already delivered).
    moves = (p > 0).any(1) & ~terminal_mask[:, None]  # (S, S')
    reachable = initial > 0
    while True:
        grown = reachable | moves[reachable].any(0)
        if (grown == reachable).all():
            break
        reachable = grown
    continuing = (done_flags[reachable & ~terminal_mask] & 2).any((0, 1))
    both = terminal_mask & continuing
    if both.any():
        raise ValueError(
            f"state {int(both.nonzero()[0][0])} is entered both with terminated=True and "
            "with terminated=False; termination must be a property of the next state to "
            "be made absorbing"
        )
    terminal = terminal_mask.nonzero()[0]
    p[terminal] = 0.0
    p[terminal, :, terminal] = 1.0
    reward[terminal] = 0.0

    layout = None
    if hasattr(unwrapped, "nrow") and hasattr(unwrapped, "ncol"):
        layout = (int(unwrapped.nrow), int(unwrapped.ncol))
    elif isinstance(getattr(unwrapped, "shape", None), tuple) and len(unwrapped.shape) == 2:
        layout = tuple(int(v) for v in unwrapped.shape)
    if layout is not None and layout[0] * layout[1] != num_states:
        layout = None

    if isinstance(features, str):
        if features == "onehot":
            feats = np.eye(num_states)
            names = feature_names or [f"s{s}" for s in range(num_states)]
        elif features == "coordinates":
            if layout is None:
                raise ValueError(
                    "features='coordinates' needs a grid environment (unwrapped.nrow/"
                    "ncol or unwrapped.shape with rows * cols = S); pass 'onehot' or "
                    "an array of shape (S, K) instead"
                )
            rows, cols = np.divmod(np.arange(num_states), layout[1])
            feats = np.stack([rows / max(layout[0] - 1, 1), cols / max(layout[1] - 1, 1)], -1)
            names = feature_names or ["row", "col"]
        else:
            raise ValueError(
                "features must be 'onehot', 'coordinates' or an array of shape (S, K) or "
                f"(S, A, K); got {features!r}"
            )
    else:
        feats, names = features, feature_names

    if horizon is None:
        spec = getattr(env, "spec", None)
        horizon = getattr(spec, "max_episode_steps", None)
        if horizon is None:
            raise ValueError(
                "horizon is required: the environment has no spec.max_episode_steps"
            )
    return ToyTextModel(
        transitions=p,
        initial=initial,
        features=feats,
        horizon=horizon,
        feature_names=names,
        layout=layout,
        reference_reward=reward,
    )
