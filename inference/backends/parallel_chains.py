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
  covariance of the draws of its middle half
  (:func:`~bayes_irl.inference.backends.adaptation.window_adaptation`): where the
  posterior is skewed, the mode's curvature misstates the typical set;
* each chain runs in its own worker process (``fork``; one torch thread each), so two
  chains on two cores take the time of one;
* draws are sized for a target bulk ESS (400 per parameter by default): a first block,
  then more draws per chain, estimated from the ESS per draw so far, until the smallest
  bulk ESS reaches the target and the largest r_hat is below 1.01, or the cap.

Each chain runs a pure kernel (:mod:`~bayes_irl.inference.backends.nuts_kernel` for NUTS,
:mod:`~bayes_irl.inference.backends.hmc_kernel` for HMC: ``init``/``step`` over a state of
arrays, numbers and its own RNG state), warmed up by
:func:`~bayes_irl.inference.backends.adaptation.window_adaptation`, on the potential's
``value_and_grad``. Every draw's ``info`` is recorded under ArviZ's ``sample_stats`` names
(``diverging``, ``tree_depth`` (NUTS), ``n_steps``, ``energy``, ``acceptance_rate``,
``step_size``, ``lp``). Another kernel runs here if it has the same small interface
(:class:`Kernel`) and an entry in :data:`KERNELS`.

A chain's draws depend only on its own state, not on the other chains or on whether they
run in workers. With a :class:`~bayes_irl.inference.checkpoint.Checkpoint` the kernel
states of all chains and the draws so far are saved after the warm-up, every
``checkpoint.every`` draws and on SIGINT/SIGTERM (workers ignore both signals; the parent
saves at the next chunk boundary), and a resumed run continues the chains from them
bit-identically.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import signal
import time
from dataclasses import dataclass
from typing import Any, Protocol

import arviz as az
import numpy as np
import torch

import bayes_irl.inference.backends.adaptation as adaptation
import bayes_irl.inference.backends.hmc_kernel as hmc_kernel
import bayes_irl.inference.backends.nuts_kernel as nuts_kernel

__all__ = ["KERNELS", "ChainRun", "Kernel", "run_chains"]


@dataclass
class ChainRun:
    """What :func:`run_chains` returns.

    Attributes:
        draws: shape (chains, draws, D).
        diverging: shape (chains, draws), bool.
        stats: the kernel's ``info`` per draw under ArviZ's names (``diverging``,
            ``tree_depth`` (NUTS), ``n_steps``, ``energy``, ``acceptance_rate``,
            ``step_size``, ``lp``), each (chains, draws).
        step_size: the adapted step size per chain, shape (chains,).
        acceptance_rate: mean acceptance statistic per chain, shape (chains,).
        num_warmup: warm-up steps per chain.
        blocks: draws per chain requested in each round (the ESS-driven extension).
        min_ess_bulk: the smallest bulk ESS over the D parameters at the end.
        parallel: whether the chains ran in worker processes.
        wall_time: seconds for warm-up and sampling (the Laplace fit excluded).
        sampler: ``"numpy_nuts"`` or ``"numpy_hmc"``: the kernel that ran.
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
    sampler: str
    resumed_draws: int | None = None


class Kernel(Protocol):
    """What the driver needs of a kernel: a module such as :mod:`.nuts_kernel`.

    ``init(potential, z0, rng_state, *, loc, inverse_mass_matrix, step_size, **options)``
    gives a state (a NamedTuple with ``step_size``, ``loc``, ``chol``, ``x``),
    ``step(state, potential) -> (state, info)`` with ``info`` a NamedTuple of per-draw
    statistics, and ``position(state)`` the potential's z (D,).
    """

    def init(self, potential, z0: np.ndarray, rng_state: dict, **options) -> Any:
        """The kernel's state at z0 (D,)."""

    def step(self, state: Any, potential) -> tuple[Any, Any]:
        """One transition: ``(state, info)``."""

    def position(self, state: Any) -> np.ndarray:
        """The potential's z (D,) at ``state``."""


KERNELS: dict[str, tuple[Any, Any, str]] = {
    "nuts": (nuts_kernel, lambda job: {"max_tree_depth": job["max_tree_depth"]},
             "numpy_nuts"),
    "hmc": (hmc_kernel, lambda job: {"trajectory_length": job["trajectory_length"]},
            "numpy_hmc"),
}
"""``job["kernel"]`` -> (the kernel module, its init options from the job, its name in
``ChainRun.sampler``)."""


