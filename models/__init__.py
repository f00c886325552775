"""Pyro models of bayes_irl, imported as ``bayes_irl.models``.

The maxent trajectory distribution and the demonstration model; preference models share
the same reward models and the same small model protocol (see
:mod:`bayes_irl.models.demonstrations`).
"""

from bayes_irl.models.demonstrations import DemonstrationModel
from bayes_irl.models.maxent import MaxEntTrajectory, TrajectoryConstraint

__all__ = ["DemonstrationModel", "MaxEntTrajectory", "TrajectoryConstraint"]
from bayes_irl.models.continuous import (  # noqa: E402
    ContinuousDemonstrationModel,
    ContinuousMaxEntTrajectory,
    NeuralStateReward,
    QuadraticReward,
    TrajectoryLayout,
)

__all__ += [
    "ContinuousDemonstrationModel",
    "ContinuousMaxEntTrajectory",
    "NeuralStateReward",
    "QuadraticReward",
    "TrajectoryLayout",
]

from bayes_irl.models.preferences import (  # noqa: E402
    BradleyTerry,
    CombinedModel,
    PairwiseComparisons,
    PlackettLuce,
    PreferenceModel,
    Rankings,
    simulate_comparisons,
    simulate_rankings,
)

__all__ += [
    "BradleyTerry",
    "CombinedModel",
    "PairwiseComparisons",
    "PlackettLuce",
    "PreferenceModel",
    "Rankings",
    "simulate_comparisons",
    "simulate_rankings",
]
