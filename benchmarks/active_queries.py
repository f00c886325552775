"""Active (expected-information-gain) vs random preference queries on a gridworld.

For each seed: a 4x4 gridworld with K = 4 random features and secret weights theta*
(GridWorld seed = seed), an item pool of 30 trajectories (maxent samples under 15 random
rewards), and a Bradley-Terry judge (beta = 1) answering with theta*. Both strategies
start from the Normal(0, 1) prior and refit a Laplace approximation after every answer.
Printed: mean over seeds of the cosine between the posterior mean and theta*, and of the
error ||theta_hat - theta*||, at equal query counts.

Run: ``.venv/bin/python benchmarks/active_queries.py [--seeds 5] [--queries 30]``
(one torch thread: faster than two on the 2-core development machine).
"""

from __future__ import annotations

import argparse
import time

import torch

from bayes_irl import GridWorld
from bayes_irl.inference.active import run_active_learning
from bayes_irl.models.preferences import PreferenceModel
from bayes_irl.soft_bellman import sample_maxent_trajectories


def make_problem(seed: int, *, size: int = 4, horizon: int = 6, num_rewards: int = 15,
                 per_reward: int = 2) -> tuple[PreferenceModel, torch.Tensor]:
    """Return the preference model on a seeded item pool and the true weights."""
    world = GridWorld.create(size=size, horizon=horizon, seed=seed)
    gen = torch.Generator().manual_seed(1000 + seed)
    items = []
    for _ in range(num_rewards):
        theta = torch.randn(world.mdp.num_features, generator=gen, dtype=torch.float64)
        rewards = world.reward_model.step_rewards(theta)
        items.append(sample_maxent_trajectories(world.mdp, rewards, per_reward, generator=gen))
    return PreferenceModel(world.reward_model, torch.cat(items)), world.true_weights


def compare(seeds: int, queries: int, update: str = "laplace", num_draws: int = 500) -> dict:
    """Run both strategies for ``seeds`` seeds; return strategy -> list of results."""
    results = {"eig": [], "random": []}
    for seed in range(seeds):
        model, truth = make_problem(seed)
        for strategy in results:
            results[strategy].append(
                run_active_learning(model, truth, num_queries=queries, strategy=strategy,
                                    update=update, num_draws=num_draws, seed=seed)
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--update", default="laplace", choices=["laplace", "importance"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    results = compare(args.seeds, args.queries, args.update)
    elapsed = time.perf_counter() - start
    print(f"update={args.update}, {args.seeds} seeds, mean over seeds ({elapsed:.1f} s)")
    print("queries | cosine active | cosine random | error active | error random")
    for q in sorted({0, 5, 10, 15, 20, 25, 30, args.queries}):
        if q > args.queries:
            continue
        row = []
        for metric in ("cosine", "error"):
            for strategy in ("eig", "random"):
                row.append(torch.stack([getattr(r, metric)[q] for r in results[strategy]]).mean())
        print(f"{q:7d} | {row[0]:13.3f} | {row[1]:13.3f} | {row[2]:12.3f} | {row[3]:12.3f}")


if __name__ == "__main__":
    main()
