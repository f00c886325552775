"""Preference data: raw comparisons and rankings, and their validated, prepared form.

Users hand a :class:`PairwiseComparisons` (Bradley-Terry) or :class:`Rankings`
(Plackett-Luce) to :meth:`bayes_irl.models.PreferenceModel.prepare_data`, which validates
it once with :func:`prepare_comparisons` / :func:`prepare_rankings` and returns a
:class:`PreparedPreferences`: ONE table of item trajectories (m, T + 1, 2) plus int64
indices into it, so that each item's return is computed once per reward draw.

Items come in one of two forms:

* on an MDP (``items=None``): the data carry the item trajectories themselves (a
  :class:`~bayes_irl.TrajectoryBatch` or an int tensor (n, T + 1, 2), validated against
  the MDP);
* on a fixed item pool (``items`` (m, T + 1, 2)): the data carry item indices in [0, m).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bayes_irl.mdp import TabularMDP
from bayes_irl.models.choice import TIE
from bayes_irl.trajectories import PAD, TrajectoryBatch
from bayes_irl.validation import as_int_tensor

__all__ = [
    "PairwiseComparisons",
    "PreparedPreferences",
    "Rankings",
    "as_trajectories",
    "pad_trajectories",
    "prepare_comparisons",
    "prepare_rankings",
]


@dataclass(frozen=True, eq=False)
class PairwiseComparisons:
    """Raw pairwise comparisons, validated by :meth:`PreferenceModel.prepare_data`.

    Attributes:
        first: the first item of each comparison: trajectories (a :class:`TrajectoryBatch`
            or an int tensor of shape (n, T + 1, 2)) for a model built on an MDP, or item
            indices of shape (n,) for a model built on an item pool.
        second: the second item, same form as ``first``.
        outcomes: shape (n,): 1.0 = first preferred, 0.0 = second preferred, 0.5 = tie.
    """

    first: object
    second: object
    outcomes: object


@dataclass(frozen=True, eq=False)
class Rankings:
    """Raw rankings of k items each (best first).

    Attributes:
        rankings: trajectories of shape (n, k, T + 1, 2) (model built on an MDP) or item
            indices of shape (n, k) (model built on an item pool), best item first.
    """

    rankings: object


@dataclass(frozen=True, eq=False)
class PreparedPreferences:
    """Validated preference data: an item table plus indices into it.

    Attributes:
        items: int64 trajectories of shape (m, T + 1, 2).
        first: int64 (n,) item index of the first item (pairwise) or None.
        second: int64 (n,) item index of the second item (pairwise) or None.
        outcomes: float (n,) outcomes (pairwise) or None.
        choice_sets: int64 (n, k) item indices of each ranked set, sorted (rankings) or None.
        orders: int64 (n, k) permutation of each set, best first (rankings) or None.
    """

    items: torch.Tensor
    first: torch.Tensor | None = None
    second: torch.Tensor | None = None
    outcomes: torch.Tensor | None = None
    choice_sets: torch.Tensor | None = None
    orders: torch.Tensor | None = None

    @property
    def num_observations(self) -> int:
        """Number of comparisons or rankings n."""
        return (self.outcomes if self.outcomes is not None else self.orders).shape[0]

    @property
    def is_pairwise(self) -> bool:
        """True for Bradley-Terry data, False for rankings."""
        return self.outcomes is not None

    def observations(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """Return the observed values: outcomes (b,) or orders (b, k) at ``index`` (default all)."""
        values = self.outcomes if self.is_pairwise else self.orders
        return values if index is None else values[index]


def as_trajectories(value, name: str, mdp: TabularMDP | None) -> torch.Tensor:
    """Validate item trajectories and return them as an int64 tensor (n, T + 1, 2).

    Args:
        value: a :class:`TrajectoryBatch` or an integer array of shape (n, T + 1, 2).
        name: the argument's name, used in the error messages.
        mdp: validate against this MDP (ranges, lengths, possible moves); trajectories
            with a shorter padded horizon T are padded to the MDP's horizon first. None
            checks the encoding only.

    Raises:
        ValueError: naming ``name`` for a mis-shaped or invalid encoding.
    """
    if isinstance(value, TrajectoryBatch):
        value = value.as_tensor()
    tensor = as_int_tensor(value, name, "(trajectory encoding)")
    if tensor.dim() != 3 or tensor.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (n, T + 1, 2); got {tuple(tensor.shape)}")
    if mdp is not None and tensor.shape[1] - 1 < mdp.horizon:
        tensor = pad_trajectories(tensor, mdp.horizon)
    return TrajectoryBatch.from_tensor(tensor, mdp=mdp).as_tensor()


def pad_trajectories(items: torch.Tensor, horizon: int) -> torch.Tensor:
    """Pad trajectories (n, T + 1, 2) with ``PAD`` (-1) to (n, horizon + 1, 2).

    Shorter items (ragged data, or a file written for a shorter horizon) keep their
    lengths: the padded steps are unobserved and contribute nothing to a return.

    Raises:
        ValueError: if the items are longer than ``horizon``.
    """
    extra = horizon + 1 - items.shape[1]
    if extra < 0:
        raise ValueError(
            f"items have horizon T = {items.shape[1] - 1}, longer than the MDP's {horizon}"
        )
    fill = torch.full((items.shape[0], extra, 2), PAD, dtype=items.dtype)
    return torch.cat([items, fill], dim=1)


def _check_indices(value, name: str, shape: tuple[int, ...], num_items: int) -> torch.Tensor:
    index = as_int_tensor(value, name, f"of shape {shape}")
    if tuple(index.shape) != shape:
        raise ValueError(f"{name} must be item indices of shape {shape}; got {tuple(index.shape)}")
    if (index < 0).any() or (index >= num_items).any():
        raise ValueError(
            f"{name} must index the m = {num_items} items, i.e. lie in [0, {num_items})"
        )
    return index


def prepare_comparisons(
    data: PairwiseComparisons,
    *,
    items: torch.Tensor | None,
    mdp: TabularMDP | None,
    allow_ties: bool,
) -> PreparedPreferences:
    """Validate pairwise comparisons and return them as an item table plus indices.

    Args:
        data: the raw comparisons.
        items: the item pool (m, T + 1, 2) of an item-pool model (``data`` holds indices),
            or None (``data`` holds trajectories of ``mdp``).
        mdp: the MDP that trajectory data are validated against (None: encoding only).
        allow_ties: accept the outcome 0.5 (:data:`TIE`).

    Returns:
        :class:`PreparedPreferences` with ``first``, ``second`` (n,) and ``outcomes`` (n,).

    Raises:
        ValueError: for mismatched shapes, out-of-range indices, NaN or outcomes outside
            {0, 1} (or 0.5 without ties).
    """
    outcomes = torch.as_tensor(np.asarray(data.outcomes, dtype=np.float64))
    if outcomes.dim() != 1 or outcomes.numel() == 0:
        raise ValueError(f"outcomes must have shape (n,), n >= 1; got {tuple(outcomes.shape)}")
    if torch.isnan(outcomes).any():
        raise ValueError("outcomes contain NaN; use 1.0, 0.0 or 0.5 (tie)")
    allowed = (outcomes == 0) | (outcomes == 1)
    if allow_ties:
        allowed = allowed | (outcomes == TIE)
    if not allowed.all():
        i = int((~allowed).nonzero()[0, 0])
        expected = "{0, 1, 0.5}" if allow_ties else "{0, 1} (ties need ties=...)"
        raise ValueError(f"outcomes must lie in {expected}; outcomes[{i}] = {outcomes[i]}")
    n = outcomes.shape[0]
    if items is None:
        first = as_trajectories(data.first, "first", mdp)
        second = as_trajectories(data.second, "second", mdp)
        if first.shape[0] != n or second.shape[0] != n:
            raise ValueError(
                f"first and second must hold n = {n} trajectories (one per outcome); got "
                f"{first.shape[0]} and {second.shape[0]}"
            )
        table = torch.cat([first, second])
        first_i, second_i = torch.arange(n), torch.arange(n) + n
    else:
        table = items
        first_i = _check_indices(data.first, "first", (n,), items.shape[0])
        second_i = _check_indices(data.second, "second", (n,), items.shape[0])
    return PreparedPreferences(items=table, first=first_i, second=second_i, outcomes=outcomes)


def prepare_rankings(
    data: Rankings, *, items: torch.Tensor | None, mdp: TabularMDP | None
) -> PreparedPreferences:
    """Validate rankings and return them as an item table plus choice sets and orders.

    Args:
        data: the raw rankings, best item first.
        items: the item pool (m, T + 1, 2) of an item-pool model (``data`` holds indices
            (n, k)), or None (``data`` holds trajectories (n, k, T + 1, 2) of ``mdp``).
        mdp: the MDP that trajectory data are validated against (None: encoding only).

    Returns:
        :class:`PreparedPreferences` with ``choice_sets`` (n, k) (sorted item indices) and
        ``orders`` (n, k) (positions within each set, best first).

    Raises:
        ValueError: for mis-shaped data, k < 2, out-of-range or repeated items.
    """
    if items is None:
        if isinstance(data.rankings, TrajectoryBatch):
            raise ValueError("rankings must have shape (n, k, T + 1, 2)")
        raw = as_int_tensor(data.rankings, "rankings", "(n, k, T + 1, 2)")
        if raw.dim() != 4 or raw.shape[-1] != 2 or raw.shape[1] < 2:
            raise ValueError(
                f"rankings must have shape (n, k, T + 1, 2), k >= 2; got {tuple(raw.shape)}"
            )
        n, k = raw.shape[:2]
        table = as_trajectories(raw.reshape(n * k, *raw.shape[2:]), "rankings", mdp)
        ranked = torch.arange(n * k).reshape(n, k)
    else:
        table = items
        ranked = as_int_tensor(data.rankings, "rankings", "of shape (n, k)")
        if ranked.dim() != 2 or ranked.shape[1] < 2 or ranked.shape[0] == 0:
            raise ValueError(
                f"rankings must be item indices of shape (n, k), k >= 2; got "
                f"{tuple(ranked.shape)}"
            )
        ranked = _check_indices(ranked, "rankings", tuple(ranked.shape), items.shape[0])
        sorted_sets = ranked.sort(-1).values
        if (sorted_sets[:, 1:] == sorted_sets[:, :-1]).any():
            raise ValueError("rankings must not repeat an item within a ranking")
    choice_sets = ranked.sort(-1).values
    # orders[j, l] = position within choice_sets[j] of the l-th best item
    orders = (choice_sets.unsqueeze(-1) == ranked.unsqueeze(-2)).long().argmax(-2)
    return PreparedPreferences(items=table, choice_sets=choice_sets, orders=orders)
