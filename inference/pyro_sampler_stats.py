"""Per-draw NUTS/HMC statistics Pyro does not return: tree depth and energy.

Pyro's ``MCMC`` reports divergences and the acceptance rate only. The convergence guards
(:mod:`bayes_irl.inference.convergence`) also need, per draw,

* the number of leapfrog steps, from which the NUTS tree depth follows
  (``depth = ceil(log2(steps + 1))``; a draw at ``max_tree_depth`` had its trajectory cut
  short), and
* the Hamiltonian ``E_n = K(r_n) + U(q_{n-1})`` just after the momentum is resampled at
  transition n, whose E-BFMI (Betancourt 2016) tells whether momentum resampling explores
  the energy distribution.

:class:`SamplerStatsRecorder` measures both without changing the sampler: it counts calls
of the kernel's potential function (each leapfrog step evaluates it once) and reads the
first kinetic-energy evaluation of every transition, by wrapping two methods of the kernel
instance. Pass ``recorder.hook`` as ``MCMC(hook_fn=...)`` and call
:meth:`SamplerStatsRecorder.attach` on the kernel before running. This relies on Pyro 1.9's
``HMC._kinetic_energy`` and ``potential_fn`` attributes (pinned ``pyro-ppl<1.10``; a test
checks it still works).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["SamplerStatsRecorder"]


class SamplerStatsRecorder:
    """Record leapfrog steps, tree depth and energy of every kept draw of one chain.

    Attributes:
        tree_depth: list of ints, one per kept draw.
        num_steps: leapfrog steps per kept draw.
        energy: Hamiltonian after momentum resampling, one per kept draw.
    """

    def __init__(self) -> None:
        self.tree_depth: list[int] = []
        self.num_steps: list[int] = []
        self.energy: list[float] = []
        self._calls = 0
        self._first_kinetic: float | None = None
        self._kernel = None
        self._previous_potential = float("nan")

    def attach(self, kernel) -> None:
        """Wrap ``kernel``'s kinetic energy now and its potential function at first use."""
        self._kernel = kernel
        kinetic = kernel._kinetic_energy

        def counted_kinetic(r_unscaled):
            value = kinetic(r_unscaled)
            if self._first_kinetic is None:
                self._first_kinetic = float(value)
            return value

        kernel._kinetic_energy = counted_kinetic

    def _wrap_potential(self) -> None:
        kernel = self._kernel
        if kernel is None or getattr(kernel.potential_fn, "_counted", False):
            return
        potential = kernel.potential_fn

        def counted_potential(params):
            self._calls += 1
            return potential(params)

        counted_potential._counted = True
        kernel.potential_fn = counted_potential

    def hook(self, kernel, samples, stage: str, i: int) -> None:
        """``MCMC(hook_fn=...)``: called after every draw (warm-up and sampling)."""
        self._wrap_potential()
        if stage == "Sample":
            steps = self._calls
            cached = kernel._fetch_from_cache()[1] if hasattr(kernel, "_fetch_from_cache") else None
            self.num_steps.append(steps)
            self.tree_depth.append(int(math.ceil(math.log2(steps + 1))) if steps > 0 else 0)
            self.energy.append(
                float("nan") if self._first_kinetic is None or cached is None
                else self._first_kinetic + self._previous_potential
            )
        cached = kernel._fetch_from_cache()[1] if hasattr(kernel, "_fetch_from_cache") else None
        self._previous_potential = float(cached) if cached is not None else float("nan")
        self._calls = 0
        self._first_kinetic = None

    @property
    def previous_potential(self) -> float:
        """The potential at the chain's current position; saved with a checkpoint.

        The energy of the next draw adds the next kinetic energy to it.
        """
        return self._previous_potential

    def attach_potential(self, kernel, previous_potential: float) -> None:
        """Continue recording a chain restored from a checkpoint at its next transition.

        Wraps the potential now (a fresh chain wraps it at its first warm-up transition)
        and forgets what rebuilding the kernel evaluated, so the restored chain's
        statistics continue exactly as the uninterrupted chain's would.
        """
        self._kernel = kernel
        self._wrap_potential()
        self._previous_potential = previous_potential
        self._calls = 0
        self._first_kinetic = None

    @classmethod
    def restored(cls, stats: dict[str, np.ndarray]) -> SamplerStatsRecorder:
        """A recorder holding the :meth:`stats` of a chain saved in a checkpoint."""
        recorder = cls()
        recorder.tree_depth = list(stats["tree_depth"])
        recorder.num_steps = list(stats["n_steps"])
        recorder.energy = list(stats["energy"])
        return recorder

    def stats(self) -> dict[str, np.ndarray]:
        """``tree_depth``, ``n_steps`` and ``energy`` arrays of shape (draws,)."""
        return {
            "tree_depth": np.asarray(self.tree_depth, dtype=np.int64),
            "n_steps": np.asarray(self.num_steps, dtype=np.int64),
            "energy": np.asarray(self.energy, dtype=float),
        }
