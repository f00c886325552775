"""A model a user writes, under every default method: time and agreement.

    python benchmarks/user_model.py [--methods nuts svi laplace] [--out FILE.json]

The reward (also ``tests/test_user_models.py``'s): r(s, a) = u + tanh(u) / 2 with
u = theta . phi(s, a), nonlinear in theta, under a Student-t(3) prior, on the 5x5
gridworld (horizon 8, 4 features) with 150 demonstrations. It has no sufficient
statistics, so every method runs on the potential traced from the Pyro program. Prints,
per method, the wall time of ``fit`` with its defaults, the convergence verdict, and every
weight's posterior mean and sd.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pyro.distributions as dist
import torch

from bayes_irl import GridWorld
from bayes_irl.inference import ExactNormalizer
from bayes_irl.models import DemonstrationModel
from bayes_irl.rewards.tabular import TabularRewardModel


class TanhLinearReward(TabularRewardModel):
    """r(s, a) = u + tanh(u) / 2 with u = theta . phi(s, a): nonlinear in theta."""

    site_name = "weights"
    dim_name = "feature"

    def __init__(self, features: torch.Tensor, prior) -> None:
        super().__init__(prior=prior, num_params=features.shape[-1])
        self.features = features

    def step_rewards(self, theta: torch.Tensor) -> torch.Tensor:
        """``r[..., s, a]`` of shape ``theta.shape[:-1] + (S, A)``."""
        linear = (theta[..., None, None, :] * self.features).sum(-1)
        return linear + 0.5 * torch.tanh(linear)


def user_model(size: int, num_features: int, horizon: int, seed: int = 0):
    """``(world, model)``: a gridworld and this reward's demonstration model.

    The prior is a Student-t(3) per weight. Only public API: it runs on any version of the
    library.
    """
    world = GridWorld.create(size=size, horizon=horizon, num_features=num_features, seed=seed)
    one = torch.tensor(1.0, dtype=torch.float64)
    reward = TanhLinearReward(world.reward_model.features, dist.StudentT(3 * one, 0 * one, one))
    return world, DemonstrationModel(reward, ExactNormalizer(world.mdp))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["laplace", "svi", "nuts"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from bayes_irl.inference import fit

    world, model = user_model(5, 4, 8)
    demos = world.sample_demonstrations(150)
    results = {}
    print(f"{'method':8s} {'seconds':>8s} {'potential':>10s} {'converged':>9s}  means / sds")
    for method in args.methods:
        start = time.perf_counter()
        post = fit(model, demos, method=method, progress_bar=False)
        seconds = time.perf_counter() - start
        draws = post.flat_samples()["weights"].double()
        results[method] = {"seconds": seconds, "mean": draws.mean(0).tolist(),
                           "sd": draws.std(0).tolist(),
                           "converged": int(post.attrs.get("convergence_ok", -1)),
                           "potential": post.attrs.get("potential", "model")}
        print(f"{method:8s} {seconds:8.1f} {results[method]['potential']:>10s} "
              f"{results[method]['converged']:9d}  "
              f"{[round(v, 3) for v in results[method]['mean']]} / "
              f"{[round(v, 3) for v in results[method]['sd']]}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
