"""Guide-policy training and the SVI callback, checked against the exact normaliser."""

import math

import pytest
import torch

from bayes_irl import GridWorld
from bayes_irl.inference import ExactNormalizer, run_svi
from bayes_irl.inference.guide_policy_training import GuidePolicyTrainer, guide_objective
from bayes_irl.inference.normalizers.importance import (
    ImportanceNormalizer,
    PolicyProposal,
    TwistedProposal,
)
from bayes_irl.inference.normalizers.smc import SMCNormalizer
from bayes_irl.models import DemonstrationModel
from bayes_irl.soft_bellman import soft_values


@pytest.fixture(scope="module")
def tiny():
    return GridWorld.create(size=3, slip=0.1, horizon=4, num_features=2, seed=0)


@pytest.fixture(scope="module")
def grid10():
    return GridWorld.create(size=10, slip=0.1, horizon=20, num_features=4, seed=0)


def test_twisted_training_beats_log_z_target(grid10):
    # 400 REINFORCE (reverse-KL) steps then 300 forward-KL steps (256 trajectories each,
    # Adam lr 0.1 then 0.05) from the uniform guide. Target:
    # |log Z_hat - log Z| <= 0.1 nats at K = 1000, checked on 3 independent banks
    # (measured over 8 banks: |error| <= 0.04). This reverse-then-forward recipe does not
    # reliably reach k-hat < 0.7 (measured 0.44-0.89 over 8 banks), so here only its drop
    # from the untrained value is asserted; forward-KL-only training meets both targets on
    # every bank (tests/test_guide_training_targets.py).
    reward, theta = grid10.reward_model, grid10.true_weights
    exact = ExactNormalizer(grid10.mdp).log_normalizer(reward, theta).item()
    # K = 8000: a bank kept between refreshes moves the mode by ~sqrt(n / ESS) sd
    # (inference/diagnostics.py): with K = 1000 (ESS ~ 500-900) that is 0.33-0.45 sd per
    # bank, the tolerance's whole budget; this test passed at 0.24 sd and failed at 0.67 sd
    # when the proposal's draws came from other random numbers. K = 8000: ~0.12 sd.
    norm = ImportanceNormalizer(TwistedProposal(grid10.mdp), num_samples=8000,
                                khat_policy="ignore")
    norm.log_normalizer(reward, theta)
    untrained_khat = norm.diagnostics.khat
    assert untrained_khat > 0.7  # untrained: unreliable, and the diagnostic says so
    trainer = GuidePolicyTrainer(norm, method="reverse_kl", num_steps=400, num_samples=256,
                                 learning_rate=0.1, seed=0)
    elbo = trainer.train(reward, theta)
    assert elbo[-50:].mean() > elbo[:50].mean() + 10
    trainer.method = "forward_kl"
    for group in trainer.optimizer.param_groups:
        group["lr"] = 0.05
    trainer.train(reward, theta, 300)
    for _ in range(3):
        norm.refresh()
        est = norm.log_normalizer(reward, theta).item()
        assert abs(est - exact) <= 0.1
        assert norm.diagnostics.khat < untrained_khat


def test_smc_with_trained_twisted_kernel(grid10):
    # Same trained kernel used by SMC (K = 1000): within 0.1 nats of the exact log Z.
    reward, theta = grid10.reward_model, grid10.true_weights
    exact = ExactNormalizer(grid10.mdp).log_normalizer(reward, theta).item()
    proposal = TwistedProposal(grid10.mdp)
    norm = SMCNormalizer(proposal, num_particles=1000, reward=reward, theta=theta,
                         khat_policy="ignore")
    # train() ends with a refresh: a new sweep at theta with the trained kernel
    GuidePolicyTrainer(norm, num_steps=600, num_samples=256, learning_rate=0.1).train(
        reward, theta)
    assert abs(norm.reference_log_z - exact) <= 0.1


def test_forward_kl_improves_the_guide(tiny):
    norm = ImportanceNormalizer(TwistedProposal(tiny.mdp), num_samples=500,
                                khat_policy="ignore")
    trainer = GuidePolicyTrainer(norm, method="forward_kl", num_steps=150, num_samples=256,
                                 learning_rate=0.1)
    bank_before = norm.bank
    elbo = trainer.train(tiny.reward_model, tiny.true_weights)
    assert norm.bank is not bank_before  # training always leaves a fresh bank
    # the ELBO gap KL(q || P) shrinks: the last 20 steps beat the first 20 by > 1 nat
    assert elbo[-20:].mean() > elbo[:20].mean() + 1


def test_policy_soft_backup_is_the_causal_policy(tiny):
    r = tiny.true_step_rewards()
    proposal = PolicyProposal(tiny.mdp).soft_backup_(r)
    v = soft_values(tiny.mdp, r, kind="causal")
    # pi_t(a|s) = exp(Q_t - V_t) sums to one over actions exactly when V is the causal value
    pi = proposal.policy.log_probs().exp()
    torch.testing.assert_close(pi.sum(-1), torch.ones_like(v[:-1]))
    torch.testing.assert_close(proposal.policy.logits.logsumexp(-1), torch.zeros_like(v[:-1]))


