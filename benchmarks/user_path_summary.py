"""Summarise one `benchmarks/user_path.sh N DEMOS ...` run as a markdown table row set.

Reads what the run wrote under benchmarks/work/user_path: imitation's JSON (its own
training wall time and final Pearson r) and each `bayes-irl fit` output folder
(posterior.nc: the fit's attrs, the draws), and computes, per method, the Pearson r
between the posterior-mean state reward features[s] . E[theta] and the true one, and for
NUTS the largest r_hat and the smallest bulk ESS (ArviZ), and bulk ESS per second of the
fit's wall time, and the coverage: how many of the K true weights lie inside their central
90% posterior interval (one data set, so a count, not a rate).

    python benchmarks/user_path_summary.py N DEMOS [methods...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import arviz as az
import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "work" / "user_path"


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


def main() -> None:
    n, demos, methods = sys.argv[1], sys.argv[2], sys.argv[3:]
    mdp = np.load(OUT / f"mdp_n{n}_s0.npz")
    features, true = mdp["features"], mdp["true_weights"]
    true_r = features @ true
    imitation_file = OUT / f"imitation_n{n}_d{demos}.json"
    if not imitation_file.exists():  # imitation's venv absent: user_path.sh skipped it
        print(f"| {n}x{n}, {demos} demos | imitation MCEIRL | (not run) | | |")
    else:
        imitation = json.loads(imitation_file.read_text())
        print(f"| {n}x{n}, {demos} demos | imitation MCEIRL | "
              f"train {imitation['wall_time_s']:.1f} s "
              f"(cpu {imitation['train_cpu_time_s']:.1f} s), {imitation['iterations']} it | "
              f"r = {imitation['final_correlation']:.4f} | |")
    for method in methods:
        path = OUT / f"bayes_{method}_n{n}_d{demos}" / "posterior.nc"
        if not path.exists():
            print(f"| {n}x{n} | bayes-irl {method} | (no output) | | |")
            continue
        idata = az.from_netcdf(path)
        draws = idata.posterior["weights"].values  # (chains, draws, K)
        flat = draws.reshape(-1, draws.shape[-1])
        mean = flat.mean(0)
        low, high = np.quantile(flat, [0.05, 0.95], axis=0)
        covered = int(((low <= true) & (true <= high)).sum())
        attrs = idata.attrs
        wall = float(attrs.get("wall_time_s", np.nan))
        extra = ""
        if method in ("nuts", "hmc"):
            ess = az.ess(idata, var_names=["weights"], method="bulk")["weights"].values
            rhat = az.rhat(idata, var_names=["weights"])["weights"].values
            extra = (f"r_hat max {rhat.max():.3f}, min bulk ESS {ess.min():.0f}, "
                     f"{ess.min() / wall:.1f} ESS/s, {draws.shape[0]}x{draws.shape[1]} draws, "
                     f"{int(idata.sample_stats['diverging'].values.sum())} div.")
        elif method == "svi":
            extra = (f"{attrs.get('num_steps_run', attrs.get('num_steps', '?'))} steps "
                     f"({attrs.get('svi_backend', 'pyro')}), converged "
                     f"{attrs.get('converged', '?')}")
        print(f"| {n}x{n}, {demos} demos | bayes-irl {method} | fit {wall:.2f} s | "
              f"r = {pearson(features @ mean, true_r):.4f} | 90% CI covers {covered}/{true.size} "
              f"true weights; {extra} |")


if __name__ == "__main__":
    main()
