"""NUTS/HMC chains on a model's potential, started from the Laplace fit, in worker processes.

The default of :func:`bayes_irl.inference.backends.mcmc.run_mcmc` for every model whose
potential is deterministic (:func:`bayes_irl.models.model_potential`: the exact fast one,
or the one traced from the Pyro program):

* the MAP and the Laplace covariance Sigma come first
  (:func:`bayes_irl.inference.backends.laplace.model_laplace`);
* chain c starts at one draw from N(MAP, Sigma) (seed ``seed + c``), so the chains start
  dispersed like the posterior and split-r_hat compares independent starts;
* Sigma is the initial dense inverse mass matrix: in the whitened space the posterior is
  close to N(0, I); the warm-up (300 steps by default) adapts the step size by dual
  averaging and, with ``adapt_mass_matrix`` (the default), replaces Sigma by the
  covariance of the draws of its middle half (:func:`warm_up`): where the posterior is
  skewed, the mode's curvature misstates the typical set;
* each chain runs in its own worker process (``fork``; one torch thread each), so two
  chains on two cores take the time of one;
* draws are sized for a target bulk ESS (400 per parameter by default): a first block,
  then more draws per chain, estimated from the ESS per draw so far, until the smallest
  bulk ESS reaches the target and the largest r_hat is below 1.01, or the cap.

NUTS runs the NumPy NUTS of :mod:`bayes_irl.inference.backends.lean_nuts` on the
potential's ``value_and_grad`` (the same algorithm without Pyro's ~0.9 ms of bookkeeping
per leapfrog step; ``job["sampler"] = "pyro"`` keeps Pyro's); HMC runs Pyro's kernel on
the potential's torch adapter (``potential_fn``) over the flat vector z.

Each chain keeps its own RNG state (the NumPy sampler its own generator; a Pyro chain's
state is swapped in around its transitions), so a chain's draws do not depend on the other
chains or on whether they run in workers. With an
:class:`~bayes_irl.inference.checkpoint.MCMCCheckpoint` the complete state of every chain
(the sampler's adaptation, position and counters, its RNG and its draws so far) is saved
after the warm-up, every ``checkpoint.every`` draws and on SIGINT/SIGTERM (workers ignore
both signals; the parent saves at the next chunk boundary), and a resumed run continues
the chains from it bit-identically.
"""

from __future__ import annotations

import contextlib
import copy
import math
import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass

import arviz as az
import numpy as np
import pyro
import pyro.util
import torch
from pyro.infer import HMC, NUTS

from bayes_irl.inference.backends.lean_nuts import LeanNUTS
from bayes_irl.inference.checkpoint import FitInterrupted
from bayes_irl.inference.sampler_stats import SamplerStatsRecorder

__all__ = ["ChainRun", "run_chains"]


@dataclass
class ChainRun:
    """What :func:`run_chains` returns.

    Attributes:
        draws: shape (chains, draws, D).
        diverging: shape (chains, draws), bool.
        stats: ``tree_depth``, ``n_steps``, ``energy`` per draw, each (chains, draws).
        step_size: the adapted step size per chain, shape (chains,).
        acceptance_rate: mean acceptance probability per chain, shape (chains,).
        num_warmup: warm-up steps per chain.
        blocks: draws per chain requested in each round (the ESS-driven extension).
        min_ess_bulk: the smallest bulk ESS over the D parameters at the end.
        parallel: whether the chains ran in worker processes.
        wall_time: seconds for warm-up and sampling (the Laplace fit excluded).
        sampler: ``"numpy_nuts"`` (:mod:`~bayes_irl.inference.backends.lean_nuts`) or
            ``"pyro"``.
        resumed_draws: draws per chain restored from a checkpoint (None: a fresh run).
    """

    draws: np.ndarray
    diverging: np.ndarray
    stats: dict
    step_size: np.ndarray
    acceptance_rate: np.ndarray
    num_warmup: int
    blocks: list
    min_ess_bulk: float
    parallel: bool
    wall_time: float
    sampler: str = "pyro"
    resumed_draws: int | None = None


_SITE = "z"
"""The one site Pyro's kernels see: the potential's flat unconstrained vector."""


def _lean_gradient(job: dict):
    """``z -> (U, dU/dz)`` in NumPy where the NumPy NUTS applies, else None.

    It applies to NUTS unless ``job["sampler"] == "pyro"``; HMC runs on Pyro's kernel.
    """
    if job["kernel"] != "nuts" or job.get("sampler", "auto") == "pyro":
        return None
    return job["potential"].value_and_grad


