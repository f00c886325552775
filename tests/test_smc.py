"""SMC normaliser: unbiasedness, exactness with the exact twist, reweighting, errors."""

import math

import pytest
import torch

from bayes_irl import GridWorld
from bayes_irl.inference import ExactNormalizer
from bayes_irl.inference.normalizers.importance import PolicyProposal, TwistedProposal
from bayes_irl.inference.normalizers.smc import SMCNormalizer, smc_log_normalizer


@pytest.fixture(scope="module")
def tiny():
    return GridWorld.create(size=3, slip=0.1, horizon=4, num_features=2, seed=0)


def test_smc_is_unbiased_for_z(tiny):
    # 300 independent sweeps (K = 50, resampling whenever ESS < K/2): the mean of
    # Z_hat / Z must be 1 within 4 standard errors of that mean (unbiasedness of SMC).
    r = tiny.true_step_rewards()
    exact = ExactNormalizer(tiny.mdp).log_normalizer(tiny.reward_model, tiny.true_weights)
    g = torch.Generator().manual_seed(0)
    ratios = torch.stack([
        (smc_log_normalizer(PolicyProposal(tiny.mdp), r, 50, generator=g)[0] - exact).exp()
        for _ in range(300)
    ])
    se = ratios.std() / math.sqrt(300)
    assert abs(ratios.mean() - 1) < 4 * se
    assert se < 0.05  # the check has power: it would see a 20% bias


def test_smc_with_exact_twist_is_exact(tiny):
    r = tiny.true_step_rewards()
    exact = ExactNormalizer(tiny.mdp).log_normalizer(tiny.reward_model, tiny.true_weights)
    proposal = TwistedProposal(tiny.mdp).soft_backup_(r)
    reward, theta = tiny.reward_model, tiny.true_weights
    norm = SMCNormalizer(proposal, num_particles=64, reward=reward, theta=theta)
    # every incremental weight is 1, so log Z_hat = log Z to rounding
    assert norm.reference_log_z == pytest.approx(exact.item(), abs=1e-10)
    assert norm.num_resamples == 0
    torch.testing.assert_close(norm.log_normalizer(reward, theta), exact, rtol=0, atol=1e-10)


def test_smc_reweighting_matches_exact_nearby_and_is_batched(tiny):
    # Reference sweep at theta*, evaluation at theta* + 0.1: a K = 4000 bank from an exact
    # twisted kernel reweighted by a small reward change has s.e. ~0.01 nats; allow 0.05.
    r = tiny.true_step_rewards()
    proposal = TwistedProposal(tiny.mdp).soft_backup_(r)
    reward = tiny.reward_model
    norm = SMCNormalizer(proposal, num_particles=4000, reward=reward, theta=tiny.true_weights,
                         seed=1)
    thetas = tiny.true_weights + torch.tensor([[0.1, -0.1], [0.05, 0.0]], dtype=torch.float64)
    est = norm.log_normalizer(reward, thetas)
    exact = ExactNormalizer(tiny.mdp).log_normalizer(reward, thetas)
    assert est.shape == (2,)
    assert (est - exact).abs().max() < 0.05
    assert norm.diagnostics is None  # batched calls do not diagnose
    norm.log_normalizer(reward, thetas[0])
    assert norm.diagnostics.khat < 0.7


def test_refresh_sets_new_reference(tiny):
    norm = SMCNormalizer(PolicyProposal(tiny.mdp), num_particles=100)
    assert norm.refresh(tiny.reward_model, tiny.true_weights) is norm
    assert len(norm.ess_history) == tiny.mdp.horizon
    assert 1 <= norm.num_unique_paths <= 100


def test_smc_errors(tiny):
    proposal = PolicyProposal(tiny.mdp)
    with pytest.raises(ValueError, match="num_particles"):
        SMCNormalizer(proposal, num_particles=1)
    with pytest.raises(ValueError, match="ess_threshold"):
        SMCNormalizer(proposal, num_particles=10, ess_threshold=1.5)
    with pytest.raises(ValueError, match="twist"):
        SMCNormalizer(proposal, num_particles=10, twist="yes")
    with pytest.raises(ValueError, match="twist must have shape"):
        SMCNormalizer(proposal, num_particles=10, twist=torch.zeros(3, 9))
    with pytest.raises(ValueError, match="proposal must be a tabular Proposal"):
        SMCNormalizer(tiny.mdp, num_particles=10)
    norm = SMCNormalizer(proposal, num_particles=10)
    reward = tiny.reward_model
    bad = tiny.true_weights.clone()
    bad[0] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        norm.log_normalizer(reward, bad)
    with pytest.raises(ValueError, match="theta must have shape"):
        norm.refresh(reward, torch.zeros(4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"theta must have shape \(D,\)"):
        norm.refresh(reward, torch.zeros(3, 2, dtype=torch.float64))
