"""Every implementation satisfies the protocol of its concept (bayes_irl.protocols).

The protocols are structural (``typing.Protocol``, runtime-checkable): these checks fail
when an implementation loses or renames a method that back-ends and models rely on.
"""

from __future__ import annotations

import pyro.distributions as dist
import pytest
import torch

from bayes_irl import GridWorld
from bayes_irl.continuous import TrajectoryLayout
from bayes_irl.gym_envs import LinearQuadraticVectorEnv
from bayes_irl.inference import (
    ExactNormalizer,
    ImportanceNormalizer,
    PolicyProposal,
    SMCNormalizer,
    TwistedProposal,
)
from bayes_irl.inference.normalizers.simulator_proposal import SimulatorProposal
from bayes_irl.linear_quadratic import LinearQuadraticMDP
from bayes_irl.models import CombinedModel, DemonstrationModel, PreferenceModel
from bayes_irl.policies import LinearGaussianPolicy
from bayes_irl.protocols import (
    ExactLikelihood,
    GuidePolicy,
    Model,
    Normalizer,
    RewardModel,
    SufficientStatistics,
    TrajectorySpace,
)
from bayes_irl.rewards import MLPReward, NeuralStateReward, QuadraticReward, TabularReward


@pytest.fixture(scope="module")
def world():
    return GridWorld.create(size=3, horizon=4, seed=0)


@pytest.fixture(scope="module")
def lq():
    return LinearQuadraticMDP.default(dx=2, du=1, horizon=5)


def _simulator_proposal(lq):
    policy = LinearGaussianPolicy(horizon=5, state_dim=2, action_dim=1)
    return SimulatorProposal(LinearQuadraticVectorEnv(lq, num_envs=8), policy)


def test_trajectory_spaces(world, lq):
    for space in (world.mdp, lq, TrajectoryLayout(5, 2, 1)):
        assert isinstance(space, TrajectorySpace), type(space).__name__


def test_reward_models(world):
    rewards = [
        world.reward_model,
        TabularReward(world.mdp.num_states, world.mdp.num_actions),
        MLPReward(world.mdp.features, hidden=2),
        QuadraticReward(2, 1),
        NeuralStateReward(2, 1, control_cost=0.1, hidden=2),
    ]
    for reward in rewards:
        assert isinstance(reward, RewardModel), type(reward).__name__


def test_normalizers_and_guide_policies(world, lq):
    proposals = [PolicyProposal(world.mdp), TwistedProposal(world.mdp), _simulator_proposal(lq)]
    for proposal in proposals:
        assert isinstance(proposal, GuidePolicy), type(proposal).__name__
    exact = [ExactNormalizer(world.mdp), ExactNormalizer(world.mdp, kind="causal"),
             ExactNormalizer(lq)]
    estimators = [
        ImportanceNormalizer(TwistedProposal(world.mdp), num_samples=16, seed=0),
        ImportanceNormalizer(_simulator_proposal(lq), num_samples=16, seed=0),
        SMCNormalizer(TwistedProposal(world.mdp), num_particles=16, reward=world.reward_model,
                      theta=world.true_weights),
    ]
    for norm in exact + estimators:
        assert isinstance(norm, Normalizer), type(norm).__name__
    for norm in exact:
        assert norm.is_exact and isinstance(norm, ExactLikelihood)
    for norm in estimators:
        assert not norm.is_exact and not isinstance(norm, ExactLikelihood)


def test_models(world):
    demos = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
    prefs = PreferenceModel(world.reward_model, world.mdp)
    for model in (demos, prefs, CombinedModel(demos, prefs)):
        assert isinstance(model, Model), type(model).__name__
    assert isinstance(demos, SufficientStatistics)
    # the capability is offered where it applies and declined (None) elsewhere
    data = demos.prepare_data(world.sample_demonstrations(5, seed=0))
    assert demos.sufficient_statistics_potential(data) is not None
    rational = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp),
                                  rationality_prior=dist.Gamma(
                                      torch.tensor(2.0, dtype=torch.float64),
                                      torch.tensor(2.0, dtype=torch.float64)))
    assert rational.sufficient_statistics_potential(data) is None
    value = demos.sufficient_statistics_potential(data)({"weights": world.true_weights})
    assert value.shape == () and torch.isfinite(value)
