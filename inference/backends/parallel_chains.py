"""NUTS/HMC chains on a cheap potential, started from the Laplace fit, in worker processes.

The fast default of :func:`bayes_irl.inference.backends.mcmc.run_mcmc` wherever the model
offers a potential (:func:`bayes_irl.inference.backends.laplace.sufficient_statistics_potential`):

* the MAP and the Laplace covariance Sigma come first
  (:func:`bayes_irl.inference.backends.laplace.model_laplace`);
* chain c starts at one draw from N(MAP, Sigma) (seed ``seed + c``), so the chains start
  dispersed like the posterior and split-r_hat compares independent starts;
* Sigma is the initial dense inverse mass matrix: in the whitened space the posterior is
  close to N(0, I), so the warm-up only adapts the step size (dual averaging from a step
  size found for that mass matrix), 200 steps by default instead of 500, unless
  ``adapt_mass_matrix=True``;
* each chain runs in its own worker process (``fork``; one torch thread each), so two
  chains on two cores take the time of one;
* draws are sized for a target bulk ESS (400 per parameter by default): a first block,
  then more draws per chain, estimated from the ESS per draw so far, until the smallest
  bulk ESS reaches the target and the largest r_hat is below 1.01, or the cap.

NUTS with a fixed mass matrix on a potential with a NumPy gradient (the demonstration
model's :class:`~bayes_irl.models.lean_potential.LeanPotential`) runs the NumPy NUTS of
:mod:`bayes_irl.inference.backends.lean_nuts` (the same algorithm without Pyro's ~0.9 ms of
bookkeeping per leapfrog step; ``job["sampler"] = "pyro"`` keeps Pyro's); otherwise Pyro's
NUTS/HMC kernels evaluate the potential (``potential_fn``), with no model tracing per
gradient either way.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import time
from dataclasses import dataclass

import arviz as az
import numpy as np
import pyro
import torch
from pyro.infer import HMC, NUTS

from bayes_irl.inference.backends.lean_nuts import LeanNUTS
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


def _lean_gradient(job: dict):
    """``theta -> (U, dU/dtheta)`` in NumPy where the lean NumPy sampler applies, else None.

    It applies to NUTS with a fixed mass matrix on a potential that has a NumPy
    ``value_and_grad`` (the model's lean evaluator), unless ``job["sampler"] == "pyro"``.
    Inputs the evaluator declines are scored by the torch potential itself.
    """
    lean = getattr(job["potential"], "value_and_grad", None)
    if (lean is None or job["kernel"] != "nuts" or job["adapt_mass_matrix"]
            or job.get("sampler", "auto") == "pyro" or job["loc"].dtype != torch.float64):
        return None
    potential, site = job["potential"], job["site"]

    def value_and_grad(theta: np.ndarray):
        out = lean(theta)
        if out is None:
            with torch.enable_grad():
                point = torch.from_numpy(np.array(theta)).requires_grad_(True)
                value = potential({site: point})
                (grad,) = torch.autograd.grad(value, point)
            out = float(value), grad.numpy()
        return out

    return value_and_grad


class _LeanChain:
    """One chain of the NumPy NUTS (:class:`LeanNUTS`), warmed up, drawing on request."""

    def __init__(self, job: dict, chain: int, value_and_grad) -> None:
        torch.set_num_threads(1)
        rng = np.random.default_rng(job["seed"] + chain)
        loc = job["loc"].numpy()
        cov = job["cov"].numpy()
        start = loc + np.linalg.cholesky(cov) @ rng.standard_normal(loc.shape[0])
        self.sampler = LeanNUTS(
            value_and_grad, loc=loc, cov=cov, start=start, seed=job["seed"] + chain,
            max_tree_depth=job["max_tree_depth"], target_accept_prob=job["target_accept_prob"],
            step_size=job["step_size"])
        for _ in range(job["warmup_steps"]):
            self.sampler.adapt(self.sampler.sample()["accept"])
        self.sampler.end_adaptation()
        self.num_draws = 0
        self.divergences: list[int] = []
        self.accepts: list[float] = []

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
        }


def _make_chain(job: dict, chain: int):
    """The NumPy NUTS chain where it applies (see :func:`_lean_gradient`), else Pyro's."""
    value_and_grad = _lean_gradient(job)
    if value_and_grad is not None:
        return _LeanChain(job, chain, value_and_grad)
    return _Chain(job, chain)


class _Chain:
    """One chain: a Pyro kernel on the potential, warmed up, drawing on request."""

    def __init__(self, job: dict, chain: int) -> None:
        torch.set_num_threads(1)
        pyro.set_rng_seed(job["seed"] + chain)
        site, loc, cov = job["site"], job["loc"], job["cov"]
        chol = torch.linalg.cholesky(cov)
        start = loc + chol @ torch.randn(loc.shape[0], dtype=loc.dtype)
        options = dict(
            potential_fn=job["potential"],
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
        self.kernel.initial_params = {site: start}
        self.kernel.setup(job["warmup_steps"])
        # the Laplace covariance as the inverse mass matrix, then a step size for it
        self.kernel.mass_matrix_adapter.inverse_mass_matrix = {(site,): cov.clone()}
        self.kernel._adapter.reset_step_size_adaptation(self.kernel.initial_params)
        self.params = self.kernel.initial_params
        for i in range(job["warmup_steps"]):
            self.params = self.kernel.sample(self.params)
            self.recorder.hook(self.kernel, self.params, "Warmup", i)
        self.num_draws = 0

    def draw(self, num: int) -> dict:
        out = np.empty((num, self.params[self.site].shape[0]))
        for i in range(num):
            self.params = self.kernel.sample(self.params)
            self.recorder.hook(self.kernel, self.params, "Sample", i)
            out[i] = self.params[self.site].detach().numpy()
        self.num_draws += num
        diag = self.kernel.diagnostics()
        return {
            "draws": out,
            "stats": {k: v[-num:] for k, v in self.recorder.stats().items()},
            "divergences": np.asarray(diag.get("divergences", []), dtype=int),
            "accept": float(diag.get("acceptance rate", np.nan)),
            "step_size": float(self.kernel.step_size),
        }


def _worker(conn, job: dict, chain: int) -> None:
    """Child process: build the chain, then answer draw requests until told to stop."""
    try:
        state = _make_chain(job, chain)
        conn.send(("ready", None))
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
    def __init__(self, ctx, job: dict, chain: int) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker, args=(child, job, chain), daemon=True)
        self.process.start()
        child.close()

    def _receive(self):
        kind, payload = self.conn.recv()
        if kind == "error":
            raise RuntimeError(f"MCMC worker failed: {payload}")
        return payload

    def ready(self) -> None:
        self._receive()

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
    def __init__(self, job: dict, chain: int) -> None:
        threads = torch.get_num_threads()
        self.chain = _make_chain(job, chain)
        torch.set_num_threads(threads)
        self._pending = 0

    def ready(self) -> None:
        pass

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


def run_chains(
    job: dict,
    *,
    num_chains: int,
    num_samples: int | None,
    target_ess: float,
    max_samples: int,
    parallel: bool | None,
) -> ChainRun:
    """Warm up ``num_chains`` chains and draw until the target bulk ESS (or a fixed count).

    Args:
        job: ``potential``, ``site``, ``loc`` (D,), ``cov`` (D, D), ``kernel``, ``seed``,
            ``warmup_steps``, ``adapt_mass_matrix``, ``target_accept_prob``,
            ``step_size``, ``max_tree_depth``, ``trajectory_length``.
        num_chains: chains.
        num_samples: draws per chain; None: sized for ``target_ess``.
        target_ess: the smallest bulk ESS over parameters to reach (None-sized runs; they
            also draw until the largest r_hat is below :data:`R_HAT_TARGET`).
        max_samples: cap on the draws per chain of a sized run.
        parallel: one worker process per chain; None: when there are >= 2 chains and
            >= 2 CPU cores and ``fork`` is available.

    Returns:
        The :class:`ChainRun`.
    """
    cores = os.cpu_count() or 1
    if parallel is None:
        parallel = num_chains > 1 and cores > 1 and "fork" in mp.get_all_start_methods()
    start = time.perf_counter()
    ctx = mp.get_context("fork") if parallel else None
    chains = [
        _Remote(ctx, job, c) if parallel else _Local(job, c) for c in range(num_chains)
    ]
    blocks: list[int] = []
    results: list[list[dict]] = [[] for _ in chains]
    try:
        for chain in chains:
            chain.ready()
        first = num_samples if num_samples is not None else min(
            max_samples, max(100, math.ceil(1.5 * target_ess / num_chains)))
        block = first
        while True:
            for chain in chains:
                chain.request(block)
            for c, chain in enumerate(chains):
                results[c].append(chain.result())
            blocks.append(block)
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
    finally:
        for chain in chains:
            chain.close()
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
        parallel=bool(parallel),
        wall_time=time.perf_counter() - start,
        sampler="pyro" if _lean_gradient(job) is None else "numpy_nuts",
    )
