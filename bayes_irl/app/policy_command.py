"""``bayes-irl policy``: act on a fitted reward posterior in a (possibly new) tabular MDP.

Reads a posterior (``posterior.nc`` written by ``bayes-irl fit``) and an MDP ``.npz``
(the same K features, possibly other dynamics, horizon or start states), computes the
policy for ``--risk`` (``mean``, ``soft[:tau]``, ``lcb:k``, ``cvar:alpha`` or
``quantile:alpha``; see :func:`bayes_irl.inference.decisions.parse_risk`), and writes
into ``--out``: ``policy.npz`` (``policy`` (T, S, A), ``returns`` (N,) and ``regret``
(N,) over the posterior draws, ``risk``) and ``return_distribution.png`` (the chosen
policy against the posterior-mean policy). Existing outputs are never overwritten
without ``--overwrite``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bayes_irl.app.output_files import write_atomic

OUTPUT_FILES = ("policy.npz", "return_distribution.png")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``policy`` subcommand on an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "policy", help="policy and return distribution from a reward posterior"
    )
    p.add_argument("--posterior", type=Path, required=True, help="posterior.nc (InferenceData)")
    p.add_argument("--mdp", type=Path, required=True, help="MDP .npz to act in (see README)")
    p.add_argument(
        "--risk",
        default="mean",
        help="mean | soft[:tau] | lcb:k | cvar:alpha | quantile:alpha (default mean)",
    )
    p.add_argument("--site", default=None, help="posterior variable of theta (default first)")
    p.add_argument("--max-draws", type=int, default=1000, help="posterior draws used")
    p.add_argument("--num-steps", type=int, default=300, help="optimiser steps (cvar/quantile)")
    p.add_argument("--out", type=Path, default=Path("runs/policy"), help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    return p


def run(args) -> int:
    """Run ``bayes-irl policy``; returns the exit status (2 for user errors)."""
    out: Path = args.out
    existing = [out / name for name in OUTPUT_FILES if (out / name).exists()]
    if existing and not args.overwrite:
        names = ", ".join(str(p) for p in existing)
        print(f"error: {names} already exist(s); pass --overwrite", file=sys.stderr)
        return 2
    if not args.posterior.is_file():
        raise FileNotFoundError(f"no such file: {args.posterior}")

    import matplotlib

    matplotlib.use("Agg")
    import arviz as az
    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    from bayes_irl.app.decision_plots import plot_return_distributions
    from bayes_irl.inference.decisions import (
        mean_reward_policy,
        parse_risk,
        policy_for_risk,
        regret_distribution,
        return_distribution,
        reward_draws,
    )
    from bayes_irl.io import load_mdp

    torch.set_num_threads(args.threads)
    parse_risk(args.risk)  # a bad spec fails before any work
    mdp, _ = load_mdp(args.mdp)
    try:
        idata = az.from_netcdf(str(args.posterior))
    except (OSError, ValueError) as err:
        raise ValueError(f"{args.posterior} is not a readable NetCDF posterior: {err}") from err
    if "posterior" not in idata.groups():
        raise ValueError(f"{args.posterior} has no posterior group")
    draws = reward_draws(idata, mdp, site=args.site, max_draws=args.max_draws)
    policy = policy_for_risk(mdp, draws, args.risk, num_steps=args.num_steps)
    returns = return_distribution(mdp, policy, draws)
    regret = regret_distribution(mdp, policy, draws)
    print(f"bayes-irl policy: {mdp}; {draws.shape[0]} posterior draws; risk {args.risk}")
    print(
        f"return over the posterior: mean {returns.mean:.4f}  sd {returns.std:.4f}  "
        f"5% quantile {returns.lower_bound(0.95):.4f}  CVaR_0.1 {returns.cvar(0.1):.4f}"
    )
    print(f"regret over the posterior: mean {regret.mean:.4f}  95% quantile "
          f"{regret.quantile(0.95):.4f}")

    out.mkdir(parents=True, exist_ok=True)
    arrays = {
        "policy": policy.cpu().numpy(),
        "returns": returns.values.cpu().numpy(),
        "regret": regret.values.cpu().numpy(),
        "risk": np.asarray(args.risk),
    }
    write_atomic(out / "policy.npz", lambda tmp: _savez(tmp, arrays))
    curves = {args.risk: returns.values.numpy()}
    if args.risk != "mean":
        baseline = mean_reward_policy(mdp, draws).policy
        curves["mean"] = return_distribution(mdp, baseline, draws).values.numpy()
    ax = plot_return_distributions(curves)
    write_atomic(out / "return_distribution.png",
                 lambda tmp: ax.figure.savefig(tmp, dpi=120, format="png"))
    plt.close(ax.figure)
    print(f"wrote {', '.join(str(out / n) for n in OUTPUT_FILES)}")
    return 0


def _savez(path, arrays: dict) -> None:
    """``np.savez`` to exactly ``path`` (given a name, numpy would append ``.npz``)."""
    import numpy as np

    with open(path, "wb") as file:
        np.savez(file, **arrays)
