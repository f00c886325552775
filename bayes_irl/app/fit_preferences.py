"""``bayes-irl fit --preferences FILE``: preferences alone or with demonstrations.

The file (``.csv`` or ``.jsonl``, format in :mod:`bayes_irl.models.preference_io`) holds
pairwise comparisons or rankings. Items named by id refer to the trajectories of
``--items`` (a demonstrations-format ``.npz``; default the ``--demos`` file); inline items
are trajectories of the MDP. A file with tie outcomes (0.5) is fitted with Davidson ties
at the default tie strength. With ``--demos`` the two likelihoods share one reward draw
(:class:`bayes_irl.models.CombinedModel`).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--preferences`` and ``--items`` to the ``fit`` parser."""
    parser.add_argument("--preferences", type=Path,
                        help="comparisons or rankings (.csv/.jsonl); alone or with --demos")
    parser.add_argument("--items", type=Path,
                        help="trajectories (.npz) that ids in --preferences refer to "
                             "(default: the --demos file)")


def build(args, mdp, reward, demo_model, demos):
    """Return ``(model, data, description)`` for the fit, preferences included.

    Args:
        args: parsed arguments (``preferences``, ``items``, ``demos``).
        mdp: the MDP.
        reward: the reward model (shared by both likelihoods).
        demo_model: the :class:`DemonstrationModel`, or None for preferences alone.
        demos: the demonstrations (a TrajectoryBatch), or None.

    Raises:
        ValueError: for ids without an item file, or malformed rows (file and line named).
    """
    import torch

    from bayes_irl.io import load_demonstrations
    from bayes_irl.models import CombinedModel, PairwiseComparisons, PreferenceModel
    from bayes_irl.models.preference_io import load_preferences

    data = load_preferences(args.preferences)
    pairwise = isinstance(data, PairwiseComparisons)
    field = data.first if pairwise else data.rankings
    by_id = torch.as_tensor(field).dim() == (1 if pairwise else 2)
    if by_id:
        source = args.items or args.demos
        if source is None:
            raise ValueError(f"{args.preferences} names items by id: pass --items FILE.npz "
                             "(or --demos) holding those trajectories")
        pool = load_demonstrations(source, mdp=mdp)
        data = load_preferences(args.preferences, items=pool)  # ids range-checked by line
        items = pool
    else:
        items = mdp
    ties = "davidson" if pairwise and bool((torch.as_tensor(data.outcomes) == 0.5).any()) else None
    likelihood = "bradley_terry" if pairwise else "plackett_luce"
    pref_model = PreferenceModel(reward, items, likelihood=likelihood, ties=ties)
    n = len(data.outcomes) if pairwise else len(data.rankings)
    what = f"{n} {'comparisons' if pairwise else 'rankings'} from {args.preferences}"
    if demo_model is None:
        return pref_model, data, what
    return CombinedModel(demo_model, pref_model), {"demonstrations": demos,
                                                   "preferences": data}, what
