"""Checks of ``bayes-irl fit`` that run BEFORE any fitting, and the output set's marker.

:func:`validate_fit_args` rejects every bad argument with a ValueError naming the option
(``--num-samples 0`` is an error, never silently 1000); :func:`prepare_output` makes sure
the output folder can be written (not a file, not read-only) before minutes of fitting.
The outputs are written as a set: :data:`COMPLETE_MARKER` is removed first and written
last, so a folder without it holds an interrupted run (resume it with ``--resume``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from bayes_irl.app.output_files import write_atomic

__all__ = [
    "CHECKPOINT_FILES",
    "COMPLETE_MARKER",
    "METHODS",
    "mark_complete",
    "prepare_output",
    "validate_fit_args",
]

COMPLETE_MARKER = "COMPLETE.json"
"""Written last into ``--out``: the list of outputs and the convergence verdict."""

CHECKPOINT_FILES = {"svi": "svi_checkpoint.pt", "nuts": "mcmc_checkpoint.pt",
                    "hmc": "mcmc_checkpoint.pt"}
"""Checkpoint file per method, inside ``--out``."""

METHODS = ("svi", "laplace", "nuts", "hmc", "importance")
"""Methods of ``bayes-irl fit``."""

_MINIMUM = {
    "num_demos": ("--num-demos", 1),
    "num_steps": ("--num-steps", 1),
    "num_samples": ("--num-samples", 1),
    "warmup": ("--warmup", 0),
    "chains": ("--chains", 1),
    "threads": ("--threads", 1),
    "num_features": ("--num-features", 1),
    "horizon": ("--horizon", 1),
    "checkpoint_every": ("--checkpoint-every", 1),
}


def validate_fit_args(args) -> None:
    """Check every numeric option and the method of ``bayes-irl fit``.

    Raises:
        ValueError: ``"--num-samples must be an integer >= 1; got 0"`` and the like.
    """
    for attr, (option, minimum) in _MINIMUM.items():
        value = getattr(args, attr, None)
        if value is not None and value < minimum:
            raise ValueError(f"{option} must be an integer >= {minimum}; got {value}")
    if args.method not in METHODS:
        raise ValueError(f"--method must be one of {', '.join(METHODS)}; got {args.method!r}")
    slip = getattr(args, "slip", None)
    if slip is not None and not 0 <= slip < 1:
        raise ValueError(f"--slip must lie in [0, 1); got {slip}")
    preferences = getattr(args, "preferences", None)
    if args.mdp is None and args.demos is not None:
        raise ValueError("--demos needs --mdp (the MDP the demonstrations were recorded in)")
    if args.mdp is not None and args.demos is None and preferences is None:
        raise ValueError("--mdp needs --demos or --preferences (the data to fit)")
    if preferences is not None and getattr(args, "standardize", False):
        raise ValueError("--standardize works with demonstrations only; drop it with "
                         "--preferences")
    if getattr(args, "resume", False) and args.method not in CHECKPOINT_FILES:
        raise ValueError(f"--resume works with --method svi, nuts or hmc; got {args.method!r}")


def prepare_output(out: Path, names: tuple[str, ...], *, overwrite: bool, resume: bool) -> None:
    """Make sure ``out`` is a writable folder whose outputs may be written.

    Raises:
        ValueError: ``out`` is a file, or cannot be created or written.
        FileExistsError: outputs exist and neither ``overwrite`` nor ``resume`` is set.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder; choose another --out")
    existing = [out / name for name in names if (out / name).exists()]
    interrupted = resume and not (out / COMPLETE_MARKER).exists()
    if existing and not overwrite and not interrupted:
        listed = ", ".join(str(p) for p in existing)
        raise FileExistsError(
            f"{listed} already exist(s); pass --overwrite or choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as err:
        raise ValueError(f"--out {out} is not writable: {err.strerror or err}") from err
    marker = out / COMPLETE_MARKER
    if marker.exists() and (overwrite or resume):
        marker.unlink()  # the set is about to change: it is incomplete until rewritten


def mark_complete(out: Path, names: tuple[str, ...], verdict: str) -> None:
    """Write :data:`COMPLETE_MARKER` last (atomically), listing the outputs."""
    listing = json.dumps({"files": list(names), "convergence": verdict}, indent=1)
    write_atomic(out / COMPLETE_MARKER, lambda tmp: tmp.write_text(listing))
