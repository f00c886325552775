"""``bayes-irl calibrate``: simulation-based calibration of one fit configuration.

Writes ``calibration.nc`` (InferenceData groups ``sbc`` and ``sbc_summary``),
``pit_ecdf.png``, ``ranks.png`` and ``coverage.csv`` to ``--out``; each finished simulation
is saved under ``--out/simulations`` as it completes, so rerunning the same command resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bayes_irl.app.output_files import write_atomic

__all__ = ["add_parser", "run"]

OUTPUT_FILES = ("calibration.nc", "pit_ecdf.png", "ranks.png", "coverage.csv")


def _option(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--option must be KEY=VALUE; got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``calibrate`` subcommand."""
    p = subparsers.add_parser(
        "calibrate", help="simulation-based calibration: coverage and rank uniformity"
    )
    p.add_argument("--method", default="laplace", help="fit method (laplace, svi, nuts, ...; "
                   "rationality_importance for --latent-rationality)")
    p.add_argument("--simulations", type=int, default=200, help="number of simulations N")
    p.add_argument("--problem", choices=["gridworld", "preferences", "random-mdp"],
                   default="gridworld",
                   help="random-mdp: 36 states, 4 actions, 3 successors, horizon 12")
    p.add_argument("--grid-size", type=int, default=5)
    p.add_argument("--num-features", type=int, default=4)
    p.add_argument("--horizon", type=int, default=None,
                   help="default 2N for the gridworld, 12 for the random MDP")
    p.add_argument("--num-demos", type=int, default=200, help="demonstrations per simulation")
    p.add_argument("--num-comparisons", type=int, default=300,
                   help="comparisons per simulation (--problem preferences)")
    p.add_argument("--num-items", type=int, default=50, help="item pool of the comparisons")
    p.add_argument("--draws", type=int, default=99, help="thinned posterior draws L per fit")
    p.add_argument("--option", type=_option, action="append", default=[],
                   help="fit option KEY=VALUE (JSON value), repeatable, e.g. num_steps=2000")
    p.add_argument("--demonstrator-rationality", type=float, default=None,
                   help="simulate a demonstrator with this beta (misspecification)")
    p.add_argument("--latent-rationality", action="store_true",
                   help="fit beta as a latent with a LogNormal(0, 0.5) prior")
    p.add_argument("--normalizer", choices=["exact", "importance"], default="exact",
                   help="log Z of the fitted model: exact, or an importance normaliser "
                   "with a twisted proposal trained during each fit (demonstrations)")
    p.add_argument("--bank-size", type=int, default=4000,
                   help="trajectories K per bank of the importance normaliser")
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/calibration"))
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--no-progress", action="store_true")
    return p


def _problem(args):
    import pyro.distributions as dist
    import torch

    from bayes_irl.gridworld import GridWorld
    from bayes_irl.inference import ExactNormalizer
    from bayes_irl.inference.calibration import DemonstrationSimulator, PreferenceSimulator
    from bayes_irl.models import DemonstrationModel, PreferenceModel

    prior = None
    if args.latent_rationality:
        prior = dist.LogNormal(torch.tensor(0.0, dtype=torch.float64),
                               torch.tensor(0.5, dtype=torch.float64))
    simulator = DemonstrationSimulator(args.num_demos, rationality=args.demonstrator_rationality)
    if args.problem == "random-mdp":
        from bayes_irl.random_mdp import random_sparse_mdp
        from bayes_irl.rewards import LinearReward

        mdp = random_sparse_mdp(horizon=args.horizon or 12, num_features=args.num_features,
                                seed=args.seed)
        reward = LinearReward(mdp.features, feature_names=mdp.feature_names)
        return DemonstrationModel(reward, ExactNormalizer(mdp), rationality_prior=prior), simulator
    world = GridWorld.create(size=args.grid_size, num_features=args.num_features,
                             horizon=args.horizon, seed=args.seed)
    if args.problem == "preferences":
        items = world.sample_demonstrations(args.num_items, seed=args.seed)
        return PreferenceModel(world.reward_model, items), PreferenceSimulator(
            args.num_comparisons)
    model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp),
                               rationality_prior=prior)
    return model, simulator


def run(args) -> int:
    """Run the calibration and write the outputs; returns the exit status."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from bayes_irl.app.calibration_plots import plot_pit_ecdf, plot_rank_histograms
    from bayes_irl.inference.calibration import ImportanceNormalizerFit, run_calibration

    out: Path = args.out
    existing = [n for n in OUTPUT_FILES if (out / n).exists()]
    if existing and not args.overwrite:
        raise FileExistsError(
            f"{out} already holds {existing}; pass --overwrite or choose another --out"
        )
    torch.set_num_threads(1)
    model, simulator = _problem(args)
    fit_fn = None
    if args.normalizer == "importance":
        if args.problem == "preferences" or args.latent_rationality:
            raise ValueError("--normalizer importance needs demonstrations (--problem "
                             "gridworld or random-mdp) without --latent-rationality")
        fit_fn = ImportanceNormalizerFit(method=args.method, options=dict(args.option),
                                         num_samples=args.bank_size)
    result = run_calibration(
        model, simulator, num_simulations=args.simulations, method=args.method,
        options=dict(args.option), fit_fn=fit_fn, num_rank_draws=args.draws, seed=args.seed,
        num_workers=args.workers, directory=out / "simulations",
        progress_bar=not args.no_progress,
    )
    idata = result.to_inference_data()
    write_atomic(out / "calibration.nc", lambda tmp: idata.to_netcdf(str(tmp)))
    for name, plot in (("pit_ecdf.png", plot_pit_ecdf), ("ranks.png", plot_rank_histograms)):
        axes = plot(result)
        fig = axes[0].figure
        fig.tight_layout()
        write_atomic(out / name, lambda tmp, fig=fig: fig.savefig(tmp, dpi=110, format="png"))
        plt.close(fig)
    table = result.summary_table()
    table["seconds_per_simulation"] = float(result.seconds.mean())
    write_atomic(out / "coverage.csv", lambda tmp: table.to_csv(tmp))
    print(table.to_string(float_format=lambda x: f"{x:.3f}"))
    flag = "MISCALIBRATED" if result.miscalibrated() else "no miscalibration detected"
    label = args.method if fit_fn is None else fit_fn.__name__
    print(f"{label}: {result.num_simulations} simulations, {flag} "
          f"(Bonferroni over {len(result.names)} quantities at 0.05)")
    print(f"wrote {', '.join(str(out / n) for n in OUTPUT_FILES)}", file=sys.stderr)
    return 0
