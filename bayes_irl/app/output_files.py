"""Crash-safe output files for the ``bayes-irl`` commands."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["write_atomic"]


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Write ``path`` through a temporary file, then rename: a crash never leaves half a file.

    Args:
        path: the final file.
        write: called with the temporary path (same folder, hidden name, not ending in
            ``path``'s suffix: writers that infer a format from the name must be told it).
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
