r"""Iterate averaging (Polyak & Juditsky 1992) of SVI's parameters, as an SVI callback.

With a noisy gradient (a fresh importance bank at every step, minibatches) the final SVI
iterate scatters around the optimum by about the step size times the gradient noise.
The average of the iterates over the last part of the run,

    lambda_bar = (1 / (N - N0)) sum_{s = N0}^{N - 1} lambda_s,

has that noise averaged out (its error shrinks like 1 / sqrt(N - N0) for a fixed step).
:class:`IterateAveraging` keeps the running mean of every parameter in Pyro's param store
(in the unconstrained space, where the optimiser moves) from step ``start`` on and writes
it back at the last step, so the draws that follow come from the averaged guide.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro
import torch

from bayes_irl.validation import positive_int

__all__ = ["IterateAveraging", "chain_callbacks"]


class IterateAveraging:
    """SVI callback: average the parameters over steps ``start .. num_steps - 1``.

    Args:
        num_steps: the SVI run's number of steps (the callback writes the average back
            after step ``num_steps - 1``).
        start: first averaged step; a float in (0, 1) is a fraction of ``num_steps``
            (default: the second half).

    Raises:
        ValueError: for a ``start`` outside [0, num_steps).

    Example:
        >>> averaging = IterateAveraging(num_steps=1000)
        >>> averaging.start
        500
    """

    def __init__(self, num_steps: int, *, start: float | int = 0.5) -> None:
        self.num_steps = positive_int(num_steps, "num_steps")
        first = int(start * num_steps) if isinstance(start, float) else int(start)
        if not 0 <= first < self.num_steps:
            raise ValueError(f"start must lie in [0, num_steps) = [0, {num_steps}); got {start!r}")
        self.start = first
        self._sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def __call__(self, step: int, loss: float, guide: Callable) -> None:
        """Accumulate the parameters; at the last step replace them by their average."""
        if step < self.start:
            return
        store = pyro.get_param_store()
        with torch.no_grad():
            for name, value in store.named_parameters():
                if name in self._sums:
                    self._sums[name] += value.detach()
                else:
                    self._sums[name] = value.detach().clone()
            self.count += 1
            if step == self.num_steps - 1:
                for name, value in store.named_parameters():
                    if name in self._sums:
                        value.copy_(self._sums[name] / self.count)


def chain_callbacks(*callbacks: Callable | None) -> Callable[[int, float, Callable], None]:
    """One SVI callback that calls each of ``callbacks`` (None entries skipped) in order."""
    active = [c for c in callbacks if c is not None]

    def chained(step: int, loss: float, guide: Callable) -> None:
        for callback in active:
            callback(step, loss, guide)

    return chained
