"""Hamiltonian Monte Carlo back-ends (NUTS and HMC) with several chains.

Default (``init="laplace"``), for every model whose potential is deterministic: the
model's :class:`~bayes_irl.protocols.Potential` (:func:`bayes_irl.models.model_potential`:
its exact fast one, or the one traced from its Pyro program), the Laplace start, the
Laplace covariance as the initial mass matrix, a windowed warm-up, parallel chains and
draws sized for a target bulk ESS (:mod:`bayes_irl.inference.backends.parallel_chains`).
The rest of this note describes the model-tracing path of Pyro's kernels (``init="uniform"``,
``sufficient_statistics=False``, or a model whose Laplace start fails: a Hessian that is
not positive definite at the MAP, recorded in ``attrs["laplace_start"]``).

Chains are run one after another in this process, each with its own seed and its own
random initialisation (``init_to_uniform`` on (-2, 2) in the unconstrained space), so the
split-r_hat that ArviZ computes compares genuinely independent chains. Pyro's own
multi-chain mode is avoided: on a 2-core machine it falls back to sequential chains with a
warning anyway, and it needs a picklable model.

Tree depth: the prototype measured that NUTS at Pyro's default depth (10) did not finish
2 x 600 draws in 12 minutes on a 10x10 grid while depth 6 mixed (r_hat <= 1.02) in 98 s;
the posteriors of linear rewards are close to Gaussian, where short trajectories suffice.

Sufficient statistics: for a linear reward and an exact normaliser, the log-likelihood of
n demonstrations is

    sum_i log P(x_i | theta) = theta . Phi + sum_{t, s} W[t, s] V_t(s) - m log Z(theta),

with the summed feature counts Phi and a (T + 1, S) table W of where early-ending
demonstrations stop and where given initial states start (m demonstrations have s_0
modelled; the causal model has only the W term), so the potential costs one exact
recursion per gradient, whatever n is. ``sufficient_statistics=True`` requires it (a
ValueError where the model does not offer it); ``False`` keeps the model-tracing path.
"""

from __future__ import annotations

import time

import numpy as np
import pyro
import torch
from pyro.infer import HMC, MCMC, NUTS

from bayes_irl.inference.backends.laplace import laplace_start, sufficient_statistics_potential
from bayes_irl.inference.backends.parallel_chains import run_chains
from bayes_irl.inference.posterior import Posterior
from bayes_irl.inference.pyro_sampler_stats import SamplerStatsRecorder
from bayes_irl.models.potential import model_potential

__all__ = ["run_mcmc", "run_nuts", "run_hmc", "sufficient_statistics_potential"]


_NEEDS_STATISTICS = (
    "sufficient_statistics=True needs a model that offers a sufficient-statistics potential: "
    "a DemonstrationModel with a LinearReward (real-support prior) and an exact normaliser, "
    "or a Bradley-Terry PreferenceModel with a LinearReward, a fixed beta and no ties; "
    "leave sufficient_statistics=None to run on the potential traced from the model")


def _initial_params(model, data, site: str, dim: int) -> dict:
    """``init_to_uniform(-2, 2)`` of the latent site, in the dtype/device the model samples.

    The dtype and device come from one trace of the model (log-densities are not computed);
    the RNG is forked around it, so the chains' random streams are not shifted.
    """
    with torch.random.fork_rng(devices=[]):
        value = pyro.poutine.trace(model).get_trace(data).nodes[site]["value"]
    return {site: torch.rand(dim, dtype=value.dtype, device=value.device) * 4 - 2}


