"""Checkpoint and resume of every loop: nothing lost to a crash, Ctrl-C or a queue kill.

One class, :class:`Checkpoint`, and one file format, written atomically (a temporary name,
then a rename, so a kill during the write leaves the previous checkpoint)::

    {"format": 1, "method": ..., "key": {...}, "states": ..., "progress": ...}

* ``method``: the loop that wrote it: ``"nuts"``/``"hmc"`` (the chains of
  :mod:`~bayes_irl.inference.backends.parallel_chains`: ``states`` are the kernel states,
  one per chain; ``progress`` the draws so far and the schedule), ``"gaussian_vi"``
  (:mod:`~bayes_irl.inference.backends.gaussian_vi`: ``states`` is its state),
  and ``"pyro_svi"`` (Pyro's SVI loop: ``states`` are the param store, the optimiser
  state and the RNG states of ``random``, numpy and torch; ``progress`` the step and
  losses);
* ``key``: every setting that must match to continue (seed, lengths, the Laplace start,
  ...).

A loop calls :meth:`Checkpoint.begin` with its method and key (the saved states and
progress come back when resuming), then :meth:`Checkpoint.step_done` after each step or
:meth:`Checkpoint.save` at its own safe points; on SIGINT/SIGTERM (caught inside the
``with checkpoint:`` block) it saves at the next safe point and raises
:class:`FitInterrupted`. A resumed run continues bit-identically.

Tested in tests/test_checkpoint_resume.py (the chains from the Laplace and the uniform
start, Pyro's SVI loop, the command line) and tests/test_gaussian_vi.py (Gaussian VI):
each resume test counts the steps (or warm-up steps and draws) the resumed run takes,
which must be only the remaining ones, and resumes a copy of the checkpoint with one thing
changed (the RNG state, the step sizes, saved draws), which must change the result after
the saved part.

Not covered: a per-step ``callback`` with state of its own (e.g. guide-policy training,
whose trainer and trajectory bank are not saved); Pyro's SVI loop refuses to resume when a
callback is used.
"""

from __future__ import annotations

import os
import signal
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import pyro.util
import torch

__all__ = ["Checkpoint", "FitInterrupted", "MCMCCheckpoint", "SVICheckpoint",
           "pyro_svi_snapshot", "resume_pyro_svi"]

FORMAT = 1
"""The version of the checkpoint file's layout."""


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


class Checkpoint(_SignalCatcher):
    """Periodic and on-signal checkpoints of a loop, and resumption from them.

    Args:
        path: the checkpoint file (created with its folder; e.g. next to the outputs).
        every: save after every ``every`` completed steps (SVI) or draws per chain
            (MCMC) (>= 1).
        resume: continue from ``path`` when it exists (start afresh when it does not).
        handle_signals: on SIGINT/SIGTERM, finish the current step, save, and raise
            :class:`FitInterrupted` (only in the main thread, where Python can install
            signal handlers).

    Attributes:
        resumed_from: the steps (SVI) or draws per chain (MCMC) restored from the file;
            None for a fresh run.

    Example:
        >>> ckpt = Checkpoint("runs/a/checkpoint.pt", every=500)  # doctest: +SKIP
        >>> fit(model, demos, method="svi", checkpoint=ckpt)  # doctest: +SKIP
    """

    def __init__(self, path, *, every: int = 100, resume: bool = False,
                 handle_signals: bool = True) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an integer >= 1; got {every!r}")
        self.path = Path(path)
        self.every = every
        self.resume = resume
        self.handle_signals = handle_signals
        self.resumed_from: int | None = None
        self.method: str | None = None
        self.key: dict | None = None
        self._signal: int | None = None
        self._previous_handlers: dict[int, Any] = {}

    def begin(self, method: str, key: dict, *, on_mismatch: str = "raise"):
        """Name the loop and its settings; when resuming, the saved ``(states, progress)``.

        Args:
            method: the loop (see the module docstring).
            key: the settings a saved run must match to be continued.
            on_mismatch: ``"raise"``: a file from another method or other settings is a
                ValueError; ``"warn"``: a UserWarning, and the run starts afresh.

        Returns:
            ``(states, progress)`` to continue from, or None to start afresh.

        Raises:
            ValueError: the file is unreadable or not a checkpoint of this format, or (with
                ``on_mismatch="raise"``) from another method or other settings.
        """
        if on_mismatch not in ("raise", "warn"):
            raise ValueError(f"on_mismatch must be 'raise' or 'warn'; got {on_mismatch!r}")
        self.method, self.key, self.resumed_from = method, key, None
        if not (self.resume and self.path.exists()):
            return None
        saved = self._read()
        problem = None
        if saved["method"] != method:
            problem = (f"{self.path} was written by the {saved['method']!r} loop, not "
                       f"{method!r}: resume with the method (and back-end) that wrote it")
        elif saved["key"] != key:
            differ = sorted(k for k in set(key) | set(saved["key"])
                            if saved["key"].get(k) != key.get(k))
            problem = (f"{self.path} was written by a run with other settings "
                       f"({', '.join(differ)})")
        if problem is None:
            return saved["states"], saved["progress"]
        if on_mismatch == "raise":
            raise ValueError(f"{problem}: use the same settings to resume, or start afresh")
        warnings.warn(f"{problem}; starting afresh", UserWarning, stacklevel=3)
        return None

    def save(self, states: Any, progress: Any) -> None:
        """Write ``states`` and ``progress`` under the method and key of :meth:`begin`."""
        if self.method is None:
            raise RuntimeError("Checkpoint.save before Checkpoint.begin")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _atomic_save({"format": FORMAT, "method": self.method, "key": self.key,
                      "states": states, "progress": progress}, self.path)

    def raise_if_signalled(self, done: int) -> None:
        """After a save: raise :class:`FitInterrupted` when SIGINT/SIGTERM arrived.

        Args:
            done: the completed steps (or draws per chain) saved, for the message.
        """
        received = self.signal_received
        if received is not None:
            raise FitInterrupted(self.path, done, received)

    def step_done(self, done: int, total: int,
                  snapshot: Callable[[], tuple[Any, Any]]) -> None:
        """After ``done`` completed steps of at most ``total``: save when due.

        Saves ``snapshot()`` (a ``(states, progress)`` pair, built only when needed) every
        ``every`` steps before the last, and when SIGINT/SIGTERM arrived, then raises.

        Raises:
            FitInterrupted: after saving, when SIGINT/SIGTERM arrived.
        """
        received = self.signal_received
        if received is not None:
            self.save(*snapshot())
            raise FitInterrupted(self.path, done, received)
        if done % self.every == 0 and done < total:
            self.save(*snapshot())

    def _read(self) -> dict:
        try:
            saved = torch.load(self.path, weights_only=False)
        except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
            raise ValueError(f"{self.path} is not a readable checkpoint: {err}") from err
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            raise ValueError(f"{self.path} is not a checkpoint of this version of bayes_irl "
                             f"(format {FORMAT}); start afresh (delete it, or no --resume)")
        return saved


