"""Command line: ``bayes-irl fit`` and ``bayes-irl simulate``.

``bayes-irl fit`` fits a reward posterior on the built-in gridworld (default) or on a
user's ``--mdp``/``--demos`` .npz files, prints the ArviZ summary (mean, sd, HDI, ESS,
r_hat), and writes into ``--out``: ``posterior.nc`` (InferenceData, NetCDF),
``summary.csv``, ``reward_posterior.png`` (posterior mean ± HDI, with the true weights when
known) and ``trace.png``. Existing outputs are never overwritten without ``--overwrite``.

``bayes-irl simulate`` writes a seeded gridworld and demonstrations as .npz files, in the
documented format, as a template for users' own data.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

from bayes_irl.app import calibrate_command

OUTPUT_FILES = ("posterior.nc", "summary.csv", "reward_posterior.png", "trace.png")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bayes-irl", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def world_args(p):
        g = p.add_argument_group("built-in gridworld")
        g.add_argument("--grid-size", type=int, default=5, help="N of the N×N grid (default 5)")
        g.add_argument("--num-features", type=int, default=4)
        g.add_argument("--features", choices=["random", "designer"], default="random")
        g.add_argument("--slip", type=float, default=0.1)
        g.add_argument("--horizon", type=int, default=None, help="default 2N")
        g.add_argument("--num-demos", type=int, default=200)
        g.add_argument("--seed", type=int, default=0, help="seeds the world, demos and fit")

    fit = sub.add_parser("fit", help="fit a reward posterior and write InferenceData + plots")
    world_args(fit)
    fit.add_argument("--mdp", type=Path, help="MDP .npz (see README); replaces the gridworld")
    fit.add_argument("--demos", type=Path, help="demonstrations .npz (required with --mdp)")
    fit.add_argument("--method", default="nuts", help="svi, laplace, nuts or hmc (default nuts)")
    fit.add_argument(
        "--kind",
        choices=["global", "causal"],
        default="global",
        help="maxent model: global (P ∝ dynamics·exp R) or maximum causal entropy",
    )
    fit.add_argument("--guide", default="multivariate_normal", help="SVI autoguide name")
    fit.add_argument("--num-steps", type=int, default=5000, help="SVI steps")
    fit.add_argument(
        "--num-samples",
        type=int,
        default=None,
        help="draws per chain (NUTS/HMC) or SVI draws (default 1000 for both)",
    )
    fit.add_argument("--warmup", type=int, default=500, help="NUTS/HMC warm-up per chain")
    fit.add_argument("--chains", type=int, default=2, help="NUTS/HMC chains (>= 2 for r_hat)")
    fit.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="output folder")
    fit.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    fit.add_argument("--no-progress", action="store_true", help="hide progress bars")
    fit.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: faster for these small kernels)",
    )

    calibrate_command.add_parser(sub)

    sim = sub.add_parser("simulate", help="write a gridworld MDP and demonstrations as .npz")
    world_args(sim)
    sim.add_argument("--out-mdp", type=Path, required=True)
    sim.add_argument("--out-demos", type=Path, required=True)
    sim.add_argument("--kind", choices=["global", "causal"], default="global")
    sim.add_argument("--overwrite", action="store_true")
    return parser


def _world(args):
    from bayes_irl.gridworld import GridWorld

    return GridWorld.create(
        size=args.grid_size,
        num_features=args.num_features,
        features=args.features,
        slip=args.slip,
        horizon=args.horizon,
        seed=args.seed,
    )


def _simulate(args) -> int:
    from bayes_irl.io import save_demonstrations, save_mdp

    for path in (args.out_mdp, args.out_demos):
        if path.exists() and not args.overwrite:
            print(f"error: {path} exists; pass --overwrite to replace it", file=sys.stderr)
            return 2
    world = _world(args)
    demos = world.sample_demonstrations(args.num_demos, seed=args.seed, kind=args.kind)
    save_mdp(args.out_mdp, world.mdp, true_weights=world.true_weights, overwrite=args.overwrite)
    save_demonstrations(args.out_demos, demos, overwrite=args.overwrite)
    print(f"wrote {args.out_mdp} ({world.mdp}) and {args.out_demos} ({len(demos)} demonstrations)")
    return 0


def _fit(args) -> int:
    out: Path = args.out
    existing = [out / name for name in OUTPUT_FILES if (out / name).exists()]
    if existing and not args.overwrite:
        names = ", ".join(str(p) for p in existing)
        print(
            f"error: {names} already exist(s); pass --overwrite or choose another --out",
            file=sys.stderr,
        )
        return 2
    if (args.mdp is None) != (args.demos is None):
        print("error: --mdp and --demos must be given together", file=sys.stderr)
        return 2

    import matplotlib

    matplotlib.use("Agg")
    import arviz as az
    import matplotlib.pyplot as plt
    import torch

    from bayes_irl.app.plots import plot_reward_posterior
    from bayes_irl.inference import ExactNormalizer, fit
    from bayes_irl.io import load_demonstrations, load_mdp
    from bayes_irl.models import DemonstrationModel
    from bayes_irl.rewards import LinearReward

    torch.set_num_threads(args.threads)
    if args.mdp is not None:
        mdp, true_weights = load_mdp(args.mdp)
        demos = load_demonstrations(args.demos, mdp=mdp)
        reward = LinearReward(mdp.features, feature_names=mdp.feature_names)
        source = f"{args.mdp} + {args.demos}"
    else:
        world = _world(args)
        mdp, true_weights, reward = world.mdp, world.true_weights, world.reward_model
        demos = world.sample_demonstrations(args.num_demos, seed=args.seed, kind=args.kind)
        source = f"built-in {args.grid_size}×{args.grid_size} gridworld (seed {args.seed})"
    print(f"bayes-irl fit: {source}; {mdp}; {len(demos)} demonstrations; method {args.method}")
    model = DemonstrationModel(reward, ExactNormalizer(mdp, kind=args.kind))

    options: dict = {"seed": args.seed, "progress_bar": not args.no_progress}
    if args.method in ("nuts", "hmc"):
        options.update(
            num_samples=args.num_samples or 1000, warmup_steps=args.warmup, num_chains=args.chains
        )
    else:
        options.update(num_samples=args.num_samples or 1000, num_steps=args.num_steps)
        if args.method == "svi":
            options["guide"] = args.guide
    start = time.perf_counter()
    posterior = fit(model, demos, method=args.method, **options)
    idata = posterior.to_inference_data()
    elapsed = time.perf_counter() - start

    site = reward.site_name
    summary = az.summary(idata, var_names=[site])
    if true_weights is not None:
        summary.insert(0, "true", true_weights.cpu().numpy())
    with _pandas_display():
        print(summary.to_string())
    print(f"fitted in {elapsed:.1f} s")
    if posterior.num_chains < 2:
        print("note: r_hat needs >= 2 chains; SVI/Laplace draws are independent (one chain)")

    out.mkdir(parents=True, exist_ok=True)
    _atomic(out / "posterior.nc", lambda p: idata.to_netcdf(str(p)))
    _atomic(out / "summary.csv", lambda p: summary.to_csv(p))
    ax = plot_reward_posterior(
        idata,
        var_name=site,
        true_values=None if true_weights is None else true_weights.cpu().numpy(),
    )
    _atomic(out / "reward_posterior.png", lambda p: ax.figure.savefig(p, dpi=120, format="png"))
    plt.close(ax.figure)
    with warnings.catch_warnings():
        # ArviZ 0.23 calls a matplotlib API deprecated in 3.11; harmless, and not ours.
        warnings.filterwarnings("ignore", message="Passing a dict or None as alias_mapping")
        axes = az.plot_trace(idata, var_names=[site], compact=True)
    fig = axes.ravel()[0].figure
    fig.tight_layout()
    _atomic(out / "trace.png", lambda p: fig.savefig(p, dpi=100, format="png"))
    plt.close(fig)
    print(f"wrote {', '.join(str(out / n) for n in OUTPUT_FILES)}")
    return 0


def _atomic(path: Path, write) -> None:
    """Write through a temporary file, then rename: a crash never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class _pandas_display:
    """Show every column of the summary table."""

    def __enter__(self):
        import pandas as pd

        self._ctx = pd.option_context("display.width", 200, "display.max_columns", 20)
        self._ctx.__enter__()

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bayes-irl`` command."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "simulate":
            return _simulate(args)
        if args.command == "calibrate":
            return calibrate_command.run(args)
        return _fit(args)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
