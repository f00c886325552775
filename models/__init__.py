"""Pyro distributions and models of bayes_irl, imported as ``bayes_irl.models``.

Imports the core only. The maxent trajectory distribution, the choice distributions
(Bradley-Terry, Plackett-Luce) and the models built from them (demonstrations,
preferences, both combined) share the reward models of :mod:`bayes_irl.rewards` and the
model protocol of :mod:`bayes_irl.protocols`.
"""

from bayes_irl.models.choice import TIE, BradleyTerry, PlackettLuce
from bayes_irl.models.combined import CombinedModel
from bayes_irl.models.demonstrations import DemonstrationModel
from bayes_irl.models.maxent import MaxEntTrajectory, TrajectoryConstraint
from bayes_irl.models.potential import TracedPotential, model_potential
from bayes_irl.models.preference_data import (
    PairwiseComparisons,
    PreparedPreferences,
    Rankings,
)
from bayes_irl.models.preference_io import (
    load_preferences,
    preferences_from_dataframe,
    save_preferences,
)
from bayes_irl.models.preference_simulation import simulate_comparisons, simulate_rankings
from bayes_irl.models.preferences import PreferenceModel
from bayes_irl.models.teachers import BPrefTeacher

__all__ = [
    "TIE",
    "BPrefTeacher",
    "BradleyTerry",
    "CombinedModel",
    "DemonstrationModel",
    "MaxEntTrajectory",
    "PairwiseComparisons",
    "PlackettLuce",
    "PreferenceModel",
    "PreparedPreferences",
    "Rankings",
    "TracedPotential",
    "TrajectoryConstraint",
    "load_preferences",
    "model_potential",
    "preferences_from_dataframe",
    "save_preferences",
    "simulate_comparisons",
    "simulate_rankings",
]
