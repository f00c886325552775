"""Random sparse MDPs: a benchmark problem that no test was written around.

The calibration benchmarks' MDP (36 states, 4 actions, 3 successors per (s, a), T = 12, 4
features) is built by :func:`random_sparse_mdp`; ``bayes-irl calibrate --problem
random-mdp`` runs simulation-based calibration on it.
"""

from __future__ import annotations

import numpy as np

from bayes_irl.mdp import TabularMDP
from bayes_irl.validation import positive_int

__all__ = ["random_sparse_mdp"]


def random_sparse_mdp(
    *,
    num_states: int = 36,
    num_actions: int = 4,
    fan_out: int = 3,
    horizon: int = 12,
    num_features: int = 4,
    seed: int = 0,
    rng: np.random.Generator | None = None,
) -> TabularMDP:
    """A random MDP with sparse transitions and standardised Gaussian state features.

    Each (s, a) moves to ``fan_out`` distinct random states with Dirichlet(1)
    probabilities; the start is uniform; the state features (S, D) are standard normal,
    then centred and scaled to unit sd per feature.

    Args:
        num_states: S.
        num_actions: A.
        fan_out: successors per (s, a), 1 <= fan_out <= S.
        horizon: T.
        num_features: D.
        seed: seeds a new NumPy generator (ignored when ``rng`` is given).
        rng: a NumPy generator to draw from (its state advances).

    Returns:
        The :class:`~bayes_irl.TabularMDP`.

    Raises:
        ValueError: for a non-positive size or ``fan_out`` above ``num_states``.

    Example:
        >>> mdp = random_sparse_mdp(seed=0)
        >>> mdp.num_states, mdp.num_actions, mdp.horizon, mdp.features.shape[-1]
        (36, 4, 12, 4)
    """
    num_states = positive_int(num_states, "num_states")
    num_actions = positive_int(num_actions, "num_actions")
    fan_out = positive_int(fan_out, "fan_out")
    horizon = positive_int(horizon, "horizon")
    num_features = positive_int(num_features, "num_features")
    if fan_out > num_states:
        raise ValueError(f"fan_out must be <= num_states = {num_states}; got {fan_out}")
    rng = np.random.default_rng(seed) if rng is None else rng
    successors = np.stack([
        np.stack([rng.choice(num_states, fan_out, replace=False) for _ in range(num_actions)])
        for _ in range(num_states)
    ])
    probs = rng.dirichlet(np.ones(fan_out), size=(num_states, num_actions))
    features = rng.standard_normal((num_states, num_features))
    features = (features - features.mean(0)) / features.std(0)
    return TabularMDP.from_sparse(successors=successors, successor_probs=probs,
                                  initial=np.full(num_states, 1 / num_states),
                                  features=features, horizon=horizon)