def run_mcmc(
    model,
    data,
    *,
    kernel: str = "nuts",
    num_samples: int | None = None,
    warmup_steps: int | None = None,
    num_chains: int = 2,
    max_tree_depth: int | None = None,
    target_accept_prob: float | None = None,
    num_leapfrog_steps: int | None = None,
    trajectory_length: float = 1.5,
    full_mass: bool = True,
    jit_compile: bool = False,
    seed: int = 0,
    progress_bar: bool = True,
    sufficient_statistics: bool | None = None,
    checkpoint=None,
    init: str = "laplace",
    adapt_mass_matrix: bool | None = None,
    target_ess: float = 400.0,
    max_samples: int = 5000,
    parallel: bool | None = None,
) -> Posterior:
    """Sample the posterior with NUTS or HMC.

    Fast default (wherever the model offers a cheap potential, ``init="laplace"``): the
    MAP and the Laplace covariance by L-BFGS first; each chain starts at a draw from that
    Gaussian with its covariance as the dense inverse mass matrix; a warm-up of 300 steps
    adapts the step size and, from the draws of its middle half, the mass matrix (Stan's
    windows); chains run in parallel worker processes; draws are sized for a bulk ESS of
    ``target_ess`` per parameter (see
    :mod:`bayes_irl.inference.backends.parallel_chains`). Elsewhere (the model-tracing
    path, or ``init="uniform"``) chains start from ``init_to_uniform``, adapt a dense mass
    matrix over 500 warm-up steps and draw 1000 each, one after another.

    Args:
        model: a bayes_irl model.
        data: its prepared data.
        kernel: ``"nuts"`` or ``"hmc"``.
        num_samples: draws kept per chain; None (default): sized for ``target_ess`` on
            the fast path, 1000 on the model-tracing path.
        warmup_steps: adaptation steps per chain; None (default): 300 on the fast path,
            500 otherwise (step size and mass matrix adapted on both).
        num_chains: independent chains (>= 2 for r_hat); keep it <= the CPU cores for the
            parallel fast path.
        max_tree_depth: NUTS tree-depth cap (2**depth leapfrog steps at most). None
            (default): 8 for the fast path's NUTS, 6 otherwise.
        target_accept_prob: dual-averaging target. None (default): 0.99 for the fast
            path's NUTS, 0.95 otherwise. Far above Pyro's 0.8 because the curvature of the
            log-likelihood, n·Cov_theta[phi], can grow 20-800-fold within a few posterior
            sds of the mode on one side (random 3x3 and 5x5 gridworlds, 200
            demonstrations): with 0.95, depth 6 and the step size alone adapted, 21 of 60
            fits had divergent transitions; with these defaults 5 of 60, which say NOT
            CONVERGED (``benchmarks/nuts_divergences.py``).
        num_leapfrog_steps: HMC only: leapfrog steps at Pyro's *initial* step size 1,
            i.e. a trajectory length of ``num_leapfrog_steps`` (Pyro keeps the length fixed
            while the step size adapts). Default None: use ``trajectory_length``.
        trajectory_length: HMC only: integration time per proposal, in the space
            whitened by the adapted mass matrix (where the posterior sd is ~1, so 1.5 is
            about a quarter to half an orbit).
        full_mass: adapt a dense mass matrix (default). Linear reward weights are strongly
            correlated a posteriori (correlations to -0.76 measured); a diagonal mass
            matrix then needs many more leapfrog steps per effective sample.
        jit_compile: use Pyro's JIT for the potential energy.
        seed: chain c is seeded with ``seed + c``.
        progress_bar: Pyro's per-chain progress bar.
        sufficient_statistics: None (default): the model's potential, fast where it
            offers sufficient statistics, traced from its program otherwise; True:
            require the sufficient-statistics potential (ValueError where it does not
            apply); False: Pyro's kernels tracing the model at every gradient.
        checkpoint: a :class:`~bayes_irl.inference.checkpoint.Checkpoint` (e.g. an
            ``MCMCCheckpoint``). Fast path: every chain's kernel state (adaptation,
            position, RNG) and draws so far are saved after the
            warm-up, every ``checkpoint.every`` draws and on SIGINT/SIGTERM, and a resumed
            run continues the chains bit-identically with no new warm-up. Model-tracing
            path: each finished chain (draws, statistics, adapted step size and mass
            matrix) is saved; on resume finished chains are reused, not rerun.
        init: ``"laplace"`` (default): the fast path above where a potential exists;
            ``"uniform"``: Pyro's ``init_to_uniform`` and its own adaptation (the former
            default).
        adapt_mass_matrix: fast path: also adapt the mass matrix during warm-up (default
            None: when ``warmup_steps`` >= 100).
        target_ess: fast path with ``num_samples=None``: the smallest bulk ESS over the
            parameters to reach.
        max_samples: fast path with ``num_samples=None``: the most draws per chain.
        parallel: fast path: one worker process per chain (default None: with >= 2
            chains and >= 2 cores).

    Returns:
        A :class:`Posterior` with ``method`` = kernel, sample_stats ``diverging`` and
        ``step_size`` per draw and the acceptance rate per chain in attrs.

    Example:
        >>> from bayes_irl import GridWorld
        >>> from bayes_irl.models import DemonstrationModel
        >>> from bayes_irl.inference import ExactNormalizer
        >>> world = GridWorld.create(size=3, horizon=4, seed=0)
        >>> model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
        >>> data = model.prepare_data(world.sample_demonstrations(50))
        >>> post = run_mcmc(model, data, num_samples=20, warmup_steps=20, progress_bar=False)
        >>> post.samples["weights"].shape
        torch.Size([2, 20, 4])
    """
    if kernel not in ("nuts", "hmc"):
        raise ValueError(f"kernel must be 'nuts' or 'hmc'; got {kernel!r}")
    no_start = ""
    if init not in ("laplace", "uniform"):
        raise ValueError(f"init must be 'laplace' or 'uniform'; got {init!r}")
    potential = model_potential(model, data)
    if not potential.deterministic:
        raise ValueError(
            f"{kernel.upper()} needs a deterministic log density: this model's potential is "
            "an estimate (an importance normaliser drawing a fresh bank per evaluation, "
            "fresh_bank=True), which HMC's accept step cannot use; use method='svi', or a "
            "fixed bank")
    if init == "laplace" and sufficient_statistics is not False:
        if sufficient_statistics and potential.kind != "sufficient_statistics":
            raise ValueError(_NEEDS_STATISTICS)
        laplace, no_start = laplace_start(model, data, potential=potential)
        if laplace is not None:
            fast_nuts = kernel == "nuts"
            return _run_fast(
                model, data, laplace, kernel=kernel, num_samples=num_samples,
                warmup_steps=300 if warmup_steps is None else warmup_steps,
                num_chains=num_chains,
                max_tree_depth=(8 if fast_nuts else 6) if max_tree_depth is None
                else max_tree_depth,
                target_accept_prob=(0.99 if fast_nuts else 0.95) if target_accept_prob is None
                else target_accept_prob,
                trajectory_length=trajectory_length,
                seed=seed, adapt_mass_matrix=adapt_mass_matrix, target_ess=target_ess,
                max_samples=max_samples, parallel=parallel, checkpoint=checkpoint,
            )
    num_samples = 1000 if num_samples is None else num_samples
    warmup_steps = 500 if warmup_steps is None else warmup_steps
    max_tree_depth = 6 if max_tree_depth is None else max_tree_depth
    target_accept_prob = 0.95 if target_accept_prob is None else target_accept_prob
    if num_chains < 1 or num_samples < 1 or warmup_steps < 0:
        raise ValueError(
            "num_chains and num_samples must be >= 1 and warmup_steps >= 0; got "
            f"{num_chains}, {num_samples}, {warmup_steps}"
        )
    potential = None
    if sufficient_statistics is not False:
        potential = sufficient_statistics_potential(model, data)
        if potential is None and sufficient_statistics:
            raise ValueError(_NEEDS_STATISTICS)
    chains, diverging, step_sizes, accept, recorders = [], [], [], [], []
    start = time.perf_counter()
    key = {"seed": seed, "kernel": kernel, "num_samples": num_samples,
           "warmup_steps": warmup_steps, "max_tree_depth": max_tree_depth}
    finished: dict[int, dict] = {}  # the chains done, as the checkpoint holds them
    if checkpoint is not None:
        saved = checkpoint.begin("pyro_mcmc", key, on_mismatch="warn")
        finished = {} if saved is None else dict(saved[0])
    for chain in range(num_chains):
        saved = finished.get(chain)
        if saved is not None:  # finished before an interruption: reuse, do not rerun
            chains.append(saved["draws"])
            diverging.append(saved["diverging"])
            step_sizes.append(saved["step_size"])
            accept.append(saved["accept"])
            recorders.append(SamplerStatsRecorder.restored(saved["stats"]))
            continue
        pyro.set_rng_seed(seed + chain)
        pyro.clear_param_store()
        target = {"model": model} if potential is None else {"potential_fn": potential[0]}
        initial = None
        if potential is not None:
            _, site, dim = potential
            # init_to_uniform(-2, 2), as Pyro does for the model path
            initial = _initial_params(model, data, site, dim)
        if kernel == "nuts":
            mcmc_kernel = NUTS(
                **target,
                full_mass=full_mass,
                max_tree_depth=max_tree_depth,
                target_accept_prob=target_accept_prob,
                jit_compile=jit_compile,
                ignore_jit_warnings=True,
            )
        else:
            length = {"num_steps": num_leapfrog_steps} if num_leapfrog_steps else {
                "trajectory_length": trajectory_length}
            mcmc_kernel = HMC(
                **target,
                **length,
                full_mass=full_mass,
                target_accept_prob=target_accept_prob,
                jit_compile=jit_compile,
                ignore_jit_warnings=True,
            )
        recorders.append(SamplerStatsRecorder())  # tree depth + energy for the guards
        recorders[-1].attach(mcmc_kernel)
        mcmc = MCMC(
            mcmc_kernel,
            hook_fn=recorders[-1].hook,
            num_samples=num_samples,
            warmup_steps=warmup_steps,
            num_chains=1,
            disable_progbar=not progress_bar,
            initial_params=initial,
        )
        if potential is None:
            mcmc.run(data)
        else:
            mcmc.run()
        chains.append({k: v.detach() for k, v in mcmc.get_samples().items()})
        diag = mcmc.diagnostics()
        div = np.zeros(num_samples, dtype=bool)
        div[np.asarray(diag.get("divergences", {}).get("chain 0", []), dtype=int)] = True
        diverging.append(div)
        step_sizes.append(np.full(num_samples, float(mcmc_kernel.step_size)))
        accept.append(float(diag.get("acceptance rate", {}).get("chain 0", np.nan)))
        if checkpoint is not None:
            finished[chain] = {
                "draws": chains[-1], "diverging": div, "step_size": step_sizes[-1],
                "accept": accept[-1], "stats": recorders[-1].stats(),
                "inverse_mass_matrix": mcmc_kernel.inverse_mass_matrix}
            checkpoint.save(finished, {"chains_done": sorted(finished)})
    wall = time.perf_counter() - start
    latent = set(model.latent_dims)
    samples = {k: torch.stack([c[k] for c in chains]) for k in chains[0] if k in latent}
    return Posterior(
        samples=samples,
        method=kernel,
        model=model,
        data=data,
        sample_stats={"diverging": np.stack(diverging), "step_size": np.stack(step_sizes),
                      **{k: np.stack([r.stats()[k] for r in recorders])
                         for k in recorders[0].stats()}},
        attrs={
            "seed": seed,
            "num_chains": num_chains,
            "num_samples": num_samples,
            "warmup_steps": warmup_steps,
            "max_tree_depth": max_tree_depth,
            "full_mass": int(full_mass),
            "target_accept_prob": target_accept_prob,
            "acceptance_rate": ", ".join(f"{a:.3f}" for a in accept),
            "wall_time_s": wall,
            "potential": "model" if potential is None else "sufficient_statistics",
            **({"laplace_start": no_start} if no_start else {}),
        },
        extra={"num_divergences": int(np.sum(diverging))},
    )


