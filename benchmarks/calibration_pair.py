"""Two calibration runs on the same data sets, compared simulation by simulation.

Runs of ``bayes-irl calibrate`` with the same ``--seed`` and problem draw the same theta*
and data for the same simulation index, so their PITs can be paired: a correlation near 1
and small |PIT differences| mean the two fits agree data set by data set, and whatever
miscalibration one shows the other shares (e.g. SVI with the importance normaliser against
SVI with the exact normaliser: what the normaliser adds, apart from the Gaussian family).

    cd benchmarks && ../.venv/bin/python calibration_pair.py calibration/svi_gridworld
        calibration/svi-importance_gridworld   # (one line)

The simulations are paired by their theta* (the same draw in both runs), so a run still in
progress, with simulations missing, pairs correctly.
"""

import argparse
from pathlib import Path

import numpy as np
from calibration_table import load


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    args = parser.parse_args()
    a, b = load(args.first), load(args.second)
    if a.names != b.names:
        raise SystemExit("the runs rank different quantities")
    # pair on the latent coordinates (the test quantities of a posterior-mean policy differ)
    latent = [k for k, name in enumerate(a.names)
              if not name.startswith(("log_likelihood", "reward[", "value_of"))]
    pairs = [(i, j) for j, row in enumerate(b.truth[:, latent])
             for i in range(len(a.truth)) if np.allclose(a.truth[i, latent], row)]
    if not pairs:
        raise SystemExit("no data set in common (different --seed or problem?)")
    first, second = np.array(pairs).T
    print(f"{len(pairs)} paired simulations")
    print("| quantity | PIT correlation | median \\|ΔPIT\\| | 90% \\|ΔPIT\\| | cov90 first | "
          "cov90 second |")
    print("| --- | --- | --- | --- | --- | --- |")
    for j, name in enumerate(a.names):
        pa, pb = a.pit[first, j], b.pit[second, j]
        d = np.abs(pb - pa)
        c90 = [float(((p > 0.05) & (p < 0.95)).mean()) for p in (pa, pb)]
        print(f"| {name} | {np.corrcoef(pa, pb)[0, 1]:.3f} | {np.median(d):.3f} | "
              f"{np.quantile(d, 0.9):.3f} | {c90[0]:.3f} | {c90[1]:.3f} |")


if __name__ == "__main__":
    main()
