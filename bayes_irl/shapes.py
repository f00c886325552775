"""Shape broadcasting without importing torch's symbolic-shape machinery.

``torch.broadcast_shapes`` imports ``torch.fx.experimental.symbolic_shapes`` (and with it
SymPy) on its first call: about 1.5 s of a user's first fit. The shapes here are plain
``torch.Size`` tuples, so NumPy-style broadcasting of integers is all that is needed.
"""

from __future__ import annotations

import torch

__all__ = ["broadcast_shapes"]


def broadcast_shapes(*shapes) -> torch.Size:
    """The broadcast of integer shapes (NumPy rules), as ``torch.Size``.

    Raises:
        RuntimeError: if two shapes are not broadcastable (the message names both); the
            same exception type as ``torch.broadcast_shapes``, so callers that turn it into
            an argument error keep working.
    """
    ndim = max((len(s) for s in shapes), default=0)
    out = [1] * ndim
    for shape in shapes:
        for i, size in enumerate(shape, start=ndim - len(shape)):
            size = int(size)
            if size == out[i] or size == 1:
                continue
            if out[i] != 1:
                raise RuntimeError(
                    f"shapes {[tuple(s) for s in shapes]} are not broadcastable "
                    f"(size {size} against {out[i]} in dimension {i - ndim})"
                )
            out[i] = size
    return torch.Size(out)
