r"""Warm-up adaptation of the Hamiltonian kernels, as pure functions over explicit state.

Kept apart from the kernels (:mod:`~bayes_irl.inference.backends.nuts_kernel`,
:mod:`~bayes_irl.inference.backends.hmc_kernel`), as in ``blackjax/adaptation/``. The
kernel state carries the step size and the whitening (loc, L); :class:`AdaptationState`
carries dual averaging's own numbers.

* Step size by dual averaging (Hoffman & Gelman 2014, Alg. 5; gamma = 0.05, t0 = 10,
  kappa = 0.75, mu = log(10 eps_0)) towards the mean acceptance statistic
  ``target_accept_prob``, from a step size found by doubling or halving until the
  one-step acceptance probability crosses 1/2 (:func:`find_step_size`).
* Mass matrix by Stan's windows (:func:`window_adaptation`): the first 25% of the warm-up
  adapt the step size only, the positions of the next 50% give the covariance
  (:func:`rewhiten`, shrunk towards the current mass matrix), and the last 25% adapt the
  step size afresh for it (:func:`restart`); then :func:`end` fixes the step size at the
  dual-averaging average.

Why the mass matrix is re-estimated: the Laplace covariance is the curvature at the mode;
where the posterior is skewed (the log-likelihood's curvature n Cov_theta[phi] grows
quickly on one side), the typical set is narrower than it says in some directions, and a
step size tuned in its whitened space diverges at the steep side.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from bayes_irl.inference.backends.hamiltonian import (
    Point,
    energy,
    generator,
    leapfrog,
    point,
    position,
)

__all__ = ["AdaptationState", "end", "find_step_size", "restart", "rewhiten", "update",
           "window_adaptation"]

_GAMMA, _T0, _KAPPA = 0.05, 10.0, 0.75


class AdaptationState(NamedTuple):
    """Dual averaging of the log step size.

    Attributes:
        target: the target mean acceptance statistic.
        mu: the shrinkage point, log(10 eps_0).
        h_bar: the running average of ``target - acceptance``.
        log_eps_bar: the weighted average of the log step sizes (the final one).
        count: the updates done.
    """

    target: float
    mu: float
    h_bar: float
    log_eps_bar: float
    count: int


def find_step_size(state, potential):
    """Double or halve the step size until the one-step acceptance probability crosses 1/2.

    One momentum is drawn from the state's RNG.

    Args:
        state: a kernel state (``x``, ``grad``, ``potential_energy``, ``loc``, ``chol``,
            ``step_size``, ``rng_state``).
        potential: the :class:`~bayes_irl.protocols.Potential`.

    Returns:
        The state with the new ``step_size`` and the advanced ``rng_state``.
    """
    rng = generator(state.rng_state)
    start = Point(state.x, rng.standard_normal(state.x.shape), state.grad,
                  state.potential_energy)
    start_energy = energy(start)

    def log_accept(eps: float) -> float:
        new = leapfrog(potential, state.loc, state.chol, start, eps)
        delta = start_energy - energy(new)
        return delta if math.isfinite(delta) else -math.inf

    step_size = state.step_size
    direction = 1 if log_accept(step_size) > math.log(0.5) else -1
    for _ in range(100):
        candidate = step_size * (2.0 ** direction)
        if (log_accept(candidate) > math.log(0.5)) != (direction == 1):
            break
        step_size = candidate
    return state._replace(step_size=step_size, rng_state=rng.bit_generator.state)


def restart(state, potential, target_accept_prob: float):
    """Start the dual averaging afresh from a step size found at the current position.

    Returns:
        ``(state with the found step size, AdaptationState)``.
    """
    state = find_step_size(state, potential)
    return state, AdaptationState(float(target_accept_prob), math.log(10 * state.step_size),
                                  0.0, 0.0, 0)


def update(adaptation: AdaptationState, acceptance_rate: float) -> tuple[AdaptationState,
                                                                         float]:
    """One dual-averaging update from a transition's acceptance statistic.

    Returns:
        ``(new AdaptationState, the step size for the next transition)``.
    """
    n = adaptation.count + 1
    eta = 1.0 / (n + _T0)
    h_bar = (1 - eta) * adaptation.h_bar + eta * (adaptation.target - acceptance_rate)
    log_eps = adaptation.mu - math.sqrt(n) / _GAMMA * h_bar
    weight = n ** (-_KAPPA)
    log_eps_bar = weight * log_eps + (1 - weight) * adaptation.log_eps_bar
    return adaptation._replace(h_bar=h_bar, log_eps_bar=log_eps_bar, count=n), math.exp(log_eps)


def end(state, adaptation: AdaptationState):
    """Fix the step size at the dual-averaging average (after warm-up).

    Returns:
        ``state`` with that step size; unchanged when no update was done.
    """
    if adaptation.count:
        return state._replace(step_size=math.exp(adaptation.log_eps_bar))
    return state


def rewhiten(state, potential, draws: np.ndarray, *, shrinkage: float = 5.0):
    """``state`` whitened by the covariance of ``draws`` (N, D), positions in z.

    The covariance is estimated in the current whitened coordinates and shrunk towards the
    identity there (the current mass matrix) with weight ``shrinkage / (N + shrinkage)``,
    as Stan regularises its windowed estimate; the centre becomes the draws' mean. The
    position z is kept (its whitened x, potential and gradient recomputed); the step size
    is not changed (:func:`restart` adapts it afresh).
    """
    z_now = state.loc + state.chol @ state.x
    draws = np.asarray(draws, dtype=np.float64)
    x = np.linalg.solve(state.chol, (draws - state.loc).T).T
    n, dim = x.shape
    cov_x = np.cov(x, rowvar=False).reshape(dim, dim)
    weight = n / (n + shrinkage)
    cov_x = weight * cov_x + (1 - weight) * np.eye(dim)
    loc = draws.mean(0)
    chol = state.chol @ np.linalg.cholesky(cov_x)
    x_now = np.linalg.solve(chol, z_now - loc)
    p = point(potential, loc, chol, x_now, np.zeros_like(x_now))
    return state._replace(x=p.x, potential_energy=p.potential, grad=p.grad, loc=loc,
                          chol=chol)


def window_adaptation(kernel, state, potential, num_steps: int, *, adapt_mass_matrix: bool,
                      target_accept_prob: float):
    """Warm ``state`` up over ``num_steps`` transitions of ``kernel``; the adapted state.

    First the step size is found (:func:`restart`). Without ``adapt_mass_matrix``: dual
    averaging of the step size throughout. With it, Stan's three windows: 25% step size,
    50% draws for :func:`rewhiten` then :func:`restart`, 25% step size (under 20 steps:
    the step size only). Finally :func:`end`.

    Args:
        kernel: a module (or object) with ``step(state, potential) -> (state, info)`` whose
            ``info`` has ``acceptance_rate``.
        state: the kernel's state from its ``init``.
        potential: the :class:`~bayes_irl.protocols.Potential`.
        num_steps: warm-up transitions.
        adapt_mass_matrix: also adapt the mass matrix.
        target_accept_prob: dual averaging's target.

    Returns:
        The adapted kernel state (positioned at the last warm-up draw).
    """
    state, adaptation = restart(state, potential, target_accept_prob)

    def transitions(state, adaptation, num: int, draws: list | None = None):
        for _ in range(num):
            state, info = kernel.step(state, potential)
            adaptation, step_size = update(adaptation, info.acceptance_rate)
            state = state._replace(step_size=step_size)
            if draws is not None:
                draws.append(position(state))
        return state, adaptation

    if adapt_mass_matrix and num_steps >= 20:  # fewer leave too few draws for a covariance
        first, middle = num_steps // 4, num_steps // 2
        state, adaptation = transitions(state, adaptation, first)
        draws: list = []
        state, adaptation = transitions(state, adaptation, middle, draws)
        state = rewhiten(state, potential, np.stack(draws))
        state, adaptation = restart(state, potential, target_accept_prob)
        num_steps -= first + middle
    state, adaptation = transitions(state, adaptation, num_steps)
    return end(state, adaptation)
