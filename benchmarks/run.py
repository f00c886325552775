"""bayes_irl benchmarks: one entry point, a printed table and ``benchmarks/results.json``.

    .venv/bin/python benchmarks/run.py [--quick] [--only NAME ...]

NAME: ``imitation`` (vs imitation's MCE IRL), ``overhead`` (Pyro SVI step / bare torch),
``nuts`` (NUTS effective samples per second), ``scaling`` (time and memory curves, PNGs),
``importance_k`` (gradient time vs importance samples K, PNG),
``large`` (a 300x300 grid fitted by SVI, peak memory).

One torch thread everywhere: on the shared 2-core machine two threads were measured
10-200x slower under contention, and one thread makes CPU time (``time.process_time``)
a fair, load-robust cost measure. Every timing records the 1-minute load average.
Peak memory is the peak RSS of a fresh subprocess running only that configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from harness import ROOT, load, machine_info, make_world, run_worker  # noqa: E402
from imitation_comparison import (  # noqa: E402, F401 (the workers are run by --worker NAME)
    bench_imitation,
    worker_bayes_irl_fit,
    worker_return_of,
)

RESULTS = ROOT / "benchmarks" / "results.json"
# The PNGs go next to the results JSON (``--out``): benchmarks/ by default, so a smoke run
# with ``--out /tmp/x.json`` leaves the measured figures alone.
FIGURES = RESULTS.parent


# ---------------------------------------------------------------- 2. Pyro overhead
def bench_overhead(quick: bool) -> list[dict]:
    import pyro
    from pyro.infer import SVI, Trace_ELBO
    from pyro.infer.autoguide import AutoDelta
    from pyro.optim import Adam

    from bayes_irl.inference import ExactNormalizer
    from bayes_irl.models import DemonstrationModel, MaxEntTrajectory

    rows = []
    steps = 30 if quick else 100
    for size in (10, 20, 30):
        world = make_world(size)
        norm = ExactNormalizer(world.mdp)
        model = DemonstrationModel(world.reward_model, norm)
        data = model.prepare_data(world.sample_demonstrations(200, seed=1))
        pyro.clear_param_store()
        pyro.set_rng_seed(0)
        svi = SVI(model, AutoDelta(model), Adam({"lr": 0.01}), Trace_ELBO())
        svi.step(data)

        theta = torch.zeros(4, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([theta], lr=0.01)
        prior = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), 1.0)

        def bare(opt=opt, world=world, theta=theta, prior=prior, norm=norm, data=data):
            opt.zero_grad()
            # theta (1, D): one theta against the n demonstrations, as inside the demos plate
            dist = MaxEntTrajectory(theta.unsqueeze(-2), world.reward_model, norm)
            loss = -(prior.log_prob(theta).sum() + dist.log_prob(data).sum())
            loss.backward()
            opt.step()

        def timed(fn):
            walls, cpus = [], []
            for _ in range(steps):
                w, c = time.perf_counter(), time.process_time()
                fn()
                walls.append(time.perf_counter() - w)
                cpus.append(time.process_time() - c)
            return float(np.median(walls)), float(np.median(cpus))

        l0 = load()
        bare()
        # interleave to share the load conditions
        pw, pc = timed(lambda svi=svi, data=data: svi.step(data))
        bw, bc = timed(bare)
        pw2, pc2 = timed(lambda svi=svi, data=data: svi.step(data))
        bw2, bc2 = timed(bare)
        pyro_w, pyro_c = min(pw, pw2), min(pc, pc2)
        bare_w, bare_c = min(bw, bw2), min(bc, bc2)
        row = {"N": size, "S": size * size, "H": 2 * size, "demos": 200,
               "svi_step_ms_wall": 1e3 * pyro_w, "bare_ms_wall": 1e3 * bare_w,
               "svi_step_ms_cpu": 1e3 * pyro_c, "bare_ms_cpu": 1e3 * bare_c,
               "ratio_wall": pyro_w / bare_w, "ratio_cpu": pyro_c / bare_c,
               "loadavg": [l0, load()]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


# ---------------------------------------------------------------- 3. NUTS throughput
def bench_nuts(quick: bool) -> list[dict]:
    import arviz as az

    from bayes_irl.inference import ExactNormalizer
    from bayes_irl.inference.backends import run_mcmc
    from bayes_irl.models import DemonstrationModel

    world = make_world(10)
    model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
    data = model.prepare_data(world.sample_demonstrations(200, seed=1))
    warmup, draws = (100, 100) if quick else (300, 500)
    rows = []
    for sufficient in (True, False):
        l0 = load()
        w, c = time.perf_counter(), time.process_time()
        # Pyro's NUTS from a uniform start, chains one after another (init="uniform"), as
        # recorded; the default (Laplace start, parallel chains) is timed by user_path.sh
        post = run_mcmc(model, data, num_samples=draws, warmup_steps=warmup, num_chains=2,
                        max_tree_depth=6, progress_bar=False, sufficient_statistics=sufficient,
                        init="uniform")
        wall, cpu = time.perf_counter() - w, time.process_time() - c
        samples = post.samples["weights"].numpy()  # (chain, draw, K)
        ess_bulk = [float(az.ess(samples[..., k])) for k in range(samples.shape[-1])]
        rhat = [float(az.rhat(samples[..., k])) for k in range(samples.shape[-1])]
        row = {"grid": "10x10", "H": 20, "demos": 200, "chains": 2, "warmup": warmup,
               "draws": draws, "max_tree_depth": 6, "potential": post.attrs["potential"],
               "target_accept_prob": post.attrs.get("target_accept_prob"),
               "full_mass": post.attrs.get("full_mass"),
               "wall_s": wall, "cpu_s": cpu, "min_bulk_ess": min(ess_bulk),
               "max_rhat": max(rhat), "ess_per_s_wall": min(ess_bulk) / wall,
               "ess_per_s_cpu": min(ess_bulk) / cpu,
               "divergences": post.extra["num_divergences"], "loadavg": [l0, load()]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


# ---------------------------------------------------------------- 4. scaling curves
def worker_grad_step(size: int, horizon: int, demos: int, subsample: int | None,
                     repeats: int) -> dict:
    """Time one gradient of the log posterior (exact global normaliser) in a fresh process."""
    from bayes_irl.inference import ExactNormalizer
    from bayes_irl.models import MaxEntTrajectory

    world = make_world(size, horizon=horizon)
    norm = ExactNormalizer(world.mdp)
    theta = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    data = None
    if demos:
        gen = torch.Generator().manual_seed(0)
        # uniform random (valid) trajectories: scoring cost does not depend on realism
        from bayes_irl.soft_bellman import sample_maxent_trajectories

        data = sample_maxent_trajectories(world.mdp, torch.zeros(size * size, 5,
                                          dtype=torch.float64), demos, generator=gen)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        if data is None:
            loss = norm.log_normalizer(world.reward_model, theta)
        else:
            batch = data if subsample is None else data[torch.randint(demos, (subsample,))]
            scale = 1.0 if subsample is None else demos / subsample
            dist = MaxEntTrajectory(theta.unsqueeze(-2), world.reward_model, norm)
            loss = -scale * dist.log_prob(batch).sum()
        loss.backward()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
        theta.grad = None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"wall_s": float(np.min(walls)), "cpu_s": float(np.min(cpus)),
            "peak_rss_mb": peak, "rss_before_mb": base_rss, "loadavg": load()}


def bench_scaling(quick: bool) -> dict:
    curves: dict[str, list] = {"states": [], "horizon": [], "demos": []}
    sizes = (10, 32, 100) if quick else (10, 32, 100, 316)
    for size in sizes:
        res = run_worker("grad_step", {"size": size, "horizon": 100, "demos": 0,
                                       "subsample": None, "repeats": 3 if size < 300 else 1})
        curves["states"].append({"S": size * size, "H": 100, **res})
        print("states", size * size, res, flush=True)
    horizons = (10, 100) if quick else (10, 30, 100, 300, 500)
    for h in horizons:
        res = run_worker("grad_step", {"size": 32, "horizon": h, "demos": 0, "subsample": None,
                                       "repeats": 3})
        curves["horizon"].append({"S": 1024, "H": h, **res})
        print("horizon", h, res, flush=True)
    counts = (100, 1000) if quick else (100, 1000, 10_000, 100_000)
    for n in counts:
        for sub in (None, 100):
            if sub is not None and sub >= n:
                continue
            res = run_worker("grad_step", {"size": 10, "horizon": 20, "demos": n,
                                           "subsample": sub, "repeats": 5})
            curves["demos"].append({"S": 100, "H": 20, "demos": n, "subsample": sub, **res})
            print("demos", n, sub, res, flush=True)
    curves["importance_K"] = "see the importance_k section (run.py --only importance_k)"
    plot_scaling(curves)
    return curves


def plot_scaling(curves: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    st = curves["states"]
    ax = axes[0]
    ax.loglog([p["S"] for p in st], [p["cpu_s"] for p in st], "o-", label="CPU s / gradient")
    ax2 = ax.twinx()
    ax2.loglog([p["S"] for p in st], [p["peak_rss_mb"] for p in st], "s--", color="C1",
               label="peak RSS MB")
    ax.set(xlabel="states S (H = 100)", ylabel="CPU s per log Z + gradient")
    ax2.set_ylabel("peak RSS (MB)")
    ax.set_title("states")
    hz = curves["horizon"]
    axes[1].loglog([p["H"] for p in hz], [p["cpu_s"] for p in hz], "o-")
    axes[1].set(xlabel="horizon H (S = 1024)", ylabel="CPU s", title="horizon")
    dm = curves["demos"]
    for sub, style in ((None, "o-"), (100, "s--")):
        pts = [p for p in dm if p["subsample"] == sub]
        axes[2].loglog([p["demos"] for p in pts], [p["cpu_s"] for p in pts], style,
                       label="full batch" if sub is None else "subsample 100")
    axes[2].set(xlabel="demonstrations n (S = 100, H = 20)", ylabel="CPU s per gradient",
                title="demonstrations")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(FIGURES / "scaling.png", dpi=110)


# ---------------------------------------------------------------- 4b. importance samples K
IMPORTANCE_KS = (64, 128, 256, 512, 1024, 2048, 4096)


def worker_importance_step(num_samples: int | None, repeats: int) -> dict:
    """Time one gradient of -log p(demos | theta) with an importance (or exact) normaliser.

    10x10 gridworld (slip 0.1, H = 20, 4 features), 200 causal demos, theta = the true
    weights; same measurement as the ``demos`` scaling curve (forward + backward of
    ``MaxEntTrajectory.log_prob(demos).sum()``, best of ``repeats``). ``num_samples=None``
    is the exact global normaliser. The proposal is a :class:`PolicyProposal` set to the
    maximum causal entropy policy of the true reward (``soft_backup_``); drawing its bank
    is timed separately (``bank_s``) since a fit redraws it only on ``refresh``.
    """
    from bayes_irl import GridWorld
    from bayes_irl.inference import ExactNormalizer
    from bayes_irl.inference.normalizers.importance import ImportanceNormalizer, PolicyProposal
    from bayes_irl.models import MaxEntTrajectory

    world = GridWorld.create(size=10, slip=0.1, horizon=20, num_features=4, seed=0)
    mdp = world.mdp
    data = world.sample_demonstrations(200, seed=1).as_tensor()
    theta = world.true_weights.detach().clone().to(torch.float64).requires_grad_(True)
    exact = ExactNormalizer(mdp)
    true_r = world.reward_model.step_rewards(theta.detach())
    out: dict = {"K": num_samples}
    if num_samples is None:
        norm = exact
    else:
        proposal = PolicyProposal(mdp).soft_backup_(true_r)
        w, c = time.perf_counter(), time.process_time()
        norm = ImportanceNormalizer(proposal, num_samples=num_samples, khat_policy="ignore",
                                    seed=0)
        out["bank_s"] = time.perf_counter() - w
        out["bank_cpu_s"] = time.process_time() - c
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        dist = MaxEntTrajectory(theta.unsqueeze(-2), world.reward_model, norm)
        loss = -dist.log_prob(data).sum()
        loss.backward()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
        theta.grad = None
    with torch.no_grad():
        log_z = float(exact.log_normalizer(world.reward_model, theta))
        out["logZ_error"] = float(norm.log_normalizer(world.reward_model, theta)) - log_z
    if num_samples is not None:
        d = norm.diagnostics
        out["khat"], out["ess"] = float(d.khat), float(d.ess)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {**out, "wall_s": float(np.min(walls)), "cpu_s": float(np.min(cpus)),
            "peak_rss_mb": peak, "rss_before_mb": base_rss, "loadavg": load()}


def bench_importance_k(quick: bool) -> dict:
    ks = IMPORTANCE_KS[:3] if quick else IMPORTANCE_KS
    rows = []
    for k in (None, *ks):
        res = run_worker("importance_step", {"num_samples": k, "repeats": 5 if quick else 20})
        rows.append({"S": 100, "H": 20, "demos": 200, **res})
        print("importance_k", k, json.dumps(res), flush=True)
    plot_importance_k(rows)
    return {"machine": machine_info(), "rows": rows,
            "setup": "GridWorld.create(size=10, slip=0.1, horizon=20, num_features=4, seed=0), "
                     "200 causal demos, theta = true weights; one forward + backward of "
                     "-MaxEntTrajectory.log_prob(demos).sum(); K = None is ExactNormalizer; "
                     "proposal PolicyProposal.soft_backup_(true reward); best of repeats; "
                     "fresh process per point"}


def plot_importance_k(rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [p for p in rows if p.get("K") and "cpu_s" in p]
    exact = next((p for p in rows if p.get("K") is None and "cpu_s" in p), None)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.loglog([p["K"] for p in pts], [p["cpu_s"] for p in pts], "o-",
              label="ImportanceNormalizer")
    if exact:
        ax.axhline(exact["cpu_s"], color="C1", ls="--", label="ExactNormalizer")
    ax.set(xlabel="importance samples K (10x10, H = 20, 200 demos)",
           ylabel="CPU s per gradient", title="importance samples K")
    ax.legend()
    fig.tight_layout()
    fig.savefig(FIGURES / "scaling_importance_k.png", dpi=110)


# ---------------------------------------------------------------- 5. large grid
def worker_large_grid(size: int, horizon: int, steps: int) -> dict:
    from bayes_irl.inference import ExactNormalizer, run_svi
    from bayes_irl.models import DemonstrationModel

    world = make_world(size, horizon=horizon)
    model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
    data = model.prepare_data(world.sample_demonstrations(200, seed=1))
    w, c = time.perf_counter(), time.process_time()
    # Pyro's SVI loop from the guide's own start (init="prior"), as recorded: the default
    # would first fit the Laplace approximation and then run the NumPy loop
    run_svi(model, data, num_steps=steps, num_samples=10, progress_bar=False, init="prior")
    return {"S": size * size, "H": horizon, "svi_steps": steps,
            "wall_s_per_step": (time.perf_counter() - w) / steps,
            "cpu_s_per_step": (time.process_time() - c) / steps,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "loadavg": load()}


def bench_large(quick: bool) -> list[dict]:
    horizons = (100,) if quick else (100, 600)  # 600 = 2N, the gridworld default
    rows = []
    for horizon in horizons:
        res = run_worker("large_grid", {"size": 100 if quick else 300, "horizon": horizon,
                                        "steps": 3})
        print(json.dumps(res), flush=True)
        rows.append(res)
    return rows


BENCHES = {"imitation": bench_imitation, "overhead": bench_overhead, "nuts": bench_nuts,
           "scaling": bench_scaling, "importance_k": bench_importance_k, "large": bench_large}


def main(argv=None) -> int:
    global FIGURES
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small settings (a smoke test)")
    p.add_argument("--only", nargs="*", choices=sorted(BENCHES), help="run only these")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--args", help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(RESULTS),
                   help="results JSON path (the PNGs are written to its folder)")
    args = p.parse_args(argv)
    if args.worker:
        result = globals()[f"worker_{args.worker}"](**json.loads(args.args))
        result.setdefault("peak_rss_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        print(json.dumps(result))
        return 0
    names = args.only or list(BENCHES)
    out_path = Path(args.out)
    FIGURES = out_path.resolve().parent
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    if not (args.only and "machine" in results):  # --only merges into the existing file
        results["machine"] = machine_info()
        results["quick"] = args.quick
    start = time.perf_counter()
    for name in names:
        t = time.perf_counter()
        results[name] = BENCHES[name](args.quick)
        print(f"[{name}] {time.perf_counter() - t:.0f} s", flush=True)
        out_path.write_text(json.dumps(results, indent=1, default=float))
    if not args.only:
        results["total_wall_s"] = time.perf_counter() - start
    out_path.write_text(json.dumps(results, indent=1, default=float))
    sys.path.insert(0, str(Path(__file__).parent))
    from report import render

    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
