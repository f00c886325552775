"""Coverage of the FrozenLake posterior over many demonstration data sets.

For each seed: 300 episodes of the soft-optimal (maximum causal entropy) demonstrator of a
known reward on FrozenLake-v1 (slippery, horizon 15), rolled out in Gymnasium; Laplace
posterior at the exact MAP (L-BFGS) under the causal model. Reports how often each true
weight lies in its central 95% interval, how often the whole vector lies in the joint 95%
region (Mahalanobis distance^2 < chi2_4(0.95) = 9.488), and how often all holes get the
lowest posterior-mean reward.

    nice .venv/bin/python benchmarks/frozenlake_coverage.py --seeds 20
"""

import argparse
import time

import gymnasium as gym
import numpy as np
import torch

from bayes_irl import LinearReward, TabularMDP, TrajectoryBatch
from bayes_irl.episodes import rollout_episodes
from bayes_irl.inference import ExactNormalizer, fit
from bayes_irl.models import DemonstrationModel
from bayes_irl.soft_bellman import soft_policy

TRUE_WEIGHTS = torch.tensor([-2.0, 2.0, 0.5, 0.5], dtype=torch.float64)
CHI2_4_95 = 9.487729036781154


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--episodes", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    env = gym.make("FrozenLake-v1", is_slippery=True)
    desc = env.unwrapped.desc.ravel()
    hole = desc == b"H"
    rows, cols = np.divmod(np.arange(16), 4)
    features = np.stack([hole, desc == b"G", rows / 3, cols / 3], -1).astype(float)
    mdp = TabularMDP.from_gymnasium(
        env, features=features, feature_names=["hole", "goal", "row", "col"], horizon=15
    )
    reward = LinearReward(mdp.features, feature_names=list(mdp.feature_names))
    log_pi = soft_policy(mdp, reward.step_rewards(TRUE_WEIGHTS), kind="causal")
    model = DemonstrationModel(reward, ExactNormalizer(mdp, kind="causal"))
    marginal, joint, ranked = [], [], []
    start = time.perf_counter()
    for seed in range(args.seeds):
        episodes = rollout_episodes(
            env, log_pi.exp(), num_episodes=args.episodes, max_steps=15, seed=1000 + seed
        )
        batch = TrajectoryBatch.from_episodes(episodes, mdp=mdp)
        post = fit(
            model,
            batch,
            method="laplace",
            optimizer="lbfgs",
            num_samples=4000,
            seed=seed,
            progress_bar=False,
        )
        draws = post.flat_samples()["weights"]
        lo, hi = draws.quantile(0.025, 0), draws.quantile(0.975, 0)
        marginal.append(((lo < TRUE_WEIGHTS) & (TRUE_WEIGHTS < hi)).numpy())
        diff = TRUE_WEIGHTS - post.mean()
        joint.append(float(diff @ torch.linalg.solve(post.covariance(), diff)) < CHI2_4_95)
        r = reward.step_rewards(post.mean())[:, 0]
        ranked.append(bool(r[hole].max() < r[~hole].min()))
        print(
            f"seed {seed}: marginal {marginal[-1].astype(int)} joint {joint[-1]} "
            f"holes lowest {ranked[-1]}",
            flush=True,
        )
    marginal = np.array(marginal)
    print(
        f"\n{args.seeds} data sets x {args.episodes} episodes, {time.perf_counter() - start:.0f} s"
    )
    for k, name in enumerate(mdp.feature_names):
        print(f"  95% marginal coverage {name:>5}: {marginal[:, k].mean():.2f}")
    print(f"  95% joint-region coverage: {np.mean(joint):.2f}")
    print(f"  holes ranked lowest: {np.mean(ranked):.2f}")


if __name__ == "__main__":
    main()
