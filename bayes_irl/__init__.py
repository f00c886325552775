"""bayes_irl: Bayesian maximum-entropy inverse reinforcement learning with Pyro.

Demonstrations are draws from P(x | theta) ∝ b(x) exp R_theta(x); bayes_irl fits the
posterior p(theta | demonstrations) with SVI, NUTS/HMC and friends, and hands it to
ArviZ. See the README and ``DESIGN.md`` for the math and the layout.
"""

from bayes_irl.gridworld import GridWorld
from bayes_irl.mdp import TabularMDP
from bayes_irl.rewards import (
    LinearReward,
    MLPReward,
    RewardModel,
    TabularReward,
    check_identifiable,
)
from bayes_irl.trajectories import PAD, TrajectoryBatch

__version__ = "0.1.0"

__all__ = [
    "GridWorld",
    "LinearReward",
    "MLPReward",
    "PAD",
    "RewardModel",
    "TabularMDP",
    "TabularReward",
    "TrajectoryBatch",
    "check_identifiable",
    "__version__",
]
from bayes_irl.gaussian_policy import (  # noqa: E402
    GaussianMLPPolicy,
    GaussianPolicy,
    LinearGaussianPolicy,
)

__all__ += ["GaussianMLPPolicy", "GaussianPolicy", "LinearGaussianPolicy"]

from bayes_irl.sequences import TokenSequenceEnv  # noqa: E402

__all__ += ["TokenSequenceEnv"]
