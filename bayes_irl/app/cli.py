"""Command line: ``bayes-irl fit``, ``bayes-irl simulate`` and ``bayes-irl ask``.

``bayes-irl fit`` fits a reward posterior on the built-in gridworld (default) or on a
user's ``--mdp``/``--demos`` .npz files, prints the ArviZ summary (mean, sd, HDI, ESS,
r_hat), and writes into ``--out``: ``posterior.nc`` (InferenceData, NetCDF),
``summary.csv``, ``reward_posterior.png`` (posterior mean ± HDI, with the true weights when
known), ``trace.png`` and, when the MDP has a 2-D layout (the built-in gridworld),
``reward_map.png`` (posterior mean, sd and P(r(s) > 0) of the state reward over the grid,
with the soft-optimal moves and the demonstrations' visit counts). Existing outputs are
never overwritten without ``--overwrite``. ``--prior-scale``/``--prior-family`` set the
prior of the reward weights (default Normal(0, 1)).

``bayes-irl simulate`` writes a seeded gridworld and demonstrations as .npz files, in the
documented format, as a template for users' own data.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from bayes_irl.app import ask_command, calibrate_command, fit_preferences, policy_command
from bayes_irl.app.output_files import write_atomic

OUTPUT_FILES = ("posterior.nc", "summary.csv", "reward_posterior.png", "trace.png")
REWARD_MAP_FILE = "reward_map.png"  # written too when the MDP has a 2-D layout
PRIOR_FAMILIES = ("normal", "laplace", "cauchy")


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
    fit_preferences.add_arguments(fit)
    fit.add_argument(
        "--method", default="nuts", help="svi, laplace, nuts, hmc or importance (default nuts)"
    )
    fit.add_argument(
        "--kind",
        choices=["global", "causal"],
        default="global",
        help="maxent model: global (P ∝ dynamics·exp R) or maximum causal entropy",
    )
    fit.add_argument("--guide", default="multivariate_normal", help="SVI autoguide name")
    fit.add_argument(
        "--prior-scale",
        type=float,
        default=1.0,
        help="scale of the prior on every reward weight (default 1). The prior shrinks the "
        "weights towards 0: raise it when rewards of larger magnitude are plausible",
    )
    fit.add_argument(
        "--prior-family",
        choices=PRIOR_FAMILIES,
        default="normal",
        help="prior family, centred at 0 with --prior-scale (default normal; laplace and "
        "cauchy have heavier tails and shrink large weights less)",
    )
    fit.add_argument(
        "--num-steps", type=int, default=5000, help="SVI steps (default 5000, from the Laplace fit)"
    )
    fit.add_argument("--svi-backend", choices=("auto", "gaussian_vi", "pyro"), default="auto",
                     help="SVI loop: the Gaussian-VI kernel on the model's potential for "
                     "Gaussian guides, stopping at ELBO stationarity (auto or gaussian_vi), "
                     "or Pyro's SVI (pyro)")
    fit.add_argument(
        "--num-samples",
        type=int,
        default=None,
        help="draws per chain (NUTS/HMC; default: sized for bulk ESS >= 400) or SVI/Laplace "
        "draws (default 1000)",
    )
    fit.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="NUTS/HMC warm-up per chain (default 300 from the Laplace start, else 500)",
    )
    fit.add_argument("--chains", type=int, default=2, help="NUTS/HMC chains (>= 2 for r_hat)")
    fit.add_argument("--out", type=Path, default=Path("runs/quickstart"), help="output folder")
    fit.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    fit.add_argument(
        "--strict",
        action="store_true",
        help="exit with code 3 when a convergence check fails (outputs are still written)",
    )
    fit.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted svi/nuts/hmc fit from its checkpoint in --out",
    )
    fit.add_argument(
        "--checkpoint-every", type=int, default=None,
        help="SVI steps (default 500) or NUTS/HMC draws per chain (default 100) between "
             "checkpoints"
    )
    fit.add_argument(
        "--standardize",
        action="store_true",
        help="fit on standardised features (prior on that scale); report weights on yours",
    )
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
    policy_command.add_parser(sub)
    ask_command.add_parser(sub)
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
    from bayes_irl.app.fit_checks import (
        CHECKPOINT_FILES,
        mark_complete,
        prepare_output,
        validate_fit_args,
    )

    out: Path = args.out
    validate_fit_args(args)  # every option, before anything is loaded or fitted
    prepare_output(
        out, (*OUTPUT_FILES, REWARD_MAP_FILE), overwrite=args.overwrite, resume=args.resume
    )

    import matplotlib

    matplotlib.use("Agg")
    import arviz as az
    import matplotlib.pyplot as plt
    import torch

    # ArviZ switches to its Numba kernels whenever Numba is installed (a dependency here):
    # loading them costs ~0.35 s per process and compiling them ~4 s on a fresh install,
    # where NumPy takes 0.05 s on the few thousand draws of a fit
    az.Numba.disable_numba()

    from bayes_irl.app.plots import plot_reward_maps, plot_reward_posterior
    from bayes_irl.inference import ExactNormalizer, fit
    from bayes_irl.inference.checkpoint import MCMCCheckpoint, SVICheckpoint
    from bayes_irl.inference.convergence import ConvergenceWarning
    from bayes_irl.inference.diagnostics import ImportanceWarning
    from bayes_irl.inference.standardize import standardized_features, weights_to_user_scale
    from bayes_irl.io import load_demonstrations, load_mdp
    from bayes_irl.models import DemonstrationModel
    from bayes_irl.rewards import LinearReward

    torch.set_num_threads(args.threads)
    if args.mdp is not None:
        mdp, true_weights = load_mdp(args.mdp)
        demos = load_demonstrations(args.demos, mdp=mdp) if args.demos else None
        source = f"{args.mdp} + {args.demos}" if args.demos else str(args.mdp)
    else:
        world = _world(args)
        mdp, true_weights = world.mdp, world.true_weights
        demos = None if args.preferences else world.sample_demonstrations(
            args.num_demos, seed=args.seed, kind=args.kind)
        source = f"built-in {args.grid_size}×{args.grid_size} gridworld (seed {args.seed})"
    reward = LinearReward(
        mdp.features,
        feature_names=mdp.feature_names,
        prior=_prior(args.prior_family, args.prior_scale, mdp.dtype),
    )
    normalizer = ExactNormalizer(mdp, kind=args.kind)
    scale = None
    if args.standardize:
        import pyro.distributions as dist

        features, scale = standardized_features(mdp.features)
        user_model = DemonstrationModel(  # N(0, 1) on the standardised scale, mapped back
            LinearReward(mdp.features, prior=dist.Normal(torch.zeros_like(scale), 1 / scale),
                         feature_names=mdp.feature_names),
            normalizer)
        reward = LinearReward(features, feature_names=mdp.feature_names)
    model = None if demos is None else DemonstrationModel(reward, normalizer)
    data, what = demos, f"{0 if demos is None else len(demos)} demonstrations"
    if args.preferences is not None:
        model, data, prefs = fit_preferences.build(args, mdp, reward, model, demos)
        what = prefs if demos is None else f"{what} + {prefs}"
    print(f"bayes-irl fit: {source}; {mdp}; {what}; method {args.method}")

    num_samples = 1000 if args.num_samples is None else args.num_samples
    options: dict = {"seed": args.seed, "progress_bar": not args.no_progress,
                     "num_samples": num_samples}
    if args.method in ("nuts", "hmc"):
        # NUTS/HMC: None sizes the draws for a bulk ESS of 400 per parameter
        options.update(
            num_samples=args.num_samples, warmup_steps=args.warmup, num_chains=args.chains
        )
    elif args.method in ("svi", "laplace"):
        options.update(num_steps=args.num_steps)
        if args.method == "svi":
            options["guide"] = args.guide
            options["svi_backend"] = args.svi_backend
    if args.method == "svi":
        options["checkpoint"] = SVICheckpoint(
            out / CHECKPOINT_FILES["svi"], every=args.checkpoint_every or 500,
            resume=args.resume)
    elif args.method in CHECKPOINT_FILES:
        options["checkpoint"] = MCMCCheckpoint(out / CHECKPOINT_FILES[args.method],
                                               resume=args.resume,
                                               every=args.checkpoint_every or 100)
    start = time.perf_counter()
    with warnings.catch_warnings():
        # the verdict is printed below as one line, not as a Python warning
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", ImportanceWarning)  # its k-hat is in the verdict
        posterior = fit(model, data, method=args.method, **options)
    if scale is not None:
        weights_to_user_scale(posterior, reward.site_name, scale, user_model)
    idata = posterior.to_inference_data()
    elapsed = time.perf_counter() - start

    site = reward.site_name
    # full precision in summary.csv and 4 significant digits on screen: ArviZ's default
    # 3 decimals show weights on a user's scale (e.g. features x1000 with --standardize)
    # as 0.001 with sd 0.0
    summary = az.summary(idata, var_names=[site], round_to="none")
    if true_weights is not None:
        summary.insert(0, "true", true_weights.cpu().numpy())
    with _pandas_display():
        print(summary.to_string(float_format="{:.4g}".format))
    print(f"fitted in {elapsed:.1f} s")
    if args.method in ("nuts", "hmc") and posterior.num_chains < 2:
        print(f"note: r_hat needs >= 2 chains; --chains {args.chains} was given")
    elif posterior.num_chains < 2:
        print(f"note: {args.method} draws are independent (one chain): r_hat does not apply")
    verdict = posterior.attrs.get("convergence_verdict", "not checked")
    print(f"convergence: {verdict}")

    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "posterior.nc", lambda p: idata.to_netcdf(str(p)))
    write_atomic(out / "summary.csv", lambda p: summary.to_csv(p))
    ax = plot_reward_posterior(
        idata,
        var_name=site,
        true_values=None if true_weights is None else true_weights.cpu().numpy(),
    )
    write_atomic(
        out / "reward_posterior.png", lambda p: ax.figure.savefig(p, dpi=120, format="png")
    )
    plt.close(ax.figure)
    with warnings.catch_warnings():
        # ArviZ 0.23 calls a matplotlib API deprecated in 3.11; harmless, and not ours.
        warnings.filterwarnings("ignore", message="Passing a dict or None as alias_mapping")
        axes = az.plot_trace(idata, var_names=[site], compact=True)
    fig = axes.ravel()[0].figure
    fig.tight_layout()
    write_atomic(out / "trace.png", lambda p: fig.savefig(p, dpi=100, format="png"))
    plt.close(fig)
    written = OUTPUT_FILES
    if mdp.layout is not None:
        fig = plot_reward_maps(mdp, reward, posterior, demonstrations=demos, kind=args.kind)
        write_atomic(out / REWARD_MAP_FILE, lambda p: fig.savefig(p, dpi=120, format="png"))
        plt.close(fig)
        written = (*OUTPUT_FILES, REWARD_MAP_FILE)
    mark_complete(out, written, verdict)
    for name in set(CHECKPOINT_FILES.values()):
        (out / name).unlink(missing_ok=True)  # the finished outputs supersede it
    print(f"wrote {', '.join(str(out / n) for n in written)}")
    if args.strict and not posterior.attrs.get("convergence_ok", 1):
        print("error: --strict: the fit failed its convergence checks (see above)",
              file=sys.stderr)
        return 3
    return 0


def _prior(family: str, scale: float, dtype):
    """The prior on every reward weight: ``family`` centred at 0 with ``scale``."""
    import math

    import pyro.distributions as dist
    import torch

    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"--prior-scale must be a positive number; got {scale}")
    loc, scale_t = torch.tensor(0.0, dtype=dtype), torch.tensor(scale, dtype=dtype)
    return {"normal": dist.Normal, "laplace": dist.Laplace, "cauchy": dist.Cauchy}[family](
        loc, scale_t
    )


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
    from bayes_irl.inference.checkpoint import FitInterrupted
    from bayes_irl.inference.convergence import ConvergenceError

    try:
        if args.command == "simulate":
            return _simulate(args)
        if args.command == "policy":
            return policy_command.run(args)
        if args.command == "ask":
            return ask_command.run(args)
        if args.command == "calibrate":
            return calibrate_command.run(args)
        return _fit(args)
    except FitInterrupted as err:
        print(f"interrupted: {err}", file=sys.stderr)
        return 128 + err.signal_number
    except (ValueError, OSError, FloatingPointError, ConvergenceError) as err:
        # expected failures (bad input, unwritable output, numerical breakdown): one line
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
