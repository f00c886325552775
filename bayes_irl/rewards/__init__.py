"""Reward models with priors: theta (D,) -> reward, for tabular and continuous trajectories."""

from bayes_irl.rewards.tabular import (
    LinearReward,
    MLPReward,
    RewardModel,
    TabularReward,
    check_identifiable,
    standard_normal_prior,
)

__all__ = [
    "LinearReward",
    "MLPReward",
    "RewardModel",
    "TabularReward",
    "check_identifiable",
    "standard_normal_prior",
]
