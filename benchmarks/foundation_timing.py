"""Time per SVI step and per NUTS draw on N×N gridworlds (exact normaliser).

Usage: .venv/bin/python benchmarks/foundation_timing.py [--sizes 5 10 20] [--json out.json]

One torch thread (faster than two for these kernels on a 2-core machine). Prints a table:
per-step SVI time (AutoMultivariateNormal, 200 demos, H = 2N) and NUTS wall time per
iteration (1 chain, 100 warm-up + 100 draws, max_tree_depth 6), with the load average, since
the machine may be shared.
"""

import argparse
import json
import os
import time

import torch

from bayes_irl import GridWorld
from bayes_irl.inference import ExactNormalizer, fit
from bayes_irl.models import DemonstrationModel


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 20])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    print(f"{'N':>4} {'S':>5} {'H':>4} {'SVI ms/step':>12} {'NUTS ms/draw':>13} "
          f"{'load':>5}")
    for size in args.sizes:
        world = GridWorld.create(size=size, seed=0)
        demos = world.sample_demonstrations(200, seed=0)
        model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
        steps = 300
        svi = fit(model, demos, method="svi", num_steps=steps, num_samples=10,
                  progress_bar=False)
        svi_ms = svi.attrs["wall_time_s"] / steps * 1e3
        start = time.perf_counter()
        nuts = fit(model, demos, method="nuts", num_samples=100, warmup_steps=100, num_chains=1,
                   progress_bar=False)
        nuts_ms = (time.perf_counter() - start) / 200 * 1e3
        row = {"N": size, "S": size * size, "H": world.mdp.horizon, "svi_ms_per_step": svi_ms,
               "nuts_ms_per_iteration": nuts_ms, "step_size": float(nuts.sample_stats[
                   "step_size"][0, 0]), "load_avg_1min": os.getloadavg()[0]}
        rows.append(row)
        print(f"{size:>4} {size * size:>5} {world.mdp.horizon:>4} {svi_ms:>12.2f} "
              f"{nuts_ms:>13.1f} {row['load_avg_1min']:>5.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
