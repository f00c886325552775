"""The accuracy targets with a LEARNED guide policy (stochastic objectives only, no soft backup).

Setting: ``GridWorld.create(size=10, slip=0.1, horizon=20, num_features=4, seed=0)`` at the
true reward, K = 1000 trajectories per bank. Target: |log Z_hat - log Z| <= 0.1 nats and
PSIS k-hat < 0.7 on each of 5 fresh banks, with a twisted proposal trained only by
sampled forward-KL steps (its own Adam optimiser) from the uniform guide; no exact soft
values are used anywhere in the training. The exact recursion gives the reference log Z.
"""


import math

import pytest
import torch

from bayes_irl import GridWorld
from bayes_irl.inference import ExactNormalizer, run_svi
from bayes_irl.inference.guide_policy_training import GuidePolicyTrainer
from bayes_irl.inference.normalizers.importance import ImportanceNormalizer, TwistedProposal
from bayes_irl.models import DemonstrationModel

SVI_K = 8000  # bank size for the SVI posterior test (see its comment)


@pytest.fixture(scope="module")
def grid10():
    return GridWorld.create(size=10, slip=0.1, horizon=20, num_features=4, seed=0)


def test_forward_kl_twisted_guide_meets_log_z_and_khat_targets(grid10):
    # Recipe: forward KL (self-normalised weights, mass covering) from the uniform
    # twisted proposal, 400 Adam steps at lr 0.1, 256 fresh trajectories per step (~6 s).
    # Measured with this recipe (training seeds 0-3, 5 fresh banks each, 20 banks):
    # |error| <= 0.041 nats, k-hat 0.15-0.55 (ESS 700-900 of 1000). Tolerances are the
    # targets: 0.1 nats and k-hat 0.7 (Vehtari et al.'s reliability threshold). The
    # untrained (uniform) proposal is far off: error -28 to -34 nats, k-hat ~8, ESS 1-2.
    # For comparison (measured, not asserted): the plain PolicyProposal cannot represent
    # the transition-tilted global maxent distribution with slip 0.1. Trained by the same
    # recipe it gave errors -3.8..+1.0 nats, k-hat 4.0-5.0, ESS 2-7 over 5 banks; even its
    # best member (the exact maximum causal entropy policy) gave -1.1..-1.4, k-hat 3.5-4.2.
    reward, theta = grid10.reward_model, grid10.true_weights
    exact = ExactNormalizer(grid10.mdp).log_normalizer(reward, theta).item()
    norm = ImportanceNormalizer(
        TwistedProposal(grid10.mdp), num_samples=1000, khat_policy="ignore", seed=100
    )
    untrained = norm.log_normalizer(reward, theta).item()
    assert norm.diagnostics.khat > 0.7 and untrained - exact < -10
    trainer = GuidePolicyTrainer(
        norm, method="forward_kl", num_steps=400, num_samples=256, learning_rate=0.1, seed=0
    )
    trainer.train(reward, theta)
    for _ in range(5):
        norm.refresh()
        estimate = norm.log_normalizer(reward, theta).item()
        assert abs(estimate - exact) <= 0.1
        assert norm.diagnostics.khat < 0.7


@pytest.mark.slow  # two 1000-step SVI fits on the 10x10 grid, ~40 s CPU (more when loaded)
def test_svi_posterior_with_guide_learned_during_svi(grid10):
    # Same SVI (AutoMultivariateNormal, 1000 steps, same Pyro seed, 2000 draws) with the
    # exact normaliser and with an importance normaliser (twisted proposal, K = SVI_K)
    # whose guide policy is learned DURING SVI: GuidePolicyTrainer is the callback, every
    # 25 SVI steps it takes 50 forward-KL SGD steps (256 trajectories, lr 1) at the
    # Pyro guide's median reward, then draws a fresh bank. No exact soft values anywhere.
    # Targets: means within 0.5 exact sd, sds within 30%.
    # Measured with 50 Adam steps per update, max |mean offset| (sd ratios): K = 1000:
    # 1.16 sd (0.98-1.03); K = 4000: 0.47 sd (0.95-1.06), 0.50 with updates every 50;
    # K = 8000: 0.46 sd (0.92-1.08).
    # The margin is thin and NOT only the importance normaliser's doing: exact-normaliser
    # SVI runs with seeds 1-3 differ from seed 0 by up to 0.59 sd in means and 20% in
    # sds, so this criterion sits at the level of SVI's own optimisation noise.
    demos = grid10.sample_demonstrations(100, seed=1)
    exact_model = DemonstrationModel(grid10.reward_model, ExactNormalizer(grid10.mdp))
    data = exact_model.prepare_data(demos)
    # init="prior" for the reference too: a callback makes run_svi start from the prior,
    # and the default Laplace start (lr/5) is a different optimiser path whose endpoint
    # differed from this one by 0.59 sd in CI -- the comparison must be the SAME SVI
    exact = run_svi(exact_model, data, num_steps=1000, num_samples=2000, progress_bar=False,
                    init="prior")
    norm = ImportanceNormalizer(
        TwistedProposal(grid10.mdp), num_samples=SVI_K, khat_policy="ignore", seed=1
    )
    model = DemonstrationModel(grid10.reward_model, norm)
    # the proposal's optimiser is SGD: Adam's normalised steps drive the log-probability of
    # rarely drawn actions down for good, and the bank then misses mass that P has (found
    # with the importance-normaliser SVI; inference/backends/importance_svi.py). With Adam
    # this test passed at 0.47 sd on one random stream and failed at 1.08 sd on another.
    # With SGD and K = 4000 the means and sds passed but one of the last 10 banks had
    # k-hat 0.76 (0.84 with 100 SGD steps per update); K = 8000 (measured): 0.12 sd,
    # sd ratios 0.97-1.05, k-hat of the last 10 banks <= 0.69.
    trainer = GuidePolicyTrainer(
        norm, method="forward_kl", model=model, data=data, every=25, num_steps=50,
        num_samples=256, seed=0, optimizer=lambda params: torch.optim.SGD(params, lr=1.0),
    )
    approx = run_svi(model, data, num_steps=1000, num_samples=2000, progress_bar=False,
                     callback=trainer)
    a, b = exact.samples["weights"][0], approx.samples["weights"][0]
    sd = a.std(0)
    assert ((b.mean(0) - a.mean(0)).abs() / sd).max() < 0.5
    assert ((b.std(0) / sd - 1).abs()).max() < 0.3
    # the learned guide is reliable at the end of SVI (k-hat of the last banks)
    assert max(trainer.log.khat[-10:]) < 0.7
    assert math.isfinite(approx.attrs["final_loss"])
