"""A posterior fitted on FrozenLake rollouts of a known soft-optimal demonstrator."""

import gymnasium as gym
import numpy as np
import torch

from bayes_irl import LinearReward, TabularMDP, TrajectoryBatch
from bayes_irl.episodes import rollout_episodes
from bayes_irl.inference import ExactNormalizer, fit
from bayes_irl.models import DemonstrationModel
from bayes_irl.reward_distances import posterior_reward_distances
from bayes_irl.soft_bellman import soft_policy

TRUE_WEIGHTS = torch.tensor([-2.0, 2.0, 0.5, 0.5], dtype=torch.float64)


def test_frozenlake_joint_95_region_covers_true_weights_and_ranks_holes_lowest():
    env = gym.make("FrozenLake-v1", is_slippery=True)
    desc = env.unwrapped.desc.ravel()
    hole = desc == b"H"
    rows, cols = np.divmod(np.arange(16), 4)
    features = np.stack([hole, desc == b"G", rows / 3, cols / 3], -1).astype(float)
    mdp = TabularMDP.from_gymnasium(
        env, features=features, feature_names=["hole", "goal", "row", "col"], horizon=15
    )
    reward = LinearReward(mdp.features, feature_names=list(mdp.feature_names))
    # the demonstrator: maximum-causal-entropy (soft-optimal) policy of the known reward,
    # rolled out in the Gymnasium environment itself; episodes stop at holes and the goal
    log_pi = soft_policy(mdp, reward.step_rewards(TRUE_WEIGHTS), kind="causal")
    episodes = rollout_episodes(env, log_pi.exp(), num_episodes=300, max_steps=15, seed=1)
    batch = TrajectoryBatch.from_episodes(episodes, mdp=mdp)
    assert batch.lengths.min() < 15, "some episodes end in a hole or at the goal"
    model = DemonstrationModel(reward, ExactNormalizer(mdp, kind="causal"))
    # Laplace at the exact MAP (L-BFGS, then Newton steps to a decrement < 1e-3 sd)
    posterior = fit(
        model,
        batch,
        method="laplace",
        optimizer="lbfgs",
        num_samples=4000,
        seed=0,
        progress_bar=False,
    )
    assert posterior.attrs["convergence_ok"] == 1, posterior.attrs["convergence_verdict"]
    draws = posterior.flat_samples()["weights"]
    # Criterion: the true weight vector lies in the joint 95% credible region of the
    # (Gaussian) posterior, Mahalanobis distance^2 < chi2_4(0.95) = 9.488. One seeded data
    # set; benchmarks/frozenlake_coverage.py measures the coverage over 20 data sets (see
    # benchmarks/README.md). The four marginal 95% intervals are a stricter joint test
    # (about 81% if independent): on this seed the hole weight's 95% interval
    # [-2.233, -2.004] excludes the true -2.0, so no per-weight claim is made.
    diff = TRUE_WEIGHTS - posterior.mean()
    mahalanobis2 = diff @ torch.linalg.solve(posterior.covariance(), diff)
    assert mahalanobis2 < 9.487729, mahalanobis2
    # every hole gets a lower posterior-mean reward than every other state
    state_reward = reward.step_rewards(posterior.mean())[:, 0]
    assert state_reward[hole].max() < state_reward[~hole].min()
    # the posterior of the EPIC distance to the true reward is small next to the distance
    # from the environment's own reward (1 at the goal, 0 elsewhere) to the true reward
    to_truth = posterior_reward_distances(
        mdp, reward, draws[:200], reference=reward.step_rewards(TRUE_WEIGHTS), discount=0.9
    )
    from bayes_irl.reward_distances import epic_distance

    env_vs_truth = epic_distance(
        mdp, mdp.reference_reward, reward.step_rewards(TRUE_WEIGHTS), discount=0.9
    )
    assert to_truth.shape == (200,)
    assert to_truth.quantile(0.95) < env_vs_truth
