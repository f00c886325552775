r"""Hamiltonian Monte Carlo with a fixed trajectory length, as a pure kernel.

Like :mod:`~bayes_irl.inference.backends.nuts_kernel`: :func:`init` builds an
:class:`HMCState` of arrays and numbers only, :func:`step` maps it to the next state and
an :class:`HMCInfo` under ArviZ's ``sample_stats`` names; adaptation is
:mod:`~bayes_irl.inference.backends.adaptation`. The algorithm is Pyro's ``HMC`` with
``trajectory_length`` (in whitened coordinates z = loc + L x, where the mass matrix is I):

* ``max(1, int(trajectory_length / step_size))`` leapfrog steps from a fresh momentum
  r ~ N(0, I) (the integration time stays fixed while the step size adapts);
* a Metropolis test with probability min(1, exp(H0 - H1)); an energy error above 1000 is
  a divergence (the proposal is then rejected in effect). A trajectory that reaches a
  non-finite potential is cut there and rejected.

Example:
    >>> import numpy as np
    >>> class Gaussian:
    ...     def value_and_grad(self, z):
    ...         return 0.5 * z @ z, z
    >>> state = init(Gaussian(), np.zeros(2), np.random.default_rng(0).bit_generator.state,
    ...              inverse_mass_matrix=np.eye(2), step_size=0.5, trajectory_length=1.5)
    >>> state, info = step(state, Gaussian())
    >>> info.n_steps
    3
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from bayes_irl.inference.backends.hamiltonian import (
    MAX_DELTA_ENERGY,
    Point,
    energy,
    generator,
    leapfrog,
    position,
    whitened_start,
)

__all__ = ["HMCInfo", "HMCState", "init", "position", "step"]


class HMCState(NamedTuple):
    """Everything the next HMC transitions depend on (arrays and numbers only).

    Attributes:
        x: the position in whitened coordinates, shape (D,); z = ``loc + chol @ x``.
        potential_energy: U(z) at the position.
        grad: dU/dx at the position, shape (D,).
        loc: the whitening centre, shape (D,).
        chol: the lower Cholesky factor L of the inverse mass matrix, shape (D, D).
        step_size: the leapfrog step size (in x).
        trajectory_length: the integration time per transition (in x).
        rng_state: the NumPy ``bit_generator.state`` of the chain's generator.
    """

    x: np.ndarray
    potential_energy: float
    grad: np.ndarray
    loc: np.ndarray
    chol: np.ndarray
    step_size: float
    trajectory_length: float
    rng_state: dict


class HMCInfo(NamedTuple):
    """One transition, under ArviZ's ``sample_stats`` names.

    Attributes:
        diverging: whether the energy error exceeded 1000 (or became non-finite).
        n_steps: leapfrog steps taken.
        energy: the Hamiltonian just after the momentum was resampled (for E-BFMI).
        acceptance_rate: the Metropolis acceptance probability min(1, exp(H0 - H1)).
        step_size: the step size used.
        lp: the log density -U(z) of the new position (unconstrained, Jacobian included).
    """

    diverging: bool
    n_steps: int
    energy: float
    acceptance_rate: float
    step_size: float
    lp: float


def init(
    potential,
    z0: np.ndarray,
    rng_state: dict,
    *,
    loc: np.ndarray | None = None,
    inverse_mass_matrix: np.ndarray | None = None,
    chol: np.ndarray | None = None,
    step_size: float,
    trajectory_length: float,
) -> HMCState:
    """The HMC state at ``z0`` (D,).

    The arguments are those of :func:`~bayes_irl.inference.backends.nuts_kernel.init`, with
    ``trajectory_length`` (> 0, the integration time in x) instead of the tree-depth cap.

    Raises:
        ValueError: when neither or both of ``inverse_mass_matrix`` and ``chol`` are given,
            or ``trajectory_length`` <= 0.
    """
    if not trajectory_length > 0:
        raise ValueError(f"trajectory_length must be > 0; got {trajectory_length}")
    p, loc, chol = whitened_start(potential, z0, loc=loc,
                                  inverse_mass_matrix=inverse_mass_matrix, chol=chol)
    return HMCState(p.x, p.potential, p.grad, loc, chol, float(step_size),
                    float(trajectory_length), dict(rng_state))


def step(state: HMCState, potential) -> tuple[HMCState, HMCInfo]:
    """One HMC transition from ``state`` on ``potential``.

    Returns:
        ``(next state, info)``.
    """
    rng = generator(state.rng_state)
    current = Point(state.x, rng.standard_normal(state.x.shape), state.grad,
                    state.potential_energy)
    start_energy = energy(current)
    num_steps = max(1, int(state.trajectory_length / state.step_size))
    new, taken = current, 0
    for _ in range(num_steps):
        new = leapfrog(potential, state.loc, state.chol, new, state.step_size)
        taken += 1
        if not math.isfinite(new.potential):
            break
    delta = energy(new) - start_energy
    if not math.isfinite(delta):
        delta = math.inf
    accept_prob = min(1.0, math.exp(-delta)) if delta > -700 else 1.0
    if rng.uniform() < accept_prob:
        current = new
    new_state = state._replace(x=current.x, potential_energy=current.potential,
                               grad=current.grad, rng_state=rng.bit_generator.state)
    info = HMCInfo(diverging=bool(delta > MAX_DELTA_ENERGY), n_steps=taken,
                   energy=start_energy, acceptance_rate=accept_prob,
                   step_size=state.step_size, lp=-current.potential)
    return new_state, info