def test_guide_objective_errors(tiny):
    reward, theta = tiny.reward_model, tiny.true_weights
    with pytest.raises(ValueError, match="method"):
        guide_objective(PolicyProposal(tiny.mdp), reward, theta, method="soft")
    norm = ImportanceNormalizer(PolicyProposal(tiny.mdp), num_samples=10)
    with pytest.raises(ValueError, match="method"):
        GuidePolicyTrainer(norm, method="kl")
    with pytest.raises(ValueError, match="theta"):
        GuidePolicyTrainer(norm, theta="mean")
    with pytest.raises(ValueError, match="num_steps"):
        GuidePolicyTrainer(norm, num_steps=0)
    with pytest.raises(ValueError, match="normalizer"):
        GuidePolicyTrainer(ExactNormalizer(tiny.mdp))
    with pytest.raises(ValueError, match=r"theta must have shape \(D,\) or \(M, D\)"):
        GuidePolicyTrainer(norm).train(reward, torch.zeros(2, 9, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="model= and data="):
        GuidePolicyTrainer(norm)(0, 1.0, None)


def test_svi_callback_trains_and_refreshes(tiny):
    norm = ImportanceNormalizer(TwistedProposal(tiny.mdp), num_samples=200,
                                khat_policy="ignore")
    model = DemonstrationModel(tiny.reward_model, norm)
    demos = tiny.sample_demonstrations(30, seed=1)
    trainer = GuidePolicyTrainer(norm, model=model, data=demos, every=10, num_steps=5,
                                 num_samples=64)
    bank_before = norm.bank
    post = run_svi(model, model.prepare_data(demos), num_steps=25, num_samples=10,
                   progress_bar=False, callback=trainer)
    assert trainer.log.svi_steps == [0, 10, 20]
    assert len(trainer.log.khat) == 3 and len(trainer.log.elbo) == 15
    assert norm.bank is not bank_before
    assert post.samples["weights"].shape == (1, 10, 2)


@pytest.mark.slow
def test_importance_normalizer_svi_matches_exact_normalizer_svi(grid10):
    # The claim is about the NORMALISER: the same SVI (AutoMultivariateNormal, 1000 steps
    # from the prior, same seed, 2000 draws) with the exact normaliser and with an
    # importance normaliser (twisted proposal, K = 8000 -- see below -- updated by exact
    # soft backups at the guide median every 50 SVI steps) give the same posterior: means
    # within 0.5 sd, sds within 30%. It is not a comparison with the exact posterior:
    # 1000 steps from the prior leave both fits' sds short (0.65 of the Laplace-started
    # fit's, measured); the default fit against the exact posterior is checked in
    # tests/test_importance_svi.py. (Measured: mean offsets <= 0.24 sd, sd ratios
    # 0.94-1.07. With REINFORCE updates of 20 steps every 50 SVI steps instead, the fit
    # drifted by ~20 sd.)
    demos = grid10.sample_demonstrations(100, seed=1)
    exact_model = DemonstrationModel(grid10.reward_model, ExactNormalizer(grid10.mdp))
    data = exact_model.prepare_data(demos)
    # init="prior" for the reference too (as in test_guide_training_targets): a callback
    # makes run_svi start from the prior; the comparison must be the SAME SVI, which
    # isolates the normaliser
    exact = run_svi(exact_model, data, num_steps=1000, num_samples=2000, progress_bar=False,
                    init="prior")
    # early SVI steps between updates can see k-hat > 0.7 (warned); the check is on the fit
    # K = 8000: a bank kept between refreshes moves the mode by ~sqrt(n / ESS) sd
    # (inference/diagnostics.py): with K = 1000 (ESS ~ 500-900) that is 0.33-0.45 sd per
    # bank, the tolerance's whole budget; this test passed at 0.24 sd and failed at 0.67 sd
    # when the proposal's draws came from other random numbers. K = 8000: ~0.12 sd.
    norm = ImportanceNormalizer(TwistedProposal(grid10.mdp), num_samples=8000,
                                khat_policy="ignore")
    model = DemonstrationModel(grid10.reward_model, norm)
    trainer = GuidePolicyTrainer(norm, method="soft_backup", model=model, data=data, every=50)
    approx = run_svi(model, data, num_steps=1000, num_samples=2000, progress_bar=False,
                     callback=trainer)
    a, b = exact.samples["weights"][0], approx.samples["weights"][0]
    sd = a.std(0)
    assert ((b.mean(0) - a.mean(0)).abs() / sd).max() < 0.5
    assert ((b.std(0) / sd - 1).abs()).max() < 0.3
    assert max(trainer.log.khat[1:]) < 0.7
    assert math.isfinite(approx.attrs["final_loss"])
