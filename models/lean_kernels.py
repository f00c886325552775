r"""Compiled kernels of the lean potential (optional: with Numba installed).

:class:`bayes_irl.models.lean_potential.LeanPotential` evaluates the causal demonstration
model's log-likelihood term and its gradient,

    L(r) = sum_{t, s} W[t, s] V_t(s),
    V_t(s) = log sum_a exp(r[s, a] + sum_s' p(s'|s, a) V_{t+1}(s')),

with V_T = 0, by a NumPy loop over t: about ten NumPy calls per time step and direction,
whose per-call overhead (microseconds each on arrays of a few hundred entries) is most of
its cost at gridworld sizes. :func:`causal_kernel` gives the same recursion as one
compiled loop (Numba, ``cache=True``: compiled once per machine, then loaded from the
cache). The backward pass accumulates dL/dr[s, a] = sum_t pi_t(a|s) A_t(s) with the adjoint
A_0 = W[0], A_{t+1}(s') = W[t+1, s'] + sum_{s, a} p(s'|s, a) pi_t(a|s) A_t(s), exactly as
the NumPy loop does (same order of operations up to floating-point rounding).

``NUMBA_AVAILABLE`` says whether Numba is installed; without it the NumPy loop is used.
"""

from __future__ import annotations

import functools
import importlib.util

import numpy as np

__all__ = ["NUMBA_AVAILABLE", "causal_kernel"]

NUMBA_AVAILABLE = importlib.util.find_spec("numba") is not None


@functools.cache
def causal_kernel():
    """The compiled :func:`_causal_value_and_grad`, or None without Numba.

    Numba is imported on the first call only (its import costs about a second), so a
    process that never evaluates a causal potential does not pay for it.
    """
    if not NUMBA_AVAILABLE:
        return None
    import numba

    return numba.njit(cache=True, nogil=True)(_causal_value_and_grad)


def _causal_value_and_grad(local, indptr, indices, data, weights, num_states, num_actions):
    """``(L, dL/dr)`` for r = ``local`` (S·A,), P in CSR (S·A, S), W = ``weights`` (T+1, S)."""
    horizon = weights.shape[0] - 1
    policies = np.empty((horizon, num_states, num_actions))
    value = np.zeros(num_states)
    q = np.empty(num_actions)
    total = 0.0
    for t in range(horizon - 1, -1, -1):
        new_value = np.empty(num_states)
        for s in range(num_states):
            top = -np.inf
            for a in range(num_actions):
                row = s * num_actions + a
                acc = local[row]
                for k in range(indptr[row], indptr[row + 1]):
                    acc += data[k] * value[indices[k]]
                q[a] = acc
                if acc > top:
                    top = acc
            norm = 0.0
            for a in range(num_actions):
                e = np.exp(q[a] - top)
                policies[t, s, a] = e
                norm += e
            for a in range(num_actions):
                policies[t, s, a] /= norm
            new_value[s] = np.log(norm) + top
        value = new_value
        for s in range(num_states):
            total += weights[t, s] * value[s]
    grad = np.zeros(num_states * num_actions)
    adjoint = weights[0].copy()
    for t in range(horizon):
        following = weights[t + 1].copy()
        for s in range(num_states):
            for a in range(num_actions):
                row = s * num_actions + a
                g = policies[t, s, a] * adjoint[s]
                grad[row] += g
                for k in range(indptr[row], indptr[row + 1]):
                    following[indices[k]] += data[k] * g
        adjoint = following
    return total, grad
