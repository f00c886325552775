"""Hamiltonian Monte Carlo back-ends (NUTS and HMC) with several chains.

Every model whose potential is deterministic samples with the library's kernels
(:mod:`~bayes_irl.inference.backends.nuts_kernel`,
:mod:`~bayes_irl.inference.backends.hmc_kernel`) on its
:class:`~bayes_irl.protocols.Potential` (:func:`bayes_irl.models.model_potential`: the
exact fast one, or the one traced from its Pyro program), the chains in parallel worker
processes (:mod:`bayes_irl.inference.backends.parallel_chains`). The default start is the
Laplace fit (its covariance the initial mass matrix, draws sized for a target bulk ESS);
``init="uniform"`` starts at z ~ U(-2, 2) with a longer warm-up.

Sufficient statistics: for a linear reward and an exact normaliser, the log-likelihood of
n demonstrations is

    sum_i log P(x_i | theta) = theta . Phi + sum_{t, s} W[t, s] V_t(s) - m log Z(theta),

with the summed feature counts Phi and a (T + 1, S) table W of where early-ending
demonstrations end and where given initial states start (m demonstrations have s_0
modelled; the causal model has only the W term), so the potential costs one exact
recursion per gradient, whatever n is. ``sufficient_statistics=True`` requires it (a
ValueError where the model does not offer it); ``False`` samples the traced potential.
"""

from __future__ import annotations

import math

import torch

from bayes_irl.inference.backends.laplace import LaplaceFit, laplace_start
from bayes_irl.inference.backends.parallel_chains import run_chains
from bayes_irl.inference.posterior import Posterior
from bayes_irl.models.potential import TracedPotential, model_potential
from bayes_irl.validation import positive_int

__all__ = ["run_mcmc", "run_nuts", "run_hmc"]