class SVICheckpoint(Checkpoint):
    """A :class:`Checkpoint` with the SVI loops' default interval (every 500 steps)."""

    def __init__(self, path, *, every: int = 500, resume: bool = False,
                 handle_signals: bool = True) -> None:
        super().__init__(path, every=every, resume=resume, handle_signals=handle_signals)


class MCMCCheckpoint(Checkpoint):
    """A :class:`Checkpoint` with the MCMC default interval (every 100 draws per chain)."""

    def __init__(self, path, *, resume: bool = False, every: int = 100,
                 handle_signals: bool = True) -> None:
        super().__init__(path, every=every, resume=resume, handle_signals=handle_signals)


# ---------------------------------------------------------------- Pyro's SVI loop
def resume_pyro_svi(checkpoint: Checkpoint, svi, guide, data, losses: np.ndarray, *,
                    has_callback: bool = False) -> int:
    """Before the first step of Pyro's SVI loop: begin, restore a saved state; the first step.

    The saved state: the param store (the guide's parameters, unconstrained), the
    optimiser state of every parameter (Adam moments, step counts, ClippedAdam's decayed
    learning rate), the RNG states of ``random``, numpy and torch; the progress: the step
    reached and the losses so far (``losses`` is filled in).

    Raises:
        ValueError: when the checkpoint is unreadable, from another loop or run length, or
            a callback is used with ``resume=True``.
    """
    if has_callback and checkpoint.resume and checkpoint.path.exists():
        raise ValueError(
            f"resume=True with an SVI callback: the callback's own state (e.g. a "
            f"GuidePolicyTrainer's guide policy, optimiser and trajectory bank) is not in "
            f"{checkpoint.path}, so the run cannot continue as it was. Either start afresh "
            f"(resume=False, or delete {checkpoint.path}), or fit without the callback (an "
            f"ExactNormalizer, or a guide policy trained before the fit with "
            f"GuidePolicyTrainer.train) and then resume")
    saved = checkpoint.begin("pyro_svi", {"num_steps": len(losses)})
    if saved is None:
        return 0
    states, progress = saved
    # Create the guide's parameters (as the first step would), then overwrite them.
    with torch.random.fork_rng(devices=[]):
        guide(data)
    _restore_params(states["params"])
    svi.optim.set_state(states["optim"])
    step = int(progress["step"])
    losses[:step] = progress["losses"]
    pyro.util.set_rng_state(states["rng"])
    checkpoint.resumed_from = step
    return step


def pyro_svi_snapshot(svi, losses: np.ndarray, done: int) -> tuple[dict, dict]:
    """The ``(states, progress)`` of Pyro's SVI loop after ``done`` steps.

    For :meth:`Checkpoint.step_done`; see :func:`resume_pyro_svi` for what they hold.
    """
    return ({"params": pyro.get_param_store().get_state(), "optim": svi.optim.get_state(),
             "rng": pyro.util.get_rng_state()},
            {"step": done, "losses": np.array(losses[:done])})