def _run_fast(model, data, laplace, *, kernel, num_samples, warmup_steps, num_chains,
              max_tree_depth, target_accept_prob, trajectory_length, seed, adapt_mass_matrix,
              target_ess, max_samples, parallel, checkpoint=None) -> Posterior:
    """The fast path of :func:`run_mcmc`: Laplace start, mass matrix, parallel chains."""
    if num_chains < 1 or (num_samples is not None and num_samples < 1) or warmup_steps < 0:
        raise ValueError(
            "num_chains and num_samples must be >= 1 and warmup_steps >= 0; got "
            f"{num_chains}, {num_samples}, {warmup_steps}"
        )
    if not target_ess > 0 or max_samples < 1:
        raise ValueError(f"target_ess must be > 0 and max_samples >= 1; got {target_ess}, "
                         f"{max_samples}")
    adapt = warmup_steps >= 100 if adapt_mass_matrix is None else bool(adapt_mass_matrix)
    dim = laplace.loc.shape[0]
    job = {
        "potential": laplace.potential,
        "loc": laplace.loc,
        "cov": laplace.covariance,
        "kernel": kernel,
        "seed": seed,
        "warmup_steps": warmup_steps,
        "adapt_mass_matrix": adapt,
        "target_accept_prob": target_accept_prob,
        # in the whitened space the posterior is ~N(0, I): a step of about D^(-1/4) (the
        # optimal scaling for Gaussian targets) before the step-size search refines it
        "step_size": float(dim) ** -0.25,
        "max_tree_depth": max_tree_depth,
        "trajectory_length": trajectory_length,
    }
    run = run_chains(job, num_chains=num_chains, num_samples=num_samples,
                     target_ess=target_ess, max_samples=max_samples, parallel=parallel,
                     checkpoint=checkpoint)
    dtype = laplace.loc.dtype
    draws = run.draws.shape[1]
    return Posterior(
        samples=laplace.constrain(torch.as_tensor(run.draws, dtype=dtype)),
        method=kernel,
        model=model,
        data=data,
        # the kernels' info per draw under ArviZ's names; not their lp (-U in the
        # unconstrained space, Jacobian included): the Posterior's lp is the model's log
        # joint
        sample_stats={k: v for k, v in run.stats.items() if k != "lp"},
        attrs={
            "seed": seed,
            "num_chains": num_chains,
            "num_samples": draws,
            "warmup_steps": warmup_steps,
            "max_tree_depth": max_tree_depth,
            "full_mass": 1,
            "adapt_mass_matrix": int(adapt),
            "target_accept_prob": target_accept_prob,
            "acceptance_rate": ", ".join(f"{a:.3f}" for a in run.acceptance_rate),
            "wall_time_s": run.wall_time + laplace.wall_time,
            "laplace_time_s": laplace.wall_time,
            "potential": laplace.potential.kind,
            "init": "laplace",
            "parallel_chains": int(run.parallel),
            "sampler": run.sampler,
            "target_ess": target_ess if num_samples is None else float("nan"),
            "min_ess_bulk": run.min_ess_bulk,
            "draw_blocks": ", ".join(str(b) for b in run.blocks),
            **({} if run.resumed_draws is None else {"resumed_draws": run.resumed_draws}),
        },
        extra={
            "num_divergences": int(run.diverging.sum()),
            "laplace": laplace,
        },
    )


def run_nuts(model, data, **options) -> Posterior:
    """NUTS: :func:`run_mcmc` with ``kernel="nuts"`` (the options of :func:`run_mcmc`)."""
    return run_mcmc(model, data, kernel="nuts", **options)


def run_hmc(model, data, **options) -> Posterior:
    """Fixed-trajectory-length HMC: :func:`run_mcmc` with ``kernel="hmc"``."""
    posterior = run_mcmc(model, data, kernel="hmc", **options)
    # fixed-length trajectories have no tree-depth cap: nothing for the tree-depth check
    posterior.attrs.pop("max_tree_depth", None)
    return posterior
