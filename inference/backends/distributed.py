r"""Data-parallel SVI across processes with ``torch.distributed``: the path past one machine.

The demonstrations are sharded across W ranks (rank r holds demonstrations r, r + W, ...).
Every rank holds the same guide parameters and draws the same theta ~ q (same seed, same
sequence of random calls), evaluates

    loss_r = -(1/W) [log p(theta) - log q(theta)] - sum_{i in shard r} log P(x_i | theta)

and the gradients are summed over ranks with ``all_reduce``. The summed gradient is the
gradient of the full-batch ELBO at that theta, so every rank takes the same ClippedAdam step
as :func:`bayes_irl.inference.backends.svi.run_svi` would in one process: the fit is the same up to
floating-point summation order (tested with 2 local processes). Each step costs one
``all_reduce`` of the guide parameters (a few numbers for a linear reward), so the work per
rank falls as 1/W while the communication stays constant.

Backends: ``gloo`` on CPU, ``nccl`` when every rank has a CUDA device (build the MDP and
the model on ``cuda:{local_rank}``). Launch with torchrun, one process per core or GPU, on
one machine or many (``--nnodes``, ``--rdzv-endpoint``)::

    # fit_dist.py
    from bayes_irl.inference.backends.distributed import init_from_env, run_distributed_svi
    init_from_env()                      # reads RANK, WORLD_SIZE, MASTER_ADDR/PORT
    model, data = build_model_and_data() # identical on every rank (same seeds)
    posterior = run_distributed_svi(model, data, num_steps=2000)
    if posterior is not None:            # rank 0 returns the Posterior, other ranks None
        posterior.to_inference_data().to_netcdf("posterior.nc")

    $ torchrun --nproc_per_node=2 fit_dist.py

:func:`run_local` spawns the processes itself on 127.0.0.1 (used by the tests).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable

import numpy as np
import pyro
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.optim import ClippedAdam
from pyro.poutine.messenger import Messenger

from bayes_irl.inference.backends.pyro_guides import guide_posterior, make_guide
from bayes_irl.inference.posterior import Posterior
from bayes_irl.validation import positive_int

__all__ = ["init_from_env", "run_distributed_svi", "run_local", "shard"]


class _ScaleSites(Messenger):
    """Multiply the log-density scale of the named sample sites by ``scale``."""

    def __init__(self, names, scale: float) -> None:
        super().__init__()
        self.names, self.scale = set(names), scale

    def _process_message(self, msg) -> None:
        if msg["type"] == "sample" and msg["name"] in self.names:
            msg["scale"] = self.scale * msg["scale"]


def shard(data: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Return rank ``rank``'s demonstrations ``data[rank::world_size]``, shape (n_r, ...).

    Raises:
        ValueError: if a shard would be empty.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, {world_size}); got {rank}")
    if data.shape[0] < world_size:
        raise ValueError(
            f"data must hold at least world_size={world_size} demonstrations; got {data.shape[0]}"
        )
    return data[rank::world_size]


def init_from_env(backend: str | None = None) -> tuple[int, int]:
    """Initialise the default process group from torchrun's environment variables.

    Args:
        backend: ``"gloo"`` or ``"nccl"``; default nccl if CUDA is available, else gloo.

    Returns:
        ``(rank, world_size)``.
    """
    if not dist.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend, init_method="env://")
    return dist.get_rank(), dist.get_world_size()


def run_distributed_svi(
    model,
    data,
    *,
    guide="multivariate_normal",
    num_steps: int = 5000,
    learning_rate: float = 0.05,
    num_particles: int = 1,
    num_samples: int = 1000,
    seed: int = 0,
    callback: Callable[[int, float], None] | None = None,
) -> Posterior | None:
    """Fit by data-parallel SVI; call it on every rank with the same arguments.

    Same optimiser, schedule and guide as :func:`bayes_irl.inference.backends.svi.run_svi`. Without
    an initialised process group it runs on one process (world size 1).

    Args:
        model: a bayes_irl model whose observed site sits in a plate over demonstrations
            (e.g. :class:`bayes_irl.models.DemonstrationModel`); its ``subsample_size`` is
            ignored (each rank scores its whole shard).
        data: the full demonstrations (n, T + 1, 2) or anything ``model.prepare_data``
            accepts; identical on every rank.
        guide: autoguide name, class or callable (see :data:`bayes_irl.inference.GUIDES`).
        num_steps: SVI steps.
        learning_rate: initial ClippedAdam step size (decayed 10x over the run).
        num_particles: ELBO particles per step.
        num_samples: posterior draws returned by rank 0.
        seed: seeds Pyro's RNG identically on every rank.
        callback: ``callback(step, loss)`` on rank 0 after each step (loss = full ELBO loss).

    Returns:
        On rank 0 a :class:`Posterior` (method ``"svi"``, attrs ``world_size``); ``None`` on
        the other ranks.
    """
    num_steps = positive_int(num_steps, "num_steps")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0; got {learning_rate}")
    distributed = dist.is_available() and dist.is_initialized()
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    prepared = model.prepare_data(data)
    local = shard(prepared, rank, world_size)
    observed = list(model.observed_sites)

    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    guide_fn = make_guide(model, guide)

    def rank_model(x):
        with poutine.scale(scale=1.0 / world_size), _ScaleSites(observed, float(world_size)):
            return model(x, subsample=False)

    def rank_guide(x):
        with poutine.scale(scale=1.0 / world_size):
            return guide_fn(x)

    elbo = Trace_ELBO(num_particles=num_particles)
    optim = ClippedAdam({"lr": learning_rate, "lrd": 0.1 ** (1.0 / num_steps), "clip_norm": 10.0})
    losses = np.empty(num_steps)
    start = time.perf_counter()
    for step in range(num_steps):
        with poutine.trace(param_only=True) as capture:
            loss = elbo.loss_and_grads(rank_model, rank_guide, local)
        names = sorted(capture.trace.nodes)
        params = [capture.trace.nodes[n]["value"].unconstrained() for n in names]
        if distributed:
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            total = torch.tensor([loss], dtype=torch.float64)
            dist.all_reduce(total, op=dist.ReduceOp.SUM)
            loss = float(total.item())
        if not np.isfinite(loss):
            raise FloatingPointError(f"SVI loss became {loss} at step {step}")
        optim(params)
        pyro.infer.util.zero_grads(set(params))
        losses[step] = loss
        if callback is not None and rank == 0:
            callback(step, loss)
    wall = time.perf_counter() - start
    if rank != 0:
        return None
    return guide_posterior(
        model,
        prepared,
        guide_fn,
        losses=losses,
        num_samples=num_samples,
        attrs={
            "seed": seed,
            "num_steps": num_steps,
            "learning_rate": learning_rate,
            "num_particles": num_particles,
            "world_size": world_size,
            "wall_time_s": wall,
        },
    )


def _local_worker(rank, world_size, store_path, inputs_path, out_path):
    torch.set_num_threads(1)
    model, data, options = torch.load(inputs_path, weights_only=False)
    # A file store and the loopback interface: no port to race for, no other address used.
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group(
        "gloo", init_method=f"file://{store_path}", rank=rank, world_size=world_size
    )
    try:
        posterior = run_distributed_svi(model, data, **options)
        if rank == 0:
            torch.save(
                {
                    "samples": posterior.samples,
                    "losses": posterior.extra["losses"],
                    "attrs": posterior.attrs,
                    "params": {
                        k: v.detach().clone() for k, v in pyro.get_param_store().items()
                    },
                },
                out_path,
            )
    finally:
        # Both ranks wait here before tearing down, so neither closes its connections while
        # the other is still saving or reducing.
        dist.barrier()
        dist.destroy_process_group()


def run_local(model, data, *, world_size: int = 2, **options) -> Posterior:
    """Spawn ``world_size`` gloo processes on 127.0.0.1 and fit with them.

    For tests and for a quick check on one machine; torchrun is the launcher for real runs.

    Args:
        model: a picklable bayes_irl model.
        data: demonstrations.
        world_size: number of processes.
        **options: passed to :func:`run_distributed_svi`.

    Returns:
        Rank 0's :class:`Posterior`; ``extra["params"]`` holds the fitted guide parameters
        (name -> tensor) and ``extra["losses"]`` the loss trace.
    """
    world_size = positive_int(world_size, "world_size")
    prepared = model.prepare_data(data)
    with tempfile.TemporaryDirectory() as tmp:
        out_path = os.path.join(tmp, "rank0.pt")
        # The inputs travel through a file rather than mp.spawn's shared-memory pickling.
        inputs_path = os.path.join(tmp, "inputs.pt")
        torch.save((model, prepared, options), inputs_path)
        mp.spawn(
            _local_worker,
            args=(world_size, os.path.join(tmp, "store"), inputs_path, out_path),
            nprocs=world_size,
            join=True,
        )
        result = torch.load(out_path, weights_only=False)
    return Posterior(
        samples=result["samples"],
        method="svi",
        model=model,
        data=prepared,
        attrs=result["attrs"],
        extra={
            "losses": result["losses"],
            "params": result["params"],
            "sample_stats_extra": {"loss": (result["losses"], "svi_step")},
        },
    )
