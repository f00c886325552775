"""Hamiltonian Monte Carlo back-ends (NUTS and HMC) with several chains.

Chains are run one after another in this process, each with its own seed and its own
random initialisation (``init_to_uniform`` on (-2, 2) in the unconstrained space), so the
split-r_hat that ArviZ computes compares genuinely independent chains. Pyro's own
multi-chain mode is avoided: on a 2-core machine it falls back to sequential chains with a
warning anyway, and it needs a picklable model.

Tree depth: the prototype measured that NUTS at Pyro's default depth (10) did not finish
2 x 600 draws in 12 minutes on a 10x10 grid while depth 6 mixed (r_hat <= 1.02) in 98 s;
the posteriors of linear rewards are close to Gaussian, where short trajectories suffice.

Sufficient statistics: for a linear reward, the global model and full-length
demonstrations, the log-likelihood of n demonstrations is

    sum_i log P(x_i | theta) = theta . Phi - n log Z(theta) + const,
    Phi = sum_i sum_t phi(s_t, a_t),

so the potential energy -log p(theta) - theta . Phi + n log Z(theta) costs one exact
recursion per gradient, whatever n is. The model builds it
(:meth:`bayes_irl.models.DemonstrationModel.sufficient_statistics_potential`; the back-end
asks through :func:`sufficient_statistics_potential` and never reads model internals) and
:func:`run_mcmc` passes it to Pyro's NUTS/HMC as ``potential_fn`` (no model tracing per
gradient). It is used by default wherever the model offers it (``sufficient_statistics=None``,
the default; the posterior is the same, only cheaper); ``True`` requires it and ``False``
keeps the model-tracing path.
"""

from __future__ import annotations

import time

import numpy as np
import pyro
import torch
from pyro.infer import HMC, MCMC, NUTS

from bayes_irl.inference.posterior import Posterior
from bayes_irl.inference.sampler_stats import SamplerStatsRecorder

__all__ = ["run_mcmc", "run_nuts", "run_hmc", "sufficient_statistics_potential"]


def sufficient_statistics_potential(model, data):
    """Return ``(potential_fn, site_name, num_params)``, or None where it does not apply.

    Asks the model (:class:`bayes_irl.protocols.SufficientStatistics`): a model without
    ``sufficient_statistics_potential``, or whose method returns None, gets None. The site
    and its size come from ``model.latent_dims`` (one latent site).

    Args:
        model: the model.
        data: its prepared data.

    Returns:
        ``potential_fn({site_name: theta (D,)}) -> scalar`` equal to the negative log joint
        density up to a constant, the latent site's name, and D; or None.
    """
    method = getattr(model, "sufficient_statistics_potential", None)
    potential = None if method is None else method(data)
    if potential is None or len(model.latent_dims) != 1:
        return None
    ((site, (_, names)),) = model.latent_dims.items()
    return potential, site, len(names)


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
    num_samples: int = 500,
    warmup_steps: int = 500,
    num_chains: int = 2,
    max_tree_depth: int = 6,
    target_accept_prob: float = 0.95,
    num_leapfrog_steps: int | None = None,
    trajectory_length: float = 1.5,
    full_mass: bool = True,
    jit_compile: bool = False,
    seed: int = 0,
    progress_bar: bool = True,
    sufficient_statistics: bool | None = None,
    checkpoint=None,
) -> Posterior:
    """Sample the posterior with NUTS or HMC.

    Args:
        model: a bayes_irl model.
        data: its prepared data.
        kernel: ``"nuts"`` or ``"hmc"``.
        num_samples: draws kept per chain.
        warmup_steps: adaptation steps per chain (step size and diagonal mass matrix).
        num_chains: independent chains (>= 2 for r_hat).
        max_tree_depth: NUTS tree-depth cap (2**depth leapfrog steps at most).
        target_accept_prob: dual-averaging target. 0.95 rather than Pyro's 0.8: the
            curvature of the log-likelihood, n·Cov_theta[phi], grows in parts of the tails,
            and with a dense mass matrix the larger steps of 0.8 gave 2-5 divergent
            transitions per 2 x 1000 draws on the 5x5 gridworld; 0.95 gave none (2 seeds).
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
        sufficient_statistics: sample with :func:`sufficient_statistics_potential`
            (cost per gradient independent of the number of demonstrations). None
            (default): wherever the model offers it (e.g. a demonstration model with a
            linear reward, an exact global normaliser and full-length demonstrations; the
            posterior is the same, only cheaper); True:
            require it (ValueError where it does not apply); False: trace the model at
            every gradient.
        checkpoint: an :class:`~bayes_irl.inference.checkpoint.MCMCCheckpoint`: each
            finished chain (draws, statistics, adapted step size and mass matrix) is saved;
            on resume finished chains are reused, not rerun.

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
    if num_chains < 1 or num_samples < 1 or warmup_steps < 0:
        raise ValueError(
            "num_chains and num_samples must be >= 1 and warmup_steps >= 0; got "
            f"{num_chains}, {num_samples}, {warmup_steps}"
        )
    potential = None
    if sufficient_statistics is not False:
        potential = sufficient_statistics_potential(model, data)
        if potential is None and sufficient_statistics:
            raise ValueError(
                "sufficient_statistics=True needs a DemonstrationModel with a LinearReward "
                "(real-support prior), an exact global normaliser, given_initial_state=False "
                "and full-length demonstrations"
            )
    chains, diverging, step_sizes, accept, recorders = [], [], [], [], []
    start = time.perf_counter()
    key = {"seed": seed, "kernel": kernel, "num_samples": num_samples,
           "warmup_steps": warmup_steps, "max_tree_depth": max_tree_depth}
    for chain in range(num_chains):
        saved = None if checkpoint is None else checkpoint.load_chain(chain, key)
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
            checkpoint.save_chain(chain, key, {
                "draws": chains[-1], "diverging": div, "step_size": step_sizes[-1],
                "accept": accept[-1], "stats": recorders[-1].stats(),
                "inverse_mass_matrix": mcmc_kernel.inverse_mass_matrix})
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
        },
        extra={"num_divergences": int(np.sum(diverging))},
    )


def run_nuts(model, data, **options) -> Posterior:
    """NUTS: :func:`run_mcmc` with ``kernel="nuts"`` (the options of :func:`run_mcmc`)."""
    return run_mcmc(model, data, kernel="nuts", **options)


def run_hmc(model, data, **options) -> Posterior:
    """Fixed-trajectory-length HMC: :func:`run_mcmc` with ``kernel="hmc"``."""
    return run_mcmc(model, data, kernel="hmc", **options)
