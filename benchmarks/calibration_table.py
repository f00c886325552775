"""The calibration table: method x problem -> coverage at 50/90%, uniformity p, s/simulation.

Reads every ``benchmarks/calibration/<method>_<problem>/`` written by ``bayes-irl
calibrate`` (its ``calibration.nc``, or, for a run still in progress, the simulations saved
so far) and prints a markdown table. Coverage is averaged over the reward weights; the
p-value is the smallest over all quantities (compare it with 0.05 / Q, Bonferroni).

    nice .venv/bin/python benchmarks/calibration_table.py
"""

import json
from pathlib import Path

import arviz as az
import numpy as np

from bayes_irl.inference.calibration import CalibrationResult, _load

ROOT = Path(__file__).parent / "calibration"


def load(folder: Path) -> CalibrationResult | None:
    if (folder / "calibration.nc").exists():
        return CalibrationResult.from_inference_data(az.from_netcdf(folder / "calibration.nc"))
    runs = sorted((folder / "simulations").glob("simulation_*.npz"))
    done = [_load(folder / "simulations", int(p.stem.split("_")[1])) for p in runs]
    if len(done) < 2:
        return None
    config = json.loads((folder / "simulations" / "run.json").read_text())
    return CalibrationResult(
        names=done[0]["names"], rank=np.stack([d["rank"] for d in done]),
        pit=np.stack([d["pit"] for d in done]), truth=np.stack([d["truth"] for d in done]),
        seconds=np.array([d["seconds"] for d in done]),
        num_rank_draws=config["num_rank_draws"], attrs=config)


def main():
    print("| method | problem | N | cov50 (weights) | cov90 (weights) | min p (Q) | "
          "flagged | s/sim |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for folder in sorted(ROOT.iterdir()):
        result = load(folder)
        if result is None:
            continue
        method, problem = folder.name.split("_", 1)
        cov = result.coverage().sel(level=[0.5, 0.9])
        weights = [i for i, n in enumerate(result.names) if n.startswith("weights[")]
        c50, c90 = cov.values[weights].mean(0)
        p = result.uniformity()["p_value"].values
        print(f"| {method} | {problem} | {result.num_simulations} | {c50:.2f} | {c90:.2f} | "
              f"{p.min():.3f} ({len(p)}) | {result.miscalibrated()} | "
              f"{result.seconds.mean():.1f} |")


if __name__ == "__main__":
    main()