class _Chain:
    """One chain of a kernel on the job's potential, warmed up, drawing on request.

    ``saved``: a kernel state from a checkpoint; the chain continues from it (no warm-up).
    """

    def __init__(self, job: dict, chain: int, saved=None) -> None:
        torch.set_num_threads(1)
        self.kernel, options, _ = KERNELS[job["kernel"]]
        self.potential = job["potential"]
        if saved is not None:  # the adapted kernel state, mid-run, exactly as it was saved
            self.state = saved
            return
        seed = job["seed"] + chain
        loc, cov = job["loc"].numpy(), job["cov"].numpy()
        if job.get("start", "laplace") == "uniform":  # z ~ U(-2, 2), as Pyro's init_to_uniform
            start = np.random.default_rng(seed).uniform(-2.0, 2.0, loc.shape[0])
        else:  # a draw from the Laplace fit N(loc, cov)
            start = loc + np.linalg.cholesky(cov) @ np.random.default_rng(seed).standard_normal(
                loc.shape[0])
        state = self.kernel.init(
            self.potential, start, np.random.default_rng(seed).bit_generator.state, loc=loc,
            inverse_mass_matrix=cov, step_size=job["step_size"], **options(job))
        self.state = adaptation.window_adaptation(
            self.kernel, state, self.potential, job["warmup_steps"],
            adapt_mass_matrix=job["adapt_mass_matrix"],
            target_accept_prob=job["target_accept_prob"])

    def draw(self, num: int) -> dict:
        out = np.empty((num, self.state.x.shape[0]))
        infos = []
        for i in range(num):
            self.state, info = self.kernel.step(self.state, self.potential)
            out[i] = self.kernel.position(self.state)
            infos.append(info)
        stats = {name: np.array([getattr(info, name) for info in infos])
                 for name in infos[0]._fields}
        return {"draws": out, "stats": stats, "state": self.state}


def _worker(conn, job: dict, chain: int, saved) -> None:
    """Child process: build the chain, then answer draw requests until told to stop.

    SIGINT/SIGTERM are ignored here: the parent catches them, waits for the current chunk
    and saves the checkpoint (a Ctrl-C reaches the whole process group).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        state = _Chain(job, chain, saved)
        conn.send(("ready", state.state))
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
    def __init__(self, ctx, job: dict, chain: int, saved) -> None:
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

    def ready(self):
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
    def __init__(self, job: dict, chain: int, saved) -> None:
        threads = torch.get_num_threads()
        self.chain = _Chain(job, chain, saved)
        torch.set_num_threads(threads)
        self._pending = 0

    def ready(self):
        return self.chain.state

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
        checkpoint: a :class:`~bayes_irl.inference.checkpoint.Checkpoint`: save
            every chain's kernel state and draws after the warm-up, every
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
    saved = None
    if checkpoint is not None:
        # a file from other settings (or the other kernel) is not continued: a warning
        saved = checkpoint.begin(job["kernel"], key, on_mismatch="warn")
    if saved is not None:
        states, saved = saved
        checkpoint.resumed_from = sum(saved["blocks"]) - saved["pending"]
    else:
        states = [None] * num_chains
    ctx = mp.get_context("fork") if parallel else None
    with checkpoint if checkpoint is not None else contextlib.nullcontext():
        chains = [_Remote(ctx, job, c, states[c]) if parallel else _Local(job, c, states[c])
                  for c in range(num_chains)]
        try:
            return _draw(chains, job, saved, checkpoint, num_samples=num_samples,
                         target_ess=target_ess, max_samples=max_samples,
                         parallel=bool(parallel), start=start)
        finally:
            for chain in chains:
                chain.close()


def _draw(chains, job, saved, checkpoint, *, num_samples, target_ess, max_samples,
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
        checkpoint.save(list(states),
                        {"blocks": blocks, "pending": pending, "results": results})
        checkpoint.raise_if_signalled(sum(blocks) - pending)

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
    stats = {
        name: np.stack([np.concatenate([r["stats"][name] for r in rs]) for rs in results])
        for name in results[0][0]["stats"]
    }
    return ChainRun(
        draws=draws,
        diverging=stats["diverging"].astype(bool),
        stats=stats,
        step_size=np.array([state.step_size for state in states]),
        acceptance_rate=stats["acceptance_rate"].mean(axis=1),
        num_warmup=job["warmup_steps"],
        blocks=blocks,
        min_ess_bulk=ess,
        parallel=parallel,
        wall_time=time.perf_counter() - start,
        sampler=KERNELS[job["kernel"]][2],
        resumed_draws=None if checkpoint is None else checkpoint.resumed_from,
    )
