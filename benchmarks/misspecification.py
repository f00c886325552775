"""Calibration under misspecification, and the rationality latent that restores it.

Tiny problem (3x3 gridworld, horizon 4, two features, 100 demonstrations, theta ~ N(0, I)),
Laplace (L-BFGS) fits, N simulations per case:

* ``correct``: data from the model itself (beta = 1, global maxent);
* ``beta_unknown_fixed``: the demonstrator's beta ~ LogNormal(0, 0.5) per simulation,
  fitted by the model that fixes beta = 1;
* ``beta_unknown_latent``: the same data, fitted with beta as a latent with the same prior
  (Laplace: the (theta, beta) posterior is a curved ridge along beta * theta);
* ``beta_unknown_latent_is``: the same, fitted by importance sampling (20000 draws) with
  the Laplace approximation as the proposal, which handles the ridge;
* ``beta_unknown_latent_ridge``: the same, fitted by
  ``fit(..., method="rationality_importance")`` (importance sampling in
  (w = beta theta, log beta), where the ridge is straight; 20000 Student-t proposals);
* ``causal_data``: a maximum-causal-entropy demonstrator fitted with the global model;
* ``outside_span``: a reward offset outside the feature span (N(0, 1) per (s, a), fixed).

    nice .venv/bin/python benchmarks/misspecification.py --simulations 40
"""

import argparse
import time
from pathlib import Path

import pyro.distributions as dist
import torch

from bayes_irl import GridWorld
from bayes_irl.inference import ExactNormalizer, fit
from bayes_irl.inference.calibration import (
    DemonstrationSimulator,
    LogNormalRationality,
    run_calibration,
)
from bayes_irl.models import DemonstrationModel


def laplace_then_importance(model, raw, seed):
    """Importance sampling with the Laplace approximation as the proposal (SIR)."""
    laplace = fit(model, raw, method="laplace", optimizer="lbfgs", num_samples=10, seed=seed)
    return fit(model, raw, method="importance", proposal=laplace.extra["guide"],
               num_proposals=20000, num_samples=199, seed=seed, warn=False)


def ridge_importance(model, raw, seed):
    """Importance sampling in (beta * theta, log beta) (the ridge made straight)."""
    return fit(model, raw, method="rationality_importance", num_proposals=20000,
               num_samples=199, seed=seed)


def write_figures(result, folder):
    """The calibrate command's outputs for one case (NetCDF, coverage table, PIT-ECDF)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bayes_irl.app.calibration_plots import plot_pit_ecdf

    folder.mkdir(parents=True, exist_ok=True)
    result.to_inference_data().to_netcdf(str(folder / "calibration.nc"))
    result.summary_table().to_csv(folder / "coverage.csv")
    fig = plot_pit_ecdf(result)[0].figure
    fig.tight_layout()
    fig.savefig(folder / "pit_ecdf.png", dpi=110)
    plt.close(fig)


CUSTOM_FITS = {"beta_unknown_latent_is": laplace_then_importance,
               "beta_unknown_latent_ridge": ridge_importance}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--simulations", type=int, default=40)
    parser.add_argument("--cases", nargs="+", default=[
        "correct", "beta_unknown_fixed", "beta_unknown_latent", "causal_data", "outside_span"])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/calibration/misspec"))
    parser.add_argument("--figures", type=Path, default=None,
                        help="write calibration.nc, coverage.csv and pit_ecdf.png per case "
                             "into FIGURES/<case>")
    args = parser.parse_args()
    torch.set_num_threads(1)
    world = GridWorld.create(size=3, num_features=2, horizon=4, seed=1)
    fixed = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
    prior = dist.LogNormal(torch.tensor(0.0, dtype=torch.float64),
                           torch.tensor(0.5, dtype=torch.float64))
    latent = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp),
                                rationality_prior=prior)
    offset = torch.randn(world.mdp.num_states, world.mdp.num_actions,
                         generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    cases = {
        "correct": (fixed, DemonstrationSimulator(100)),
        "beta_unknown_fixed": (fixed, DemonstrationSimulator(100,
                                                             rationality=LogNormalRationality())),
        "beta_unknown_latent": (latent, DemonstrationSimulator(100)),
        "beta_unknown_latent_is": (latent, DemonstrationSimulator(100)),
        "beta_unknown_latent_ridge": (latent, DemonstrationSimulator(100)),
        "causal_data": (fixed, DemonstrationSimulator(100, kind="causal")),
        "outside_span": (fixed, DemonstrationSimulator(100, reward_offset=offset)),
    }
    print("| case | N | cov50 (weights) | cov90 (weights) | min p (Q) | flagged | s/sim |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.cases:
        model, simulator = cases[name]
        start = time.perf_counter()
        fit_fn = CUSTOM_FITS.get(name)
        result = run_calibration(model, simulator, num_simulations=args.simulations,
                                 method="laplace", fit_fn=fit_fn,
                                 options={"optimizer": "lbfgs", "num_samples": 199},
                                 num_rank_draws=99, seed=0, progress_bar=False,
                                 directory=args.out / name)
        cov = result.coverage().sel(level=[0.5, 0.9])
        weights = [i for i, n in enumerate(result.names) if n.startswith("weights[")]
        c50, c90 = cov.values[weights].mean(0)
        p = result.uniformity()["p_value"].values
        if args.figures is not None:
            write_figures(result, args.figures / name)
        print(f"| {name} | {result.num_simulations} | {c50:.2f} | {c90:.2f} | "
              f"{p.min():.4f} ({len(p)}) | {result.miscalibrated()} | "
              f"{(time.perf_counter() - start) / args.simulations:.1f} |", flush=True)


if __name__ == "__main__":
    main()
