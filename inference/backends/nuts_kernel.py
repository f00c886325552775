r"""The No-U-Turn Sampler as a pure kernel: ``init`` and ``step`` over an explicit state.

BlackJAX style (``blackjax/mcmc/nuts.py``): :func:`init` builds a :class:`NUTSState` of
arrays and numbers only, :func:`step` maps a state to the next state and a
:class:`NUTSInfo` of the transition, named as ArviZ's ``sample_stats``. Nothing is kept
between calls; the RNG is in the state (a ``bit_generator.state`` dict), so a saved state
continues bit-identically. Step-size and mass-matrix adaptation are apart, in
:mod:`~bayes_irl.inference.backends.adaptation`.

The algorithm is Pyro's (and Stan's) NUTS in float64 NumPy on a potential's
``value_and_grad`` (Pyro's kernel costs ~0.9 ms of bookkeeping per leapfrog step):

* a dense mass matrix applied by whitening, z = loc + L x
  (:mod:`~bayes_irl.inference.backends.hamiltonian`), so in x the mass matrix is I;
* trajectories doubled in a random direction until the no-U-turn criterion (the summed
  momentum rho against the end momenta: rho·r^- <= 0 or rho·r^+ <= 0, checked on every
  subtree and on the whole tree) or ``max_tree_depth``;
* multinomial sampling within a subtree and biased progressive sampling between the old
  tree and a new subtree (Betancourt 2017, "A conceptual introduction to HMC", A.3.2);
* a divergence when the energy error exceeds 1000; the divergent subtree is discarded.

Example:
    >>> import numpy as np
    >>> class Gaussian:
    ...     def value_and_grad(self, z):
    ...         return 0.5 * z @ z, z
    >>> state = init(Gaussian(), np.zeros(2), np.random.default_rng(0).bit_generator.state,
    ...              inverse_mass_matrix=np.eye(2), step_size=0.5, max_tree_depth=5)
    >>> state, info = step(state, Gaussian())
    >>> position(state).shape, info.n_steps >= 1
    ((2,), True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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

__all__ = ["NUTSInfo", "NUTSState", "init", "position", "step"]


class NUTSState(NamedTuple):
    """Everything the next NUTS transitions depend on (arrays and numbers only).

    Attributes:
        x: the position in whitened coordinates, shape (D,); the potential's z is
            ``loc + chol @ x`` (:func:`position`).
        potential_energy: U(z) at the position.
        grad: dU/dx at the position, shape (D,).
        loc: the whitening centre, shape (D,).
        chol: the lower Cholesky factor L of the inverse mass matrix, shape (D, D).
        step_size: the leapfrog step size (in x).
        max_tree_depth: at most ``2**max_tree_depth - 1`` leapfrog steps per transition.
        rng_state: the NumPy ``bit_generator.state`` of the chain's generator.
    """

    x: np.ndarray
    potential_energy: float
    grad: np.ndarray
    loc: np.ndarray
    chol: np.ndarray
    step_size: float
    max_tree_depth: int
    rng_state: dict


class NUTSInfo(NamedTuple):
    """One transition, under ArviZ's ``sample_stats`` names.

    Attributes:
        diverging: whether the trajectory diverged (energy error > 1000).
        tree_depth: doublings done.
        n_steps: leapfrog steps taken.
        energy: the Hamiltonian just after the momentum was resampled (for E-BFMI).
        acceptance_rate: the mean acceptance statistic min(1, exp(H0 - H)) over the
            trajectory's states (what dual averaging adapts towards its target).
        step_size: the step size used.
        lp: the log density -U(z) of the new position (unconstrained, Jacobian included).
    """

    diverging: bool
    tree_depth: int
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
    max_tree_depth: int,
) -> NUTSState:
    """The NUTS state at ``z0`` (D,), whitened by ``loc`` and the inverse mass matrix.

    Args:
        potential: a :class:`~bayes_irl.protocols.Potential` (only ``value_and_grad`` is
            used).
        z0: the starting position in the potential's coordinates, shape (D,).
        rng_state: a NumPy ``bit_generator.state`` dict, e.g.
            ``np.random.default_rng(seed).bit_generator.state``.
        loc: the whitening centre (e.g. the MAP), shape (D,); default zeros.
        inverse_mass_matrix: Sigma, shape (D, D); give it or its Cholesky factor ``chol``.
        chol: the lower Cholesky factor of Sigma, shape (D, D).
        step_size: the leapfrog step size (adaptation refines it).
        max_tree_depth: the tree-depth cap (>= 1).

    Returns:
        The :class:`NUTSState`.

    Raises:
        ValueError: when neither or both of ``inverse_mass_matrix`` and ``chol`` are given,
            or ``max_tree_depth`` < 1.
    """
    if max_tree_depth < 1:
        raise ValueError(f"max_tree_depth must be >= 1; got {max_tree_depth}")
    p, loc, chol = whitened_start(potential, z0, loc=loc,
                                  inverse_mass_matrix=inverse_mass_matrix, chol=chol)
    return NUTSState(p.x, p.potential, p.grad, loc, chol, float(step_size),
                     int(max_tree_depth), dict(rng_state))


@dataclass
class _Tree:
    left: Point
    right: Point
    proposal: Point
    log_weight: float  # log sum over the tree's states of exp(H0 - H)
    rho: np.ndarray  # summed momenta
    turning: bool
    diverging: bool
    accept_sum: float
    num_steps: int


def _turning(rho: np.ndarray, r_left: np.ndarray, r_right: np.ndarray) -> bool:
    """The no-U-turn criterion with identity mass matrix (whitened coordinates)."""
    return bool(rho @ r_left <= 0 or rho @ r_right <= 0)


def _build(potential, state: NUTSState, rng: np.random.Generator, start: Point,
           direction: int, depth: int, start_energy: float) -> _Tree:
    """A subtree of ``2**depth`` leapfrog steps from ``start`` in ``direction``."""
    if depth == 0:
        new = leapfrog(potential, state.loc, state.chol, start, direction * state.step_size)
        delta = energy(new) - start_energy
        if not math.isfinite(delta):
            delta = math.inf
        diverging = delta > MAX_DELTA_ENERGY
        return _Tree(new, new, new, -delta, new.r.copy(), False, diverging,
                     min(1.0, math.exp(-delta)) if delta > -700 else 1.0, 1)
    first = _build(potential, state, rng, start, direction, depth - 1, start_energy)
    if first.turning or first.diverging:
        return first
    edge = first.right if direction > 0 else first.left
    second = _build(potential, state, rng, edge, direction, depth - 1, start_energy)
    left, right = (first.left, second.right) if direction > 0 else (second.left, first.right)
    accept_sum = first.accept_sum + second.accept_sum
    num_steps = first.num_steps + second.num_steps
    if second.turning or second.diverging:
        return _Tree(left, right, first.proposal, first.log_weight, first.rho, True,
                     second.diverging, accept_sum, num_steps)
    log_weight = np.logaddexp(first.log_weight, second.log_weight)
    # multinomial sampling within the subtree
    if math.log(rng.uniform()) < second.log_weight - log_weight:
        proposal = second.proposal
    else:
        proposal = first.proposal
    rho = first.rho + second.rho
    turning = _turning(rho, left.r, right.r)
    return _Tree(left, right, proposal, float(log_weight), rho, turning, False,
                 accept_sum, num_steps)


def step(state: NUTSState, potential) -> tuple[NUTSState, NUTSInfo]:
    """One NUTS transition from ``state`` on ``potential``.

    Args:
        state: a :class:`NUTSState` (not modified).
        potential: a :class:`~bayes_irl.protocols.Potential`.

    Returns:
        ``(next state, info)``.
    """
    rng = generator(state.rng_state)
    r = rng.standard_normal(state.x.shape)
    current = Point(state.x, r, state.grad, state.potential_energy)
    start_energy = energy(current)
    left = right = proposal = current
    log_weight, rho = 0.0, r.copy()
    accept_sum, num_steps, depth, diverging = 0.0, 0, 0, False
    while depth < state.max_tree_depth:
        direction = 1 if rng.uniform() < 0.5 else -1
        edge = right if direction > 0 else left
        sub = _build(potential, state, rng, edge, direction, depth, start_energy)
        depth += 1
        accept_sum += sub.accept_sum
        num_steps += sub.num_steps
        if sub.diverging:
            diverging = True
            break
        if sub.turning:
            break
        # biased progressive sampling: prefer the new subtree
        if math.log(rng.uniform()) < sub.log_weight - log_weight:
            proposal = sub.proposal
        if direction > 0:
            right = sub.right
        else:
            left = sub.left
        log_weight = float(np.logaddexp(log_weight, sub.log_weight))
        rho = rho + sub.rho
        if _turning(rho, left.r, right.r):
            break
    new_state = state._replace(x=proposal.x, potential_energy=proposal.potential,
                               grad=proposal.grad, rng_state=rng.bit_generator.state)
    info = NUTSInfo(diverging=diverging, tree_depth=depth, n_steps=num_steps,
                    energy=start_energy, acceptance_rate=accept_sum / max(num_steps, 1),
                    step_size=state.step_size, lp=-proposal.potential)
    return new_state, info
