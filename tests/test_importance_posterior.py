"""Importance-normaliser SVI against the exact posterior at n = 300 demonstrations.

The calibration benchmarks' setting: a random sparse MDP (36 states, 4 actions, 3 successors,
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
from bayes_irl.inference.iterate_averaging import IterateAveraging, chain_callbacks
from bayes_irl.inference.normalizers.importance import ImportanceNormalizer, TwistedProposal
from bayes_irl.models import DemonstrationModel
from bayes_irl.rewards import LinearReward
from bayes_irl.soft_bellman import sample_maxent_trajectories

SEED = 2
NUM_STEPS = 4000  # 2000 steps is too few: seed 3 ended 0.45 sd off, and this seed 0.34 sd
# once the proposals drew from other random numbers (measured; benchmarks/README.md)


def _problem_and_exact_posterior(seed):
    """The random MDP, its reward, 300 exact demonstrations and the exact posterior."""
    mdp, theta = random_sparse_mdp(seed)
    reward = LinearReward(mdp.features)
    demos = sample_maxent_trajectories(mdp, reward.step_rewards(torch.as_tensor(theta)), 300,
                                       generator=torch.Generator().manual_seed(seed))
    # exact reference: exact normaliser, importance sampling from the Laplace fit
    # (k-hat 0.13-0.35 measured on seeds 0-4, 20000 draws)
    exact_model = DemonstrationModel(reward, ExactNormalizer(mdp))
    laplace = fit(exact_model, demos, method="laplace", optimizer="lbfgs", num_samples=10,
                  seed=seed)
    exact = fit(exact_model, demos, method="importance", proposal=laplace.extra["guide"],
                num_proposals=20000, num_samples=20000, seed=seed)
    assert exact.attrs["khat"] < 0.7
    return mdp, reward, demos, exact


# The normaliser's k-hat guard (the largest PSIS k-hat over 20 posterior draws) may fire
# here: on seed 2 it reads 0.72 with a Pareto-smoothed ESS of 2896 of 4000 while the
# posterior is within 0.1 sd of the exact one. Only that check may fail; every other check
# of the fit must pass (asserted below).
@pytest.mark.filterwarnings("ignore:NOT CONVERGED:UserWarning")
@pytest.mark.slow  # ~60 s per seed on the loaded 2-core machine
@pytest.mark.parametrize("seed", [1, 2])
def test_default_importance_svi_matches_the_exact_posterior(seed):
    # The user's path: fit(method="svi") with its defaults on a model whose log Z is an
    # ImportanceNormalizer over an untrained TwistedProposal (K = 4000): the NumPy loop of
    # inference/backends/importance_svi.py trains the proposal (SGD) and draws a fresh bank
    # per step. Seed 1 was 0.37 sd off while the proposal's start was trained by Adam (its
    # bank then missed mass that P has), seed 2 ended 20000 sd off before the start's
    # steps were limited by the bank's ESS. Tolerance: 0.2 exact-posterior sd
    # on every mean, and 10% on every sd; measured 0.054 and 0.091 sd, sd ratios 0.97-1.00
    # (benchmarks/README.md has all five seeds).
    mdp, reward, demos, exact = _problem_and_exact_posterior(seed)
    norm = ImportanceNormalizer(TwistedProposal(mdp), num_samples=4000, seed=seed + 1)
    post = fit(DemonstrationModel(reward, norm), demos, method="svi", seed=seed,
               progress_bar=False)
    assert post.attrs["potential"] == "importance_fresh_bank"
    failed = {c.name for c in post.extra["convergence"].failures}
    assert failed <= {"normalizer_khat"}, post.attrs["convergence_verdict"]
    sd = exact.std()
    offset = ((post.mean() - exact.mean()).abs() / sd).max().item()
    ratio = post.std() / sd
    assert offset < 0.2, offset
    assert bool(((ratio - 1).abs() < 0.1).all()), ratio


@pytest.mark.slow  # one 4000-step Pyro SVI with a trained twisted proposal: minutes on the
# loaded 2-core machine, over the slow suite's usual budget; the former recipe, kept whole
def test_fresh_bank_unclamped_svi_matches_the_exact_posterior_mean():
    # Recipe: a fresh bank (K = 4000) at every SVI step, the twisted proposal retrained by
    # forward KL every 25 steps (50 SGD steps, 256 trajectories; no exact soft values),
    # iterate averaging over the second half, and NO elementwise gradient clamp. The
    # clamp (SVI's default, 10) is what biased the mean: the per-step gradient is
    # n * (phi_bar - E_hat[phi]) with n = 300, its noise is skewed (self-normalised
    # weights with k-hat 0.4-0.7; skewness up to 9 measured over 400 banks), so nearly
    # every component is clamped and the clamped mean is not the mean: 1.34 sd off on this
    # seed with the clamp, 0.04 sd without (2000 steps; benchmarks/README.md has the 5-seed
    # table, which needs 4000 steps). Tolerance: 0.2 exact-posterior sd on
    # every coordinate.
    mdp, reward, demos, exact = _problem_and_exact_posterior(SEED)
    norm = ImportanceNormalizer(TwistedProposal(mdp), num_samples=4000, khat_policy="ignore",
                                seed=SEED + 1, fresh_bank=True)
    model = DemonstrationModel(reward, norm)
    data = model.prepare_data(demos)
    # the proposal's optimiser is SGD: with Adam (lr 0.1) this recipe ended 0.52 sd off
    # at 4000 steps once the proposals drew other random numbers (Adam drives rarely drawn
    # actions' log-probabilities down for good: see GuidePolicyTrainer's optimizer)
    trainer = GuidePolicyTrainer(norm, method="forward_kl", model=model, data=data, every=25,
                                 num_steps=50, num_samples=256, seed=SEED,
                                 optimizer=lambda params: torch.optim.SGD(params, lr=1.0))
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