_NEEDS_STATISTICS = (
    "sufficient_statistics=True needs a model that offers a sufficient-statistics potential: "
    "a DemonstrationModel with a LinearReward (real-support prior) and an exact normaliser, "
    "or a Bradley-Terry PreferenceModel with a LinearReward, a fixed beta and no ties; "
    "leave sufficient_statistics=None to run on the potential traced from the model")


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

    The library's NUTS or HMC kernel on the model's potential, chains in parallel worker
    processes (:mod:`bayes_irl.inference.backends.parallel_chains`). Default
    (``init="laplace"``): the MAP and the Laplace covariance by L-BFGS first; each chain
    starts at a draw from that Gaussian with its covariance as the dense inverse mass
    matrix; a warm-up of 300 steps adapts the step size and, from the draws of its middle
    half, the mass matrix (Stan's windows); draws are sized for a bulk ESS of
    ``target_ess`` per parameter. ``init="uniform"`` (or a Laplace start that fails: a
    Hessian that is not positive definite at the MAP, in ``attrs["laplace_start"]``):
    chains start at z ~ U(-2, 2) with the identity as the first mass matrix, adapt it over
    500 warm-up steps and draw 1000 each.

    Args:
        model: a bayes_irl model.
        data: its prepared data.
        kernel: ``"nuts"`` or ``"hmc"``.
        num_samples: draws kept per chain; None (default): sized for ``target_ess`` from
            the Laplace start, 1000 from a uniform start.
        warmup_steps: adaptation steps per chain; None (default): 300 from the Laplace
            start, 500 from a uniform start (step size and mass matrix adapted on both).
        num_chains: independent chains (>= 2 for r_hat); keep it <= the CPU cores.
        max_tree_depth: NUTS tree-depth cap (2**depth leapfrog steps at most). None
            (default): 8 from the Laplace start, 6 from a uniform start.
        target_accept_prob: dual-averaging target. None (default): 0.99 for NUTS from the
            Laplace start, 0.95 otherwise. Far above Pyro's 0.8 because the curvature of the
            log-likelihood, n·Cov_theta[phi], can grow 20-800-fold within a few posterior
            sds of the mode on one side (random 3x3 and 5x5 gridworlds, 200
            demonstrations): with 0.95, depth 6 and the step size alone adapted, 21 of 60
            fits had divergent transitions; with these defaults 5 of 60, which say NOT
            CONVERGED (``benchmarks/nuts_divergences.py``).
        num_leapfrog_steps: HMC only, Pyro's convention: leapfrog steps at the initial
            step size 1, i.e. a trajectory length of ``num_leapfrog_steps`` (kept fixed
            while the step size adapts). Default None: use ``trajectory_length``.
        trajectory_length: HMC only: integration time per proposal, in the space
            whitened by the adapted mass matrix (where the posterior sd is ~1, so 1.5 is
            about a quarter to half an orbit).
        seed: chain c is seeded with ``seed + c``.
        progress_bar: accepted like every back-end's; the chains run in worker processes
            and report when done.
        sufficient_statistics: None (default): the model's potential, fast where it
            offers sufficient statistics, traced from its program otherwise; True:
            require the sufficient-statistics potential (ValueError where it does not
            apply); False: the potential traced from the model even where a fast one
            exists.
        checkpoint: a :class:`~bayes_irl.inference.checkpoint.Checkpoint` (e.g. an
            ``MCMCCheckpoint``): every chain's kernel state (adaptation, position, RNG) and
            draws so far are saved after the warm-up, every ``checkpoint.every`` draws and
            on SIGINT/SIGTERM, and a resumed run continues the chains bit-identically with
            no new warm-up.
        init: ``"laplace"`` (default) or ``"uniform"`` (see above).
        adapt_mass_matrix: also adapt the mass matrix during warm-up (default None: from
            the Laplace start when ``warmup_steps`` >= 100; always from a uniform start).
        target_ess: with ``num_samples=None`` from the Laplace start: the smallest bulk
            ESS over the parameters to reach.
        max_samples: with ``num_samples=None``: the most draws per chain.
        parallel: one worker process per chain (default None: with >= 2 chains and >= 2
            cores).

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
    if sufficient_statistics and potential.kind != "sufficient_statistics":
        raise ValueError(_NEEDS_STATISTICS)
    if sufficient_statistics is False and potential.kind != "traced":
        potential = TracedPotential(model, data)
    if num_leapfrog_steps is not None:
        # Pyro's convention: leapfrog steps at the initial step size 1 = the trajectory length
        num_leapfrog_steps = positive_int(num_leapfrog_steps, "num_leapfrog_steps")
        trajectory_length = float(num_leapfrog_steps)
    laplace = None
    if init == "laplace":
        laplace, no_start = laplace_start(model, data, potential=potential)
    nuts = kernel == "nuts"
    if laplace is not None:
        return _sample_chains(
            model, data, laplace, kernel=kernel, num_samples=num_samples,
            warmup_steps=300 if warmup_steps is None else warmup_steps,
            num_chains=num_chains,
            max_tree_depth=(8 if nuts else 6) if max_tree_depth is None else max_tree_depth,
            target_accept_prob=(0.99 if nuts else 0.95) if target_accept_prob is None
            else target_accept_prob,
            trajectory_length=trajectory_length,
            seed=seed, adapt_mass_matrix=adapt_mass_matrix, target_ess=target_ess,
            max_samples=max_samples, parallel=parallel, checkpoint=checkpoint,
        )
    # a uniform start: z ~ U(-2, 2) per chain, the identity as the first mass matrix, a
    # longer warm-up adapting it, a fixed number of draws
    size, dtype = potential.layout.size, potential.layout.dtype
    start = LaplaceFit(layout=potential.layout, loc=torch.zeros(size, dtype=dtype),
                       covariance=torch.eye(size, dtype=dtype), potential=potential,
                       grad_norm=math.nan, newton_decrement=math.nan, num_evaluations=0,
                       num_newton_steps=0, converged=False, wall_time=0.0)
    return _sample_chains(
        model, data, start, kernel=kernel,
        num_samples=1000 if num_samples is None else num_samples,
        warmup_steps=500 if warmup_steps is None else warmup_steps,
        num_chains=num_chains,
        max_tree_depth=6 if max_tree_depth is None else max_tree_depth,
        target_accept_prob=0.95 if target_accept_prob is None else target_accept_prob,
        trajectory_length=trajectory_length, seed=seed,
        adapt_mass_matrix=True if adapt_mass_matrix is None else adapt_mass_matrix,
        target_ess=target_ess, max_samples=max_samples, parallel=parallel,
        checkpoint=checkpoint, start="uniform", no_start=no_start,
    )


def _sample_chains(model, data, laplace, *, kernel, num_samples, warmup_steps, num_chains,
              max_tree_depth, target_accept_prob, trajectory_length, seed, adapt_mass_matrix,
              target_ess, max_samples, parallel, checkpoint=None, start: str = "laplace",
              no_start: str = "") -> Posterior:
    """The chains of :func:`run_mcmc`, from the Laplace fit or a uniform start.

    ``start="laplace"``: each chain at a draw from ``laplace`` with its covariance as the
    mass matrix; ``"uniform"``: at z ~ U(-2, 2), ``laplace`` then holds zeros and I.
    """
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
        "start": start,
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
            # NUTS records its tree-depth cap (the convergence check reads it); HMC has none
            **({"max_tree_depth": max_tree_depth} if kernel == "nuts" else {}),
            "full_mass": 1,
            "adapt_mass_matrix": int(adapt),
            "target_accept_prob": target_accept_prob,
            "acceptance_rate": ", ".join(f"{a:.3f}" for a in run.acceptance_rate),
            "wall_time_s": run.wall_time + laplace.wall_time,
            "laplace_time_s": laplace.wall_time,
            "potential": laplace.potential.kind,
            "init": start,
            **({"laplace_start": no_start} if no_start else {}),
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
    return run_mcmc(model, data, kernel="hmc", **options)
