"""Preference data simulated from a :class:`~bayes_irl.models.PreferenceModel` at a known theta*.

:func:`simulate_comparisons` draws Bradley-Terry comparisons of random item pairs and
:func:`simulate_rankings` Plackett-Luce rankings of random k-item sets, both with the
model's own likelihood (its beta and tie model) and a private seeded generator. The data
come back in the form the model's ``prepare_data`` expects: item indices for an item-pool
model, trajectories ``(..., T + 1, 2)`` for a model built on an MDP.
"""

from __future__ import annotations

import torch

from bayes_irl.models.choice import BradleyTerry, PlackettLuce
from bayes_irl.models.preference_data import PairwiseComparisons, Rankings, as_trajectories
from bayes_irl.models.preferences import PreferenceModel
from bayes_irl.validation import as_int_tensor, positive_int

__all__ = ["simulate_comparisons", "simulate_rankings"]


def _true_theta(model: PreferenceModel, true_weights) -> torch.Tensor:
    weights = torch.as_tensor(true_weights, dtype=torch.float64)
    if weights.shape != (model.reward_model.num_params,):
        raise ValueError(
            f"true_weights must have shape ({model.reward_model.num_params},); got "
            f"{tuple(weights.shape)}"
        )
    return weights


def _item_pool(model: PreferenceModel, items) -> torch.Tensor:
    pool = model.items if model.items is not None else items
    if pool is None:
        raise ValueError("items are required for a model built on an MDP")
    return as_trajectories(pool, "items", model.mdp)


def simulate_comparisons(
    model: PreferenceModel,
    true_weights,
    num: int,
    *,
    seed: int = 0,
    items=None,
    pairs=None,
) -> PairwiseComparisons:
    """Simulate comparisons from the true reward with the model's likelihood (seeded).

    Args:
        model: a Bradley-Terry :class:`PreferenceModel` (beta and ties are taken from it).
        true_weights: theta*, shape (D,).
        num: number of comparisons n.
        seed: seeds a private generator (global RNG untouched).
        items: for a model built on an MDP: the candidate trajectories (m, T + 1, 2) or
            a TrajectoryBatch; pairs are drawn among them. Ignored for an item-pool model.
        pairs: optional int (n, 2) item indices; default uniformly random distinct pairs.

    Returns:
        :class:`PairwiseComparisons` in the form the model's ``prepare_data`` expects
        (trajectories for an MDP model, indices for an item-pool model).

    Raises:
        ValueError: for a ranking model, missing items or mis-shaped arguments.
    """
    if model.likelihood != "bradley_terry":
        raise ValueError("simulate_comparisons needs a likelihood='bradley_terry' model")
    num = positive_int(num, "num")
    pool = _item_pool(model, items)
    m = pool.shape[0]
    generator = torch.Generator().manual_seed(seed)
    if pairs is None:
        first = torch.randint(m, (num,), generator=generator)
        second = (first + 1 + torch.randint(m - 1, (num,), generator=generator)) % m
    else:
        pairs = as_int_tensor(pairs, "pairs", f"of shape ({num}, 2)")
        if tuple(pairs.shape) != (num, 2):
            raise ValueError(f"pairs must have shape ({num}, 2); got {tuple(pairs.shape)}")
        first, second = pairs[:, 0], pairs[:, 1]
    returns = model.returns(_true_theta(model, true_weights), pool).detach()
    judge = BradleyTerry(
        returns[first],
        returns[second],
        beta=model.beta,
        ties=model.ties,
        tie_strength=model.tie_strength,
    )
    outcomes = judge.sample(generator=generator)
    if model.items is not None:
        return PairwiseComparisons(first=first, second=second, outcomes=outcomes)
    return PairwiseComparisons(first=pool[first], second=pool[second], outcomes=outcomes)


def simulate_rankings(
    model: PreferenceModel, true_weights, num: int, *, set_size: int, seed: int = 0, items=None
) -> Rankings:
    """Simulate Plackett-Luce rankings of random k-item sets from the true reward.

    Args:
        model: a ``likelihood="plackett_luce"`` :class:`PreferenceModel`.
        true_weights: theta*, shape (D,).
        num: number of rankings n.
        set_size: k >= 2 items per ranking.
        seed: seeds a private generator.
        items: candidate trajectories for an MDP model (ignored for an item-pool model).

    Returns:
        :class:`Rankings` (indices for an item-pool model, trajectories (n, k, T + 1, 2)
        for an MDP model).

    Raises:
        ValueError: for a pairwise model, missing items or ``set_size`` outside [2, m].
    """
    if model.likelihood != "plackett_luce":
        raise ValueError("simulate_rankings needs a likelihood='plackett_luce' model")
    num = positive_int(num, "num")
    pool = _item_pool(model, items)
    m = pool.shape[0]
    if not 2 <= set_size <= m:
        raise ValueError(f"set_size must lie in [2, {m}]; got {set_size}")
    generator = torch.Generator().manual_seed(seed)
    sets = torch.stack([torch.randperm(m, generator=generator)[:set_size] for _ in range(num)])
    returns = model.returns(_true_theta(model, true_weights), pool).detach()
    order = PlackettLuce(returns[sets], beta=model.beta).sample(generator=generator)
    ranked = sets.gather(-1, order)
    if model.items is not None:
        return Rankings(rankings=ranked)
    return Rankings(rankings=pool[ranked])
