"""Leave the caller's global random state and Pyro parameters as they were found.

Pyro's back-ends seed the global RNGs (``pyro.set_rng_seed`` seeds ``random``, numpy and
torch) and clear Pyro's global param store. :func:`preserve_global_state` saves the RNG
states before a call and restores them after it (also on error), and puts back every
parameter of the caller's param store that the call removed. Parameters the fit created
stay (the fitted guide needs them); on a name clash the fit's value wins.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import pyro
import torch

__all__ = ["preserve_global_state"]

F = TypeVar("F", bound=Callable)


def preserve_global_state(function: F) -> F:
    """Decorate ``function`` to restore ``random``, numpy, torch (CPU, CUDA) and user params."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        python_state = random.getstate()
        numpy_state = np.random.get_state()  # noqa: NPY002 - the user's legacy global stream
        torch_state = torch.random.get_rng_state()
        cuda_state = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        store = pyro.get_param_store()
        saved = store.get_state()
        try:
            return function(*args, **kwargs)
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)  # noqa: NPY002
            torch.random.set_rng_state(torch_state)
            if cuda_state is not None:
                torch.cuda.set_rng_state_all(cuda_state)
            missing = [name for name in saved["params"] if name not in store]
            store.set_state({
                "params": {name: saved["params"][name] for name in missing},
                "constraints": {name: saved["constraints"][name] for name in missing},
            })

    return wrapper  # type: ignore[return-value]