def warm_up(sampler: LeanNUTS, steps: int, *, adapt_mass_matrix: bool) -> None:
    """Adapt ``sampler``'s step size (and mass matrix) over ``steps`` transitions.

    Without ``adapt_mass_matrix``: dual averaging of the step size throughout. With it,
    three windows as in Stan: the first 25% adapt the step size only, the draws of the
    next 50% give the mass matrix (:meth:`LeanNUTS.rewhiten`), and the last 25% adapt
    the step size afresh for it (under 20 steps: the step size only).
    """

    def transitions(num: int, draws: list | None = None) -> None:
        for _ in range(num):
            stats = sampler.sample()
            sampler.adapt(stats["accept"])
            if draws is not None:
                draws.append(stats["theta"])

    if adapt_mass_matrix and steps >= 20:  # fewer leave too few draws for a covariance
        first, middle = steps // 4, steps // 2
        transitions(first)
        draws: list = []
        transitions(middle, draws)
        sampler.rewhiten(np.stack(draws))
        steps -= first + middle
    transitions(steps)
    sampler.end_adaptation()


class _LeanChain:
    """One chain of the NumPy NUTS (:class:`LeanNUTS`), warmed up, drawing on request.

    ``saved``: a :meth:`state` from a checkpoint; the chain continues from it (no
    warm-up).
    """

    def __init__(self, job: dict, chain: int, value_and_grad, saved: dict | None = None) -> None:
        torch.set_num_threads(1)
        if saved is not None:  # the adapted sampler, mid-run, exactly as it was saved
            self.sampler = LeanNUTS.__new__(LeanNUTS)
            vars(self.sampler).update(copy.deepcopy(saved["sampler"]))
            self.sampler._value_and_grad = value_and_grad
            self.num_draws = saved["num_draws"]
            self.divergences = list(saved["divergences"])
            self.accepts = list(saved["accepts"])
            return
        rng = np.random.default_rng(job["seed"] + chain)
        loc = job["loc"].numpy()
        cov = job["cov"].numpy()
        start = loc + np.linalg.cholesky(cov) @ rng.standard_normal(loc.shape[0])
        self.sampler = LeanNUTS(
            value_and_grad, loc=loc, cov=cov, start=start, seed=job["seed"] + chain,
            max_tree_depth=job["max_tree_depth"], target_accept_prob=job["target_accept_prob"],
            step_size=job["step_size"])
        warm_up(self.sampler, job["warmup_steps"], adapt_mass_matrix=job["adapt_mass_matrix"])
        self.num_draws = 0
        self.divergences: list[int] = []
        self.accepts: list[float] = []

    def state(self) -> dict:
        """Everything the chain's next draws depend on (picklable).

        The gradient function is live code, supplied again on restore.
        """
        sampler = {k: v for k, v in vars(self.sampler).items() if k != "_value_and_grad"}
        return {
            "sampler": copy.deepcopy(sampler),
            "num_draws": self.num_draws,
            "divergences": list(self.divergences),
            "accepts": list(self.accepts),
        }

    def draw(self, num: int) -> dict:
        out = np.empty((num, self.sampler.loc.shape[0]))
        stats = {"tree_depth": np.empty(num, dtype=np.int64),
                 "n_steps": np.empty(num, dtype=np.int64), "energy": np.empty(num)}
        for i in range(num):
            step = self.sampler.sample()
            out[i] = step["theta"]
            for name in stats:
                stats[name][i] = step[name]
            if step["diverging"]:
                self.divergences.append(self.num_draws + i)
            self.accepts.append(step["accept"])
        self.num_draws += num
        return {
            "draws": out,
            "stats": stats,
            "divergences": np.asarray(self.divergences, dtype=int),
            "accept": float(np.mean(self.accepts)),
            "step_size": float(self.sampler.step_size),
            "state": self.state(),
        }


def _make_chain(job: dict, chain: int, saved: dict | None = None):
    """The NumPy NUTS chain where it applies (see :func:`_lean_gradient`), else Pyro's."""
    value_and_grad = _lean_gradient(job)
    if value_and_grad is not None:
        return _LeanChain(job, chain, value_and_grad, saved)
    return _Chain(job, chain, saved)


# Kernel attributes that are live code, not state: the potential (and the recorder's
# wrappers around it and the kinetic energy) and the adapter's bound step-size search.
_LIVE_ATTRIBUTES = ("potential_fn", "_kinetic_energy", "_adapter")


