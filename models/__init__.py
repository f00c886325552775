"""Pyro distributions and models of bayes_irl, imported as ``bayes_irl.models``.

Imports the core only. The maxent trajectory distribution, the choice distributions
(Bradley-Terry, Plackett-Luce) and the models built from them (demonstrations,
preferences, both combined) share the reward models of :mod:`bayes_irl.rewards` and the
model protocol of :mod:`bayes_irl.protocols`.
"""

from bayes_irl.models.continuous import (
    ContinuousDemonstrationModel,
    ContinuousMaxEntTrajectory,
    NeuralStateReward,
    QuadraticReward,
    TrajectoryLayout,
)
from bayes_irl.models.demonstrations import DemonstrationModel
from bayes_irl.models.maxent import MaxEntTrajectory, TrajectoryConstraint
from bayes_irl.models.preferences import (
    BradleyTerry,
    CombinedModel,
    PairwiseComparisons,
    PlackettLuce,
    PreferenceModel,
    Rankings,
    simulate_comparisons,
    simulate_rankings,
)

__all__ = [
    "BradleyTerry",
    "CombinedModel",
    "ContinuousDemonstrationModel",
    "ContinuousMaxEntTrajectory",
    "DemonstrationModel",
    "MaxEntTrajectory",
    "NeuralStateReward",
    "PairwiseComparisons",
    "PlackettLuce",
    "PreferenceModel",
    "QuadraticReward",
    "Rankings",
    "TrajectoryConstraint",
    "TrajectoryLayout",
    "simulate_comparisons",
    "simulate_rankings",
]
