"""MaxEntTrajectory as a Pyro distribution: shapes, expand, support, validation."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from bayes_irl import GridWorld
from bayes_irl.inference import ExactNormalizer
from bayes_irl.models import DemonstrationModel, MaxEntTrajectory


@pytest.fixture(scope="module")
def world():
    return GridWorld.create(size=3, horizon=4, seed=0)


def test_shapes_batch_event_sample(world):
    r = world.reward_model.step_rewards(torch.randn(3, 2, 4, dtype=torch.float64))
    d = MaxEntTrajectory(r, ExactNormalizer(world.mdp))
    assert d.batch_shape == (3, 2) and d.event_shape == (5, 2)
    x = d.sample((7,))
    assert x.shape == (7, 3, 2, 5, 2)
    assert d.log_prob(x).shape == (7, 3, 2)
    assert d.expand((4, 3, 2)).batch_shape == (4, 3, 2)
    assert d.support.check(x).all()


def test_log_prob_of_expanded_equals_unexpanded(world):
    r = world.true_step_rewards()
    d = MaxEntTrajectory(r, ExactNormalizer(world.mdp))
    x = d.sample((6,))
    assert torch.allclose(d.expand((6,)).log_prob(x), d.log_prob(x), atol=1e-12)


def test_validation_rejects_bad_values(world):
    d = MaxEntTrajectory(world.true_step_rewards(), ExactNormalizer(world.mdp), validate_args=True)
    x = d.sample()
    bad = x.clone()
    bad[0, 1] = 99  # action out of range
    with pytest.raises(ValueError, match="support"):
        d.log_prob(bad)
    gap = x.clone()
    gap[1, 1] = -1  # a hole in the observed prefix
    with pytest.raises(ValueError, match="support"):
        d.log_prob(gap)


def test_constructor_errors(world):
    norm = ExactNormalizer(world.mdp)
    with pytest.raises(ValueError, match=r"step_rewards must have shape \(\.\.\., S, A\)"):
        MaxEntTrajectory(torch.zeros(2, 2, dtype=torch.float64), norm)
    nan = torch.full((9, 5), float("nan"), dtype=torch.float64)
    with pytest.raises(ValueError, match="step_rewards contains NaN"):
        MaxEntTrajectory(nan, norm)


def test_model_trace_shapes_and_subsampling(world):
    model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp), subsample_size=8)
    data = model.prepare_data(world.sample_demonstrations(30))
    trace = pyro.poutine.trace(model).get_trace(data)
    trace.compute_log_prob()
    site = trace.nodes["demonstrations"]
    assert site["value"].shape == (8, 5, 2) and site["log_prob"].shape == (8,)
    assert trace.nodes["demos"]["value"].shape == (8,)
    full = pyro.poutine.trace(model).get_trace(data, subsample=False)
    assert full.nodes["demonstrations"]["value"].shape == (30, 5, 2)
    with pytest.raises(ValueError, match="subsample_size must be a positive int"):
        DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp), subsample_size=0)
    with pytest.raises(ValueError, match="reward_model must be a bayes_irl.RewardModel"):
        DemonstrationModel(dist.Normal(0, 1), ExactNormalizer(world.mdp))
