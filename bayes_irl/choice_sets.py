r"""Choice sets as a tabular MDP: Bradley-Terry and Plackett-Luce ARE maxent models.

A choice from a set C = {x_1, ..., x_k} of items (trajectories, responses) with
P(x_i | C) ∝ exp(beta R(x_i)) is the maxent trajectory distribution of a one-step MDP:
state 0 is the start, state 1 the end, action i means "choose item i", the step reward
is ``r[0, i] = beta R(x_i)`` (``r[1, :] = 0``) and the base measure is uniform. On two
items this is Bradley-Terry; repeated choices without the chosen item give Plackett-Luce
(:mod:`bayes_irl.models.choice`).
"""

from __future__ import annotations

import torch

from bayes_irl.mdp import TabularMDP
from bayes_irl.validation import positive_int

__all__ = ["choice_set_mdp"]


def choice_set_mdp(num_items: int, *, dtype: torch.dtype = torch.float64) -> TabularMDP:
    """Return the one-step MDP whose trajectories are the choices from a set of items.

    With step rewards ``r[0, i] = beta R(x_i)`` (and ``r[1, :] = 0``), shape (2, k), the
    maxent trajectory distribution of this MDP is the choice model
    P(i | C) ∝ exp(beta R(x_i)); a choice of item i is the trajectory ``[[0, i], [1, -1]]``.

    Args:
        num_items: k = |C| >= 2.
        dtype: floating dtype.

    Returns:
        A :class:`TabularMDP` with S = 2, A = ``num_items``, horizon 1 and one dummy feature.

    Raises:
        ValueError: if ``num_items`` is not an integer >= 2.
    """
    num_items = positive_int(num_items, "num_items", minimum=2)
    successors = torch.ones(2, num_items, 1, dtype=torch.int64)
    return TabularMDP.from_sparse(
        successors=successors,
        successor_probs=torch.ones(2, num_items, 1),
        initial=torch.tensor([1.0, 0.0]),
        features=torch.tensor([[1.0], [0.0]]),
        horizon=1,
        dtype=dtype,
    )
