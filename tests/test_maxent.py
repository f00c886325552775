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
    theta = torch.randn(3, 2, 4, dtype=torch.float64)
    d = MaxEntTrajectory(theta, world.reward_model, ExactNormalizer(world.mdp))
    assert d.batch_shape == (3, 2) and d.event_shape == (5, 2)
    x = d.sample((7,))
    assert x.shape == (7, 3, 2, 5, 2)
    assert d.log_prob(x).shape == (7, 3, 2)
    assert d.expand((4, 3, 2)).batch_shape == (4, 3, 2)
    assert d.support.check(x).all()


def test_log_prob_of_expanded_equals_unexpanded(world):
    d = MaxEntTrajectory(world.true_weights, world.reward_model, ExactNormalizer(world.mdp))
    x = d.sample((6,))
    assert torch.allclose(d.expand((6,)).log_prob(x), d.log_prob(x), atol=1e-12)


def test_validation_rejects_bad_values(world):
    d = MaxEntTrajectory(
        world.true_weights, world.reward_model, ExactNormalizer(world.mdp), validate_args=True
    )
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
    norm, reward = ExactNormalizer(world.mdp), world.reward_model
    with pytest.raises(ValueError, match=r"theta must be a tensor of shape \(\.\.\., D\)"):
        MaxEntTrajectory(torch.zeros(2, 2, dtype=torch.float64), reward, norm)
    nan = torch.full((9, 4), float("nan"), dtype=torch.float64)
    with pytest.raises(ValueError, match="theta contains NaN"):
        MaxEntTrajectory(nan, reward, norm)


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


# ---------------------------------------------------------------- the generic path
class _LogZOnly:
    """A normaliser that only gives log Z (as estimators do): no exact likelihood."""

    is_exact = False
    diagnostics = None

    def __init__(self, exact):
        self.exact, self.space, self.mdp = exact, exact.space, exact.mdp

    def log_normalizer(self, reward, theta):
        return self.exact.log_normalizer(reward, theta)

    def sample(self, reward, theta, sample_shape=(), *, given_initial_state=False):
        return self.exact.sample(reward, theta, sample_shape)


def test_returns_plus_log_base_minus_log_z_equals_exact_likelihood(world):
    # R + log b - log Z (the path of every estimator) and the exact likelihood are the same
    # formula for full-length trajectories: float64 rounding only.
    exact = ExactNormalizer(world.mdp)
    theta = torch.randn(3, 1, 4, dtype=torch.float64)
    x = MaxEntTrajectory(world.true_weights, world.reward_model, exact).sample((6,))
    generic = MaxEntTrajectory(theta, world.reward_model, _LogZOnly(exact)).log_prob(x)
    direct = MaxEntTrajectory(theta, world.reward_model, exact).log_prob(x)
    assert generic.shape == (3, 6)
    torch.testing.assert_close(generic, direct, atol=1e-10, rtol=0)
    truncated = x.clone()
    truncated[0, -2:, 1] = -1
    truncated[0, -1, 0] = -1
    with pytest.raises(ValueError, match="need an exact normaliser"):
        MaxEntTrajectory(theta, world.reward_model, _LogZOnly(exact)).log_prob(truncated)


def test_trajectory_returns_broadcasts_without_copies(world):
    from bayes_irl.trajectories import trajectory_returns

    x = world.sample_demonstrations(5).as_tensor()
    x[0, 2:, 1] = -1  # truncated after 2 actions
    x[0, 3:, 0] = -1
    states, actions = world.mdp.split(x)
    r = world.reward_model.step_rewards(torch.randn(3, 1, 4, dtype=torch.float64))
    out = trajectory_returns(r, states, actions)  # (3, 1) against (5,)
    loop = torch.stack(
        [
            torch.stack(
                [
                    sum(r[j, 0, x[i, t, 0], x[i, t, 1]] for t in range(4) if x[i, t, 1] >= 0)
                    for i in range(5)
                ]
            )
            for j in range(3)
        ]
    )
    assert out.shape == (3, 5)
    torch.testing.assert_close(out, loop, atol=1e-12, rtol=0)
    # elementwise pairing (one table per trajectory) takes the gather path: same numbers
    paired = trajectory_returns(r[:, 0].unsqueeze(1).expand(3, 5, 9, 5), states, actions)
    torch.testing.assert_close(paired, loop, atol=1e-12, rtol=0)


def test_space_methods_and_soft_policy(world):
    from bayes_irl.soft_bellman import soft_policy

    mdp = world.mdp
    assert mdp.event_shape == (5, 2)
    data = world.sample_demonstrations(4)
    x = mdp.prepare(data)
    assert torch.equal(x, mdp.prepare(x))
    assert mdp.support.check(x).all()
    with pytest.raises(ValueError, match="data must be a TrajectoryBatch"):
        mdp.prepare([1, 2])
    groups = mdp.arviz_groups(x)
    assert groups["observed_data"]["states"].shape == (4, 5)
    # log b(x | s_0) = log b(x) - log p0(s_0)
    diff = mdp.log_base(x) - mdp.log_base(x, given_initial_state=True)
    torch.testing.assert_close(diff, mdp.initial.log()[x[:, 0, 0]], atol=1e-12, rtol=0)
    for kind in ("global", "causal"):
        log_pi = soft_policy(mdp, world.true_step_rewards(), kind=kind)
        assert log_pi.shape == (4, 9, 5)
        torch.testing.assert_close(
            log_pi.logsumexp(-1), torch.zeros(4, 9, dtype=torch.float64), atol=1e-12, rtol=0
        )


def test_simulate_and_sufficient_statistics(world):
    model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
    theta = torch.randn(3, 4, dtype=torch.float64)
    reps = model.simulate(theta, 6, generator=torch.Generator().manual_seed(0))
    assert reps.shape == (3, 6, 5, 2) and world.mdp.support.check(reps).all()
    data = model.prepare_data(world.sample_demonstrations(10))
    potential = model.sufficient_statistics_potential(data)
    assert potential({"weights": theta[0]}).shape == ()
    contexts = DemonstrationModel(
        world.reward_model, ExactNormalizer(world.mdp), given_initial_state=True
    )
    # given initial states have the fast potential too (value weights on V_0)
    assert contexts.sufficient_statistics_potential(data) is not None
    starts = torch.zeros(6, dtype=torch.int64)
    reps = contexts.simulate(theta, 6, initial_states=starts)
    assert (reps[..., 0, 0] == 0).all()
