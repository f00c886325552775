"""Reward models with priors: theta (D,) -> return R_theta(x), tabular and continuous.

One base class, :class:`RewardModel` (:mod:`bayes_irl.rewards.base`), implements
:class:`bayes_irl.protocols.RewardModel`; the tabular rewards (step tables r[s, a]) live in
:mod:`bayes_irl.rewards.tabular`, the continuous ones in :mod:`bayes_irl.rewards.continuous`.
"""

from bayes_irl.rewards.base import RewardModel, standard_normal_prior
from bayes_irl.rewards.continuous import NeuralStateReward, QuadraticReward
from bayes_irl.rewards.tabular import (
    LinearReward,
    MLPReward,
    TabularReward,
    TabularRewardModel,
    check_identifiable,
)

__all__ = [
    "LinearReward",
    "MLPReward",
    "NeuralStateReward",
    "QuadraticReward",
    "RewardModel",
    "TabularReward",
    "TabularRewardModel",
    "check_identifiable",
    "standard_normal_prior",
]
