"""Time per SVI step: exact vs importance (twisted proposal) vs SMC normalisers.

Usage: .venv/bin/python benchmarks/guide_policy_timing.py [--steps 30] [--sizes 10 20 30]
One torch thread (faster than two on the shared 2-core machine). Gridworld N x N, slip
0.1, horizon 2N, 4 features, 50 demonstrations, AutoMultivariateNormal, no callback (the
bank is fixed: this is the cost of one SVI step, guide training excluded).
"""

import argparse
import time

import torch

from bayes_irl import GridWorld
from bayes_irl.inference import ExactNormalizer, run_svi
from bayes_irl.inference.normalizers.importance import ImportanceNormalizer, TwistedProposal
from bayes_irl.inference.normalizers.smc import SMCNormalizer
from bayes_irl.models import DemonstrationModel


def per_step(model, data, steps):
    start = time.perf_counter()
    run_svi(model, data, num_steps=steps, num_samples=2, progress_bar=False)
    return (time.perf_counter() - start) / steps * 1e3


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 30])
    parser.add_argument("--ks", type=int, nargs="+", default=[64, 256, 1024])
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'N':>3} {'normaliser':>14} {'K':>5} {'ms/step':>8}")
    for size in args.sizes:
        world = GridWorld.create(size=size, slip=0.1, num_features=4, seed=0)
        demos = world.sample_demonstrations(50, seed=1)
        r = world.true_step_rewards()
        model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
        data = model.prepare_data(demos)
        print(f"{size:>3} {'exact':>14} {'-':>5} {per_step(model, data, args.steps):8.2f}")
        for k in args.ks:
            proposal = TwistedProposal(world.mdp).soft_backup_(r)
            norm = ImportanceNormalizer(proposal, num_samples=k, khat_policy="ignore")
            t = per_step(DemonstrationModel(world.reward_model, norm), data, args.steps)
            print(f"{size:>3} {'importance':>14} {k:>5} {t:8.2f}")
            smc = SMCNormalizer(proposal, num_particles=k, reward=world.reward_model,
                                theta=world.true_weights, khat_policy="ignore")
            t = per_step(DemonstrationModel(world.reward_model, smc), data, args.steps)
            print(f"{size:>3} {'smc':>14} {k:>5} {t:8.2f}")


if __name__ == "__main__":
    main()
