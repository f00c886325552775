"""bayes_irl: Bayesian maximum-entropy inverse reinforcement learning with Pyro.

Demonstrations are draws from P(x | theta) ∝ b(x) exp R_theta(x); bayes_irl fits the
posterior p(theta | demonstrations) with SVI, NUTS/HMC and friends, and hands it to
ArviZ. The package is layered one way: this core (environments, trajectories, reward
models, soft-Bellman and LQ algebra, policies, I/O) <- :mod:`bayes_irl.models` (Pyro
distributions and models) <- :mod:`bayes_irl.inference` (normalisers, back-ends,
Posterior) <- :mod:`bayes_irl.app` (CLI, plots). The math, the conventions and the
architecture are written up in the repository's ``docs/`` folder.
"""

from bayes_irl.gridworld import GridWorld
from bayes_irl.mdp import TabularMDP
from bayes_irl.policies import GaussianMLPPolicy, GaussianPolicy, LinearGaussianPolicy
from bayes_irl.rewards import (
    LinearReward,
    MLPReward,
    RewardModel,
    TabularReward,
    check_identifiable,
)
from bayes_irl.sequences import TokenSequenceEnv
from bayes_irl.trajectories import PAD, TrajectoryBatch

__version__ = "0.1.0"

__all__ = [
    "GaussianMLPPolicy",
    "GaussianPolicy",
    "GridWorld",
    "LinearGaussianPolicy",
    "LinearReward",
    "MLPReward",
    "PAD",
    "RewardModel",
    "TabularMDP",
    "TabularReward",
    "TokenSequenceEnv",
    "TrajectoryBatch",
    "check_identifiable",
    "__version__",
]