def _kernel_state(kernel) -> dict:
    """A deep copy of everything a Pyro 1.9 HMC/NUTS kernel's next transitions depend on.

    Every instance attribute except live code: position, potential and gradient cache,
    the transition counter, divergences, acceptance counts, and the adapter's step size,
    mass matrix and dual-averaging/Welford state.
    """
    state = {k: v for k, v in vars(kernel).items() if k not in _LIVE_ATTRIBUTES}
    state["_adapter"] = {k: v for k, v in vars(kernel._adapter).items()
                         if k != "_find_reasonable_step_size"}
    return copy.deepcopy(state)


def _restore_kernel(kernel, state: dict) -> None:
    """Put a state of :func:`_kernel_state` into a kernel built and set up the same way."""
    state = copy.deepcopy(state)
    vars(kernel._adapter).update(state.pop("_adapter"))
    vars(kernel).update(state)


class _Chain:
    """One chain: a Pyro kernel on the potential, warmed up, drawing on request.

    ``saved``: a :meth:`state` from a checkpoint; the chain continues from it (no
    warm-up).
    """

    def __init__(self, job: dict, chain: int, saved: dict | None = None) -> None:
        torch.set_num_threads(1)
        pyro.set_rng_seed(job["seed"] + chain)
        site, loc, cov = _SITE, job["loc"], job["cov"]
        chol = torch.linalg.cholesky(cov)
        start = loc + chol @ torch.randn(loc.shape[0], dtype=loc.dtype)
        potential = job["potential"]
        options = dict(
            potential_fn=lambda params: potential.torch(params[_SITE]),
            full_mass=True,
            adapt_mass_matrix=job["adapt_mass_matrix"],
            target_accept_prob=job["target_accept_prob"],
            step_size=job["step_size"],
        )
        if job["kernel"] == "nuts":
            self.kernel = NUTS(max_tree_depth=job["max_tree_depth"], **options)
        else:
            self.kernel = HMC(trajectory_length=job["trajectory_length"], **options)
        self.site = site
        # tree depth, leapfrog steps and energy of every kept draw, for the guards
        self.recorder = SamplerStatsRecorder()
        self.recorder.attach(self.kernel)
        if saved is not None:
            start = saved["params"][site]
        self.kernel.initial_params = {site: start}
        self.kernel.setup(job["warmup_steps"])
        if saved is not None:  # the adapted sampler, mid-run, exactly as it was saved
            _restore_kernel(self.kernel, saved["kernel"])
            self.recorder.attach_potential(self.kernel, saved["previous_potential"])
            self.params = {k: v.clone() for k, v in saved["params"].items()}
            self.num_draws = saved["num_draws"]
            self.rng = saved["rng"]
            return
        # the Laplace covariance as the inverse mass matrix, then a step size for it
        self.kernel.mass_matrix_adapter.inverse_mass_matrix = {(site,): cov.clone()}
        self.kernel._adapter.reset_step_size_adaptation(self.kernel.initial_params)
        self.params = self.kernel.initial_params
        for i in range(job["warmup_steps"]):
            self.params = self.kernel.sample(self.params)
            self.recorder.hook(self.kernel, self.params, "Warmup", i)
        self.num_draws = 0
        self.rng = pyro.util.get_rng_state()

    def state(self) -> dict:
        """Everything the chain's next draws depend on (picklable; see :func:`_kernel_state`)."""
        return {
            "kernel": _kernel_state(self.kernel),
            "params": {k: v.detach().clone() for k, v in self.params.items()},
            "previous_potential": self.recorder.previous_potential,
            "num_draws": self.num_draws,
            "rng": copy.deepcopy(self.rng),
        }

    def draw(self, num: int) -> dict:
        out = np.empty((num, self.params[self.site].shape[0]))
        pyro.util.set_rng_state(self.rng)  # this chain's own stream
        for i in range(num):
            self.params = self.kernel.sample(self.params)
            self.recorder.hook(self.kernel, self.params, "Sample", i)
            out[i] = self.params[self.site].detach().numpy()
        self.rng = pyro.util.get_rng_state()
        self.num_draws += num
        diag = self.kernel.diagnostics()
        return {
            "draws": out,
            "stats": {k: v[-num:] for k, v in self.recorder.stats().items()},
            "divergences": np.asarray(diag.get("divergences", []), dtype=int),
            "accept": float(diag.get("acceptance rate", np.nan)),
            "step_size": float(self.kernel.step_size),
            "state": self.state(),
        }


