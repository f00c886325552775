"""Does a version of the library give the same posteriors as another? Default methods, seeded.

    python benchmarks/same_answers.py --out after.json          # run every default method
    python benchmarks/same_answers.py --compare before.json after.json

Runs ``fit(model, data, method=m, seed=0)`` with each method's defaults (nuts, svi,
laplace, hmc, importance) on two problems,
the 5x5 gridworld (horizon 8, 200 demonstrations) and a random sparse MDP (36 states,
fan-out 3, horizon 12, 300 demonstrations), both global maxent with an exact normaliser,
and records every parameter's posterior mean and sd. NUTS and HMC run with
``target_ess=4000`` instead of their 400, so that their Monte-Carlo error (about 0.016 sd
per mean, 0.022 sd between two independent runs) stays below the 0.05 sd tolerance when
two versions' chains take different random paths (another kernel, another floating-point
order). The comparison
prints, per problem and method, the largest |mean difference| in sds and the largest
|sd ratio - 1|; a row passes at 0.05 sd and 5%.

Run it from a checkout of each version (``git worktree add /tmp/before <commit>``), with
that checkout's own code: ``cd /tmp/before && PYTHONPATH=. python
/path/to/benchmarks/same_answers.py --out before.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

METHODS = {
    "nuts": {"target_ess": 4000.0},
    "svi": {},
    "laplace": {},
    "hmc": {"target_ess": 4000.0},
    "importance": {},
}


def _problems():
    from bayes_irl import GridWorld
    from bayes_irl.inference import ExactNormalizer
    from bayes_irl.models import DemonstrationModel
    from bayes_irl.rewards import LinearReward
    from bayes_irl.soft_bellman import sample_maxent_trajectories

    sys.path.insert(0, str(Path.cwd() / "tests"))
    from helpers import random_sparse_mdp

    world = GridWorld.create(size=5, horizon=8, seed=0)
    yield "gridworld_5x5", DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp)), \
        world.sample_demonstrations(200, seed=1)
    mdp, theta = random_sparse_mdp(0)
    reward = LinearReward(mdp.features)
    demos = sample_maxent_trajectories(mdp, reward.step_rewards(torch.as_tensor(theta)), 300,
                                       generator=torch.Generator().manual_seed(0))
    yield "random_mdp", DemonstrationModel(reward, ExactNormalizer(mdp)), demos


def run(out: Path, methods: list[str]) -> None:
    from bayes_irl.inference import fit

    results = {}
    for name, model, demos in _problems():
        for method in methods:
            options = METHODS[method]
            start = time.perf_counter()
            post = fit(model, demos, method=method, seed=0, progress_bar=False, **options)
            draws = next(iter(post.flat_samples().values())).double()
            results[f"{name}/{method}"] = {
                "mean": draws.mean(0).tolist(), "sd": draws.std(0).tolist(),
                "seconds": time.perf_counter() - start,
                "converged": int(post.attrs.get("convergence_ok", -1)),
            }
            print(f"{name:14s} {method:8s} {results[f'{name}/{method}']['seconds']:6.1f} s",
                  flush=True)
    out.write_text(json.dumps(results, indent=1))


def compare(before: Path, after: Path) -> int:
    old, new = json.loads(before.read_text()), json.loads(after.read_text())
    print(f"{'problem/method':24s} {'max |dmean|/sd':>14s} {'max |sd ratio-1|':>16s} "
          f"{'s before':>8s} {'s after':>8s}  verdict")
    failures = 0
    for key in old:
        if key not in new:
            print(f"{key:24s} missing after")
            failures += 1
            continue
        mean0, sd0 = torch.tensor(old[key]["mean"]), torch.tensor(old[key]["sd"])
        mean1, sd1 = torch.tensor(new[key]["mean"]), torch.tensor(new[key]["sd"])
        # a degenerate posterior (one effective draw: sd 0) compares exactly
        scale = torch.where(sd0 > 0, sd0, torch.ones_like(sd0))
        shift = float(((mean1 - mean0) / scale).abs().max())
        ratio = float(torch.where(sd0 > 0, sd1 / scale - 1, sd1).abs().max())
        ok = shift <= 0.05 and ratio <= 0.05
        failures += not ok
        print(f"{key:24s} {shift:14.3f} {ratio:16.3f} {old[key]['seconds']:8.1f} "
              f"{new[key]['seconds']:8.1f}  {'same' if ok else 'DIFFERENT'}")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compare", type=Path, nargs=2, metavar=("BEFORE", "AFTER"))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.compare:
        return compare(*args.compare)
    if args.out is None:
        parser.error("give --out FILE or --compare BEFORE AFTER")
    run(args.out, args.methods)
    return 0


if __name__ == "__main__":
    sys.exit(main())
