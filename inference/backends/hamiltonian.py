r"""Whitened Hamiltonian dynamics on a potential: the pieces NUTS, HMC and their adaptation share.

A dense inverse mass matrix Sigma = L L^T is applied by whitening: the sampler moves
x (D,), with the potential's unconstrained vector z = loc + L x, so in x the mass matrix is
the identity and

    H(x, r) = U(loc + L x) + r . r / 2,    dU/dx = L^T dU/dz.

:func:`leapfrog` is one velocity-Verlet step of that Hamiltonian; :func:`point` evaluates
the potential at a whitened position. Both use only ``potential.value_and_grad`` (float64
NumPy), so they run on any :class:`~bayes_irl.protocols.Potential`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["MAX_DELTA_ENERGY", "Point", "energy", "generator", "leapfrog", "point", "position",
           "whitened_start"]

MAX_DELTA_ENERGY = 1000.0
"""An energy error above this is a divergence (Pyro's and Stan's threshold)."""


@dataclass
class Point:
    """A phase-space point in whitened coordinates.

    Attributes:
        x: position, shape (D,).
        r: momentum, shape (D,).
        grad: dU/dx at ``x``, shape (D,).
        potential: U at ``x`` (a float).
    """

    x: np.ndarray
    r: np.ndarray
    grad: np.ndarray
    potential: float


def point(potential, loc: np.ndarray, chol: np.ndarray, x: np.ndarray,
          r: np.ndarray) -> Point:
    """The :class:`Point` at whitened position ``x`` (D,) with momentum ``r`` (D,)."""
    value, grad = potential.value_and_grad(loc + chol @ x)
    return Point(x, r, chol.T @ grad, float(value))


def leapfrog(potential, loc: np.ndarray, chol: np.ndarray, start: Point, step: float) -> Point:
    """One leapfrog step of size ``step`` (negative: backwards in time) from ``start``."""
    r = start.r - 0.5 * step * start.grad
    x = start.x + step * r
    value, grad = potential.value_and_grad(loc + chol @ x)
    grad_x = chol.T @ grad
    return Point(x, r - 0.5 * step * grad_x, grad_x, float(value))


def energy(p: Point) -> float:
    """The Hamiltonian ``U + r . r / 2`` at ``p``."""
    return p.potential + 0.5 * float(p.r @ p.r)


def generator(rng_state: dict) -> np.random.Generator:
    """A NumPy generator continuing ``rng_state`` (a ``bit_generator.state`` dict)."""
    bit_generator = getattr(np.random, rng_state["bit_generator"])()
    bit_generator.state = rng_state
    return np.random.Generator(bit_generator)


def position(state) -> np.ndarray:
    """The potential's z at a kernel state: ``loc + chol @ x``, shape (D,)."""
    return state.loc + state.chol @ state.x


def whitened_start(
    potential,
    z0: np.ndarray,
    *,
    loc: np.ndarray | None,
    inverse_mass_matrix: np.ndarray | None,
    chol: np.ndarray | None,
) -> tuple[Point, np.ndarray, np.ndarray]:
    """The starting point of a chain at ``z0`` (D,) in whitened coordinates x.

    ``z = loc + chol @ x`` with ``chol`` the Cholesky factor of the inverse mass matrix
    (give exactly one of the two); ``loc`` defaults to zeros.

    Returns:
        ``(point, loc, chol)``: the point at rest (zero momentum) and the whitening used.

    Raises:
        ValueError: when neither or both of ``inverse_mass_matrix`` and ``chol`` are given.
    """
    if (inverse_mass_matrix is None) == (chol is None):
        raise ValueError("give exactly one of inverse_mass_matrix and chol")
    z0 = np.asarray(z0, dtype=np.float64)
    loc = np.zeros_like(z0) if loc is None else np.asarray(loc, dtype=np.float64)
    if chol is None:
        chol = np.linalg.cholesky(np.asarray(inverse_mass_matrix, dtype=np.float64))
    chol = np.asarray(chol, dtype=np.float64)
    x = np.linalg.solve(chol, z0 - loc)
    return point(potential, loc, chol, x, np.zeros_like(x)), loc, chol
