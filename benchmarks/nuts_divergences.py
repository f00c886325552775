"""Does the default NUTS pass its own checks on families of random gridworlds?

For random gridworlds (``GridWorld.create(size, num_features=4, seed=world)``, 200
demonstrations) and several chain seeds, fit with ``fit(model, demos, method="nuts")``
under two settings and print one row per setting: fits that pass the library's
convergence checks, divergent transitions (total, worst fit), and the wall time.

* ``default``: the user's defaults;
* ``step-size only``: the former fast-path settings (200 warm-up steps adapting only the
  step size on the Laplace mass matrix, target acceptance 0.95, tree depth 6).

Usage::

    python benchmarks/nuts_divergences.py --sizes 3 5 --worlds 1 2 3 4 5 6 --seeds 0 1
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from bayes_irl import GridWorld
from bayes_irl.inference import ExactNormalizer, fit
from bayes_irl.models import DemonstrationModel

SETTINGS = {
    "default": {},
    "step-size only": {"warmup_steps": 200, "adapt_mass_matrix": False,
                       "target_accept_prob": 0.95, "max_tree_depth": 6},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--demos", type=int, default=200)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--verbose", action="store_true", help="one line per failing fit")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| setting | fits | converged | divergent transitions (total / worst fit) "
          "| fits with divergences | wall time per fit (median, max) |")
    print("|---|---|---|---|---|---|")
    for name in args.settings:
        options = SETTINGS[name]
        ok, divergences, times = [], [], []
        for size in args.sizes:
            horizon = 4 if size == 3 else 10
            for world_seed in args.worlds:
                world = GridWorld.create(size=size, num_features=4, horizon=horizon,
                                         seed=world_seed)
                demos = world.sample_demonstrations(args.demos, seed=1)
                model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
                for seed in args.seeds:
                    start = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # the verdict is read from attrs
                        post = fit(model, demos, method="nuts", seed=seed,
                                   progress_bar=False, **options)
                    times.append(time.perf_counter() - start)
                    ok.append(post.attrs["convergence_ok"])
                    divergences.append(int(post.sample_stats["diverging"].sum()))
                    if args.verbose and not ok[-1]:
                        print(f"  size {size} world {world_seed} seed {seed}: "
                              f"{post.attrs['convergence_verdict']}", flush=True)
        divergences = np.asarray(divergences)
        print(f"| {name} | {len(ok)} | {sum(ok)} | {divergences.sum()} / {divergences.max()} "
              f"| {(divergences > 0).sum()} | {np.median(times):.1f} s, {max(times):.1f} s |",
              flush=True)


if __name__ == "__main__":
    main()
