"""Checkpoint and resume of SVI and MCMC: nothing lost to a crash, Ctrl-C or a queue kill.

An :class:`SVICheckpoint` is handed to the SVI loop (``run_svi(..., checkpoint=...)``). It
writes, every ``every`` steps and when the process receives SIGINT or SIGTERM, one file
holding everything the next step depends on:

* the Pyro param store (the guide's parameters, unconstrained),
* the optimiser state of every parameter (Adam moments, step counts and the decayed
  learning rate of ClippedAdam's schedule, ``param_groups``),
* the step reached and the loss history so far,
* the RNG states of ``random``, numpy and torch (``pyro.util.get_rng_state``).

With ``resume=True`` the loop restores all of it and continues at the saved step, so the
resumed run's losses and final draws are bit-identical to an uninterrupted run with the
same seed. The file is written through a temporary name and renamed, so a kill during the
write leaves the previous checkpoint.

Tested in tests/test_checkpoint_resume.py (Pyro's SVI loop, the MCMC paths, the command
line) and tests/test_lean_svi.py (the NumPy SVI loop): each resume test counts the steps
(or warm-up steps and draws) the resumed run takes, which must be only the remaining ones,
and resumes a copy of the checkpoint with one thing changed (the RNG state, the step
sizes, saved draws), which must change the result after the saved part.

Not covered: a per-step ``callback`` with state of its own (e.g. guide-policy training,
whose trainer and trajectory bank are not saved); :class:`SVICheckpoint` refuses to resume
when a callback is used. The MCMC back-ends use :class:`MCMCCheckpoint`: on the fast
(Laplace-started, parallel-chain) path it saves each chain's adapted sampler, position,
RNG and draws so far, periodically and on SIGINT/SIGTERM, and a resumed run continues the
chains with no new warm-up, bit-identically.
"""

from __future__ import annotations

import os
import signal
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import pyro.util
import torch

__all__ = ["FitInterrupted", "MCMCCheckpoint", "SVICheckpoint"]

_FORMAT = "bayes_irl.svi_checkpoint.v1"
_LEAN_FORMAT = "bayes_irl.lean_svi_checkpoint.v1"  # the NumPy SVI loop's state


class FitInterrupted(KeyboardInterrupt):
    """The fit stopped on SIGINT/SIGTERM after saving its checkpoint.

    Attributes:
        path: the checkpoint file.
        step: the number of completed steps saved in it.
        signal_number: the signal received.
    """

    def __init__(self, path: Path, step: int, signal_number: int) -> None:
        super().__init__(
            f"fit interrupted by {signal.Signals(signal_number).name} after {step} steps; "
            f"checkpoint saved to {path} (resume with resume=True / --resume)"
        )
        self.path, self.step, self.signal_number = path, step, signal_number


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _restore_params(saved: dict) -> None:
    """Copy saved values into the live parameters, in place.

    In place, because a ``PyroModule`` guide (every autoguide) keeps plain
    ``nn.Parameter`` attributes (e.g. ``AutoMultivariateNormal.loc``) that it reads
    directly: replacing the param store's tensor would leave the guide using its
    initial value while the optimiser updated the replacement.
    """
    store = pyro.get_param_store()
    new = {"params": {}, "constraints": {}}
    with torch.no_grad():
        for name, value in saved["params"].items():
            if name in store:
                store._params[name].copy_(value)  # the unconstrained tensor itself
            else:
                new["params"][name] = value
                new["constraints"][name] = saved["constraints"][name]
    store.set_state(new)


class _SignalCatcher:
    """On SIGINT/SIGTERM, remember the signal instead of dying (inside a ``with`` block).

    The loop that holds the catcher checks :attr:`signal_received` at a safe point, saves,
    and raises :class:`FitInterrupted`. Handlers are installed only in the main thread,
    where Python allows it, and the previous handlers come back on exit.
    """

    handle_signals: bool = True

    def __enter__(self):
        self._signal = None
        self._previous_handlers = {}
        if self.handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous_handlers[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler)
        self._previous_handlers.clear()

    def _on_signal(self, signum, frame) -> None:
        self._signal = signum

    @property
    def signal_received(self) -> int | None:
        """The signal number caught since entering the ``with`` block, else None."""
        return getattr(self, "_signal", None)


