"""Importance-normaliser SVI against the exact posterior at n = 300 demonstrations.

The calibration issue's setting: a random sparse MDP (36 states, 4 actions, 3 successors,
T = 12, 4 standardised features), theta* ~ N(0, I), 300 exact demonstrations. Seed 2 is
the seed on which the importance-normaliser posterior missed the exact mean by 1.34 sd.

What this checks is the cause found for that miss (SVI's elementwise gradient clamp), on
that seed, with Pyro's loop and a user's trainer callback (the former recipe). The
five-seed claim (within 0.2 sd) is measured in benchmarks/README.md: this recipe at 4000
steps, and the default ``fit(method="svi")`` (tests/test_importance_svi.py checks the
default against the exact-normaliser SVI).
"""

import pytest
import torch
from helpers import random_sparse_mdp

from bayes_irl.inference import ExactNormalizer, GuidePolicyTrainer, fit, run_svi
from bayes_irl.inference.averaging import IterateAveraging, chain_callbacks
from bayes_irl.inference.normalizers.importance import ImportanceNormalizer, TwistedProposal
from bayes_irl.models import DemonstrationModel
from bayes_irl.rewards import LinearReward
from bayes_irl.soft_bellman import sample_maxent_trajectories

SEED = 2
NUM_STEPS = 2000  # 1000 steps is too few: 1.07 sd off, still drifting (measured)


@pytest.mark.slow  # one 2000-step SVI with a trained twisted proposal: 437 s on the loaded
# 2-core machine, over the slow suite's usual budget; it is the claim, kept whole
def test_fresh_bank_unclamped_svi_matches_the_exact_posterior_mean():
    # Recipe: a fresh bank (K = 4000) at every SVI step, the twisted proposal retrained by
    # forward KL every 25 steps (50 Adam steps, 256 trajectories; no exact soft values),
    # iterate averaging over the second half, and NO elementwise gradient clamp. The
    # clamp (SVI's default, 10) is what biased the mean: the per-step gradient is
    # n * (phi_bar - E_hat[phi]) with n = 300, its noise is skewed (self-normalised
    # weights with k-hat 0.4-0.7; skewness up to 9 measured over 400 banks), so nearly
    # every component is clamped and the clamped mean is not the mean: 1.34 sd off on this
    # seed with the clamp, 0.04 sd without (2000 steps; benchmarks/README.md has the 5-seed
    # table). Tolerance: the 0.2 exact-posterior sd on every coordinate.
    mdp, theta = random_sparse_mdp(SEED)
    reward = LinearReward(mdp.features)
    demos = sample_maxent_trajectories(mdp, reward.step_rewards(torch.as_tensor(theta)), 300,
                                       generator=torch.Generator().manual_seed(SEED))
    # exact reference: exact normaliser, importance sampling from the Laplace fit
    # (k-hat 0.13 measured on this seed, 20000 draws)
    exact_model = DemonstrationModel(reward, ExactNormalizer(mdp))
    laplace = fit(exact_model, demos, method="laplace", optimizer="lbfgs", num_samples=10,
                  seed=SEED)
    exact = fit(exact_model, demos, method="importance", proposal=laplace.extra["guide"],
                num_proposals=20000, num_samples=20000, seed=SEED)
    assert exact.attrs["khat"] < 0.7
    norm = ImportanceNormalizer(TwistedProposal(mdp), num_samples=4000, khat_policy="ignore",
                                seed=SEED + 1, fresh_bank=True)
    model = DemonstrationModel(reward, norm)
    data = model.prepare_data(demos)
    trainer = GuidePolicyTrainer(norm, method="forward_kl", model=model, data=data, every=25,
                                 num_steps=50, num_samples=256, learning_rate=0.1, seed=SEED)
    post = run_svi(model, data, num_steps=NUM_STEPS, num_samples=4000, seed=SEED,
                   progress_bar=False, clip_norm=None,
                   callback=chain_callbacks(trainer, IterateAveraging(NUM_STEPS)))
    sd = exact.std()
    offset = ((post.mean() - exact.mean()).abs() / sd).max().item()
    assert offset < 0.2, offset


def test_clip_norm_is_checked():
    from bayes_irl import GridWorld

    world = GridWorld.create(size=3, horizon=4, num_features=2, seed=0)
    model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
    data = model.prepare_data(world.sample_demonstrations(10, seed=0))
    with pytest.raises(ValueError, match="clip_norm"):
        run_svi(model, data, num_steps=2, num_samples=2, progress_bar=False, clip_norm=0.0)
    post = run_svi(model, data, num_steps=2, num_samples=2, progress_bar=False,
                   clip_norm=None, init="prior")
    assert torch.isfinite(post.samples["weights"]).all()