def _worker(conn, job: dict, chain: int, saved: dict | None) -> None:
    """Child process: build the chain, then answer draw requests until told to stop.

    SIGINT/SIGTERM are ignored here: the parent catches them, waits for the current chunk
    and saves the checkpoint (a Ctrl-C reaches the whole process group).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        state = _make_chain(job, chain, saved)
        conn.send(("ready", state.state()))
        while True:
            num = conn.recv()
            if num is None:
                break
            conn.send(("draws", state.draw(num)))
    except Exception as error:  # report to the parent instead of dying silently
        conn.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        conn.close()


class _Remote:
    def __init__(self, ctx, job: dict, chain: int, saved: dict | None) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker, args=(child, job, chain, saved),
                                   daemon=True)
        self.process.start()
        child.close()

    def _receive(self):
        kind, payload = self.conn.recv()
        if kind == "error":
            raise RuntimeError(f"MCMC worker failed: {payload}")
        return payload

    def ready(self) -> dict:
        return self._receive()

    def request(self, num: int) -> None:
        self.conn.send(num)

    def result(self) -> dict:
        return self._receive()

    def close(self) -> None:
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.terminate()


class _Local:
    def __init__(self, job: dict, chain: int, saved: dict | None) -> None:
        threads = torch.get_num_threads()
        self.chain = _make_chain(job, chain, saved)
        torch.set_num_threads(threads)
        self._pending = 0

    def ready(self) -> dict:
        return self.chain.state()

    def request(self, num: int) -> None:
        self._pending = num

    def result(self) -> dict:
        threads = torch.get_num_threads()
        try:
            return self.chain.draw(self._pending)
        finally:
            torch.set_num_threads(threads)

    def close(self) -> None:
        pass


def _min_ess_bulk(draws: np.ndarray) -> float:
    """Smallest bulk ESS over the parameters; draws (chains, draws, D)."""
    return float(min(az.ess(draws[..., k], method="bulk") for k in range(draws.shape[-1])))


def _max_r_hat(draws: np.ndarray) -> float:
    """Largest rank-normalised split-r_hat over the parameters; draws (chains, draws, D)."""
    return float(max(az.rhat(draws[..., k]) for k in range(draws.shape[-1])))


R_HAT_TARGET = 1.01
"""A sized run also draws until the largest r_hat is below this (Vehtari et al. 2021): at a
bulk ESS near 400 in two dimensions r_hat lands above 1.01 by chance in some seeds."""


def _run_key(job: dict, **settings) -> dict:
    """What a checkpoint must match to be continued.

    Every setting that shapes the chains, and the Laplace start (so other data or another
    prior start afresh).
    """
    fixed = {k: v for k, v in job.items() if k not in ("potential", "loc", "cov")}
    fixed["potential"] = job["potential"].kind
    return {**fixed, **settings, "loc": job["loc"].tolist(), "cov": job["cov"].tolist()}


def run_chains(
    job: dict,
    *,
    num_chains: int,
    num_samples: int | None,
    target_ess: float,
    max_samples: int,
    parallel: bool | None,
    checkpoint=None,
) -> ChainRun:
    """Warm up ``num_chains`` chains and draw until the target bulk ESS (or a fixed count).

    Args:
        job: ``potential`` (a :class:`~bayes_irl.protocols.Potential`), ``loc`` (D,),
            ``cov`` (D, D) in its unconstrained space z, ``kernel``, ``seed``,
            ``warmup_steps``, ``adapt_mass_matrix``, ``target_accept_prob``,
            ``step_size``, ``max_tree_depth``, ``trajectory_length``.
        num_chains: chains.
        num_samples: draws per chain; None: sized for ``target_ess``.
        target_ess: the smallest bulk ESS over parameters to reach (None-sized runs; they
            also draw until the largest r_hat is below :data:`R_HAT_TARGET`).
        max_samples: cap on the draws per chain of a sized run.
        parallel: one worker process per chain; None: when there are >= 2 chains and
            >= 2 CPU cores and ``fork`` is available.
        checkpoint: an :class:`~bayes_irl.inference.checkpoint.MCMCCheckpoint`: save
            every chain's sampler state and draws after the warm-up, every
            ``checkpoint.every`` draws per chain and on SIGINT/SIGTERM; with
            ``resume=True`` continue a saved run of the same settings (bit-identical to
            an uninterrupted run).

    Returns:
        The :class:`ChainRun`.

    Raises:
        FitInterrupted: SIGINT/SIGTERM arrived (with a checkpoint); the state is saved.
    """
    cores = os.cpu_count() or 1
    if parallel is None:
        parallel = num_chains > 1 and cores > 1 and "fork" in mp.get_all_start_methods()
    start = time.perf_counter()
    key = _run_key(job, num_chains=num_chains, num_samples=num_samples,
                   target_ess=target_ess, max_samples=max_samples)
    saved = None if checkpoint is None or not checkpoint.resume else checkpoint.load_run(key)
    if saved is not None:
        checkpoint.resumed_draws = sum(saved["blocks"]) - saved["pending"]
    states = saved["states"] if saved is not None else [None] * num_chains
    ctx = mp.get_context("fork") if parallel else None
    with checkpoint if checkpoint is not None else contextlib.nullcontext():
        chains = [_Remote(ctx, job, c, states[c]) if parallel else _Local(job, c, states[c])
                  for c in range(num_chains)]
        try:
            return _draw(chains, job, key, saved, checkpoint, num_samples=num_samples,
                         target_ess=target_ess, max_samples=max_samples,
                         parallel=bool(parallel), start=start)
        finally:
            for chain in chains:
                chain.close()


def _draw(chains, job, key, saved, checkpoint, *, num_samples, target_ess, max_samples,
          parallel, start) -> ChainRun:
    """The sampling rounds of :func:`run_chains`, in chunks of ``checkpoint.every`` draws."""
    num_chains = len(chains)
    states = [chain.ready() for chain in chains]
    if saved is None:
        first = num_samples if num_samples is not None else min(
            max_samples, max(100, math.ceil(1.5 * target_ess / num_chains)))
        blocks, pending = [first], first
        results: list[list[dict]] = [[] for _ in chains]
    else:
        blocks, pending, results = list(saved["blocks"]), saved["pending"], saved["results"]

    def save() -> None:
        if checkpoint is None:
            return
        checkpoint.save_run(key, {"blocks": blocks, "pending": pending, "results": results,
                                  "states": states})
        if checkpoint.signal_received is not None:
            raise FitInterrupted(checkpoint.path, sum(blocks) - pending,
                                 checkpoint.signal_received)

    if saved is None:
        save()  # the warm-up adaptation, before any draw
    while True:
        while pending > 0:
            chunk = pending if checkpoint is None else min(pending, checkpoint.every)
            for chain in chains:
                chain.request(chunk)
            for c, chain in enumerate(chains):
                result = chain.result()
                states[c] = result.pop("state")
                results[c].append(result)
            pending -= chunk
            save()
        draws = np.stack([np.concatenate([r["draws"] for r in rs]) for rs in results])
        ess = _min_ess_bulk(draws) if num_chains * draws.shape[1] >= 8 else float("nan")
        r_hat = _max_r_hat(draws) if num_chains > 1 and draws.shape[1] >= 4 else 1.0
        done = draws.shape[1]
        if num_samples is not None or done >= max_samples or (
                ess >= target_ess and r_hat < R_HAT_TARGET):
            break
        # ESS grows about linearly with the draws: ask for what the rate so far needs
        # (a third more when only r_hat is short of its target)
        per_draw = max(ess, 1.0) / done
        needed = max(math.ceil(1.2 * target_ess / per_draw) - done, math.ceil(done / 3))
        block = min(max_samples - done, max(50, needed))
        blocks.append(block)
        pending = block
    total = draws.shape[1]
    diverging = np.zeros((num_chains, total), dtype=bool)
    for c, rs in enumerate(results):
        div = rs[-1]["divergences"]
        diverging[c, div[(div >= 0) & (div < total)]] = True
    stats = {
        name: np.stack([np.concatenate([r["stats"][name] for r in rs]) for rs in results])
        for name in results[0][0]["stats"]
    }
    return ChainRun(
        draws=draws,
        diverging=diverging,
        stats=stats,
        step_size=np.array([rs[-1]["step_size"] for rs in results]),
        acceptance_rate=np.array([rs[-1]["accept"] for rs in results]),
        num_warmup=job["warmup_steps"],
        blocks=blocks,
        min_ess_bulk=ess,
        parallel=parallel,
        wall_time=time.perf_counter() - start,
        sampler="pyro" if _lean_gradient(job) is None else "numpy_nuts",
        resumed_draws=None if checkpoint is None else checkpoint.resumed_draws,
    )