class SVICheckpoint(_SignalCatcher):
    """Periodic and on-signal checkpoints of the SVI loop, and resumption from them.

    Args:
        path: the checkpoint file (created with its folder; e.g. next to the outputs).
        every: save after every ``every`` completed steps (>= 1).
        resume: continue from ``path`` when it exists (start afresh when it does not).
        handle_signals: on SIGINT/SIGTERM, finish the current step, save, and raise
            :class:`FitInterrupted` (only in the main thread, where Python can install
            signal handlers).

    Example:
        >>> ckpt = SVICheckpoint("runs/a/svi_checkpoint.pt", every=500)  # doctest: +SKIP
        >>> fit(model, demos, method="svi", checkpoint=ckpt)  # doctest: +SKIP
    """

    def __init__(
        self, path, *, every: int = 500, resume: bool = False, handle_signals: bool = True
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an integer >= 1; got {every!r}")
        self.path = Path(path)
        self.every = every
        self.resume = resume
        self.handle_signals = handle_signals
        self.resumed_from: int | None = None
        self._signal: int | None = None
        self._previous_handlers: dict[int, Any] = {}
        self._svi = None

    # ------------------------------------------------------------ hooks of the SVI loop
    def start(self, svi, guide, data, losses: np.ndarray, *, has_callback: bool = False) -> int:
        """Before the first step: restore a saved state when resuming; return the first step.

        Raises:
            ValueError: when the checkpoint is unreadable, from another run length, or a
                callback is used with ``resume=True``.
        """
        self._svi = svi
        if not (self.resume and self.path.exists()):
            return 0
        if has_callback:
            raise ValueError(
                f"resume=True with an SVI callback: the callback's own state (e.g. a "
                f"GuidePolicyTrainer's guide policy, optimiser and trajectory bank) is not in "
                f"{self.path}, so the run cannot continue as it was. Either start afresh "
                f"(resume=False, or delete {self.path}), or fit without the callback (an "
                f"ExactNormalizer, or a guide policy trained before the fit with "
                f"GuidePolicyTrainer.train) and then resume")
        state = self._read()
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ValueError(f"{self.path} is not an SVI checkpoint of this version")
        if state["num_steps"] != len(losses):
            raise ValueError(
                f"{self.path} was written by a run of {state['num_steps']} steps; this run has "
                f"{len(losses)}: use the same --num-steps to resume"
            )
        # Create the guide's parameters (as the first step would), then overwrite them.
        with torch.random.fork_rng(devices=[]):
            guide(data)
        _restore_params(state["params"])
        svi.optim.set_state(state["optim"])
        step = int(state["step"])
        losses[:step] = state["losses"]
        pyro.util.set_rng_state(state["rng"])
        self.resumed_from = step
        return step

    def step_done(self, step: int, losses: np.ndarray) -> None:
        """After step ``step`` (0-based): save when due; on a pending signal save and raise.

        Raises:
            FitInterrupted: after saving, when SIGINT/SIGTERM arrived.
        """
        completed = step + 1
        if self._signal is not None:
            self.save(completed, losses)
            raise FitInterrupted(self.path, completed, self._signal)
        if completed % self.every == 0 and completed < len(losses):
            self.save(completed, losses)

    def save(self, completed: int, losses: np.ndarray) -> None:
        """Write the checkpoint after ``completed`` steps (atomically)."""
        self._write(
            {
                "format": _FORMAT,
                "step": completed,
                "num_steps": len(losses),
                "losses": np.array(losses[:completed]),
                "params": pyro.get_param_store().get_state(),
                "optim": self._svi.optim.get_state(),
                "rng": pyro.util.get_rng_state(),
            }
        )

    # ------------------------------------------------------ hooks of the NumPy SVI loop
    def load_lean(self, key: dict) -> dict | None:
        """When resuming, the saved state of the NumPy SVI loop; None to start afresh.

        Args:
            key: the run's settings; a checkpoint written with others is refused.

        Raises:
            ValueError: when the file is unreadable, from Pyro's loop, or from other settings.
        """
        if not (self.resume and self.path.exists()):
            return None
        saved = self._read()
        if not isinstance(saved, dict) or saved.get("format") != _LEAN_FORMAT:
            raise ValueError(f"{self.path} is not a checkpoint of the NumPy SVI loop "
                             "(svi_backend='lean'); resume with the back-end that wrote it")
        if saved["key"] != key:
            differ = sorted(k for k in key if saved["key"].get(k) != key[k])
            raise ValueError(f"{self.path} was written by a run with other settings "
                             f"({', '.join(differ)}): use the same settings to resume")
        self.resumed_from = int(saved["state"].step)
        return saved["state"]

    def lean_step_done(self, steps: int, num_steps: int, key: dict, state: dict) -> None:
        """After ``steps`` completed steps of the NumPy loop: save when due.

        Raises:
            FitInterrupted: after saving, when SIGINT/SIGTERM arrived.
        """
        received = self.signal_received
        if received is not None:
            self._write({"format": _LEAN_FORMAT, "key": key, "state": state})
            raise FitInterrupted(self.path, steps, received)
        if steps % self.every == 0 and steps < num_steps:
            self._write({"format": _LEAN_FORMAT, "key": key, "state": state})

    # ------------------------------------------------------------------ the file
    def _read(self) -> Any:
        try:
            return torch.load(self.path, weights_only=False)
        except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
            raise ValueError(f"{self.path} is not a readable SVI checkpoint: {err}") from err

    def _write(self, payload: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_save(payload, self.path)


class MCMCCheckpoint(_SignalCatcher):
    """Checkpoints of the MCMC back-ends: finished work is never redone.

    Two paths of :func:`~bayes_irl.inference.backends.mcmc.run_mcmc` use it:

    * the fast path (Laplace start, parallel chains,
      :mod:`~bayes_irl.inference.backends.parallel_chains`): after the warm-up and then
      after every ``every`` draws per chain, and on SIGINT/SIGTERM, :meth:`save_run`
      writes every chain's draws so far, per-draw statistics, divergences and its complete
      sampler state: the warm-up adaptation (step size, inverse mass matrix, dual-averaging
      state), the current position with its potential and gradient, the transition
      counters and the chain's RNG state. On resume the chains continue from there with no
      new warm-up, and the draws are bit-identical to an uninterrupted run (tested);
    * the model-tracing path: after each chain :meth:`save_chain` writes its draws,
      statistics and adaptation; on resume finished chains are reused. A chain cut off
      midway is rerun from its start there (Pyro 1.9's ``MCMC`` runner has no API to
      continue a chain). Every chain is seeded by ``seed + chain``, so this resumed run
      is bit-identical too.

    Args:
        path: the checkpoint file.
        resume: continue from ``path`` when it exists (start afresh when it does not, or
            when it was written with other settings).
        every: fast path: draws per chain between periodic saves (>= 1).
        handle_signals: fast path: on SIGINT/SIGTERM, finish the current transition of
            every chain (or the warm-up), save, and raise :class:`FitInterrupted`.
    """

    def __init__(self, path, *, resume: bool = False, every: int = 100,
                 handle_signals: bool = True) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an integer >= 1; got {every!r}")
        self.path = Path(path)
        self.resume = resume
        self.every = every
        self.handle_signals = handle_signals
        self.resumed_draws: int | None = None
        self._chains: dict[int, dict] = {}
        self._run: dict | None = None
        if resume and self.path.exists():
            try:
                state = torch.load(self.path, weights_only=False)
                self._chains = dict(state["chains"])
                self._run = state.get("run")
            except Exception as err:  # noqa: BLE001
                raise ValueError(f"{self.path} is not a readable MCMC checkpoint: {err}") from err

    def load_chain(self, chain: int, key: dict) -> dict | None:
        """A finished chain saved with the same settings ``key``, else None."""
        saved = self._chains.get(chain)
        if saved is None or saved["key"] != key:
            return None
        return saved

    def save_chain(self, chain: int, key: dict, result: dict) -> None:
        """Record chain ``chain`` (draws, stats, adaptation) and write the file."""
        self._chains[chain] = {"key": key, **result}
        self._write()

    def load_run(self, key: dict) -> dict | None:
        """The fast-path state saved with the same settings ``key``, else None.

        A saved run with other settings (seed, draws, warm-up, data or prior: the Laplace
        start differs) is not continued; a warning says so, and the run starts afresh.
        """
        if self._run is None:
            return None
        if self._run["key"] != key:
            differ = sorted(k for k in key if self._run["key"].get(k) != key[k])
            warnings.warn(f"{self.path} was written by a run with other settings "
                          f"({', '.join(differ)}); starting afresh", UserWarning, stacklevel=3)
            return None
        return self._run["state"]

    def save_run(self, key: dict, state: dict) -> None:
        """Write the fast path's ``state`` (chains' samplers, draws so far, schedule)."""
        self._run = {"key": key, "state": state}
        self._write()

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_save({"format": "bayes_irl.mcmc_checkpoint.v1", "chains": self._chains,
                      "run": self._run}, self.path)
