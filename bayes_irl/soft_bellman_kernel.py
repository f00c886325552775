r"""The soft-Bellman recursion and its adjoint, once, as compiled pure functions of arrays.

For local scores ``local[b, s·A + a] = r(s, a) + log beta(a | s)`` (rows of S·A, a leading
batch B), transitions p(s' | s, a) stored as padded sparse rows (see
:func:`padded_transitions`) and a horizon T, :func:`soft_bellman_forward` runs

    V_T(s) = 0,   Q_t(s, a) = local(s, a) + C_t(s, a),   V_t(s) = log sum_a exp Q_t(s, a),

    global:  C_t(s, a) = log sum_{s'} p(s' | s, a) exp V_{t+1}(s')   (Ziebart et al. 2008, eq. 4)
    causal:  C_t(s, a) = sum_{s'} p(s' | s, a) V_{t+1}(s')            (Ziebart et al. 2010, eq. 6.5)

and returns V (B, T + 1, S), the policies pi_t(a | s) = exp(Q_t - V_t) (B, T, S·A) and,
for the global kind, the inverse sums 1 / g_t below (B, T, S·A).
:func:`soft_bellman_adjoint` is the reverse-mode derivative: given dL/dV_t for every t
(B, T + 1, S) it returns dL/dlocal (B, S·A) by the forward (occupancy) recursion

    gQ_t(s, a) = a_t(s) pi_t(a | s),   dL/dlocal = sum_t gQ_t,
    a_0 = dL/dV_0,   a_{t+1}(s') = dL/dV_{t+1}(s') + sum_{s, a} gQ_t(s, a) dC_t(s, a)/dV_{t+1}(s'),

with dC_t(s, a)/dV_{t+1}(s') = p(s' | s, a) exp(V_{t+1}(s') - C_t(s, a)) (global) or
p(s' | s, a) (causal).

Numerics (float64). The global kind runs in exp space with one shift per step,
m_t = max_s V_{t+1}(s): u = exp(V_{t+1} - m_t), g_t = P u, so C_t = m_t + log g_t, and with
E = exp(local - max_a local) once per call, V_t = max_a local + m_t + log sum_a E g_t and
pi_t = E g_t / sum_a E g_t: S exponentials and S logarithms per step; the adjoint's
p exp(V_{t+1}(s') - C_t(s, a)) is p u(s') / g_t(s, a). A step where some row's g_t falls
below exp(-600) (its successors' values 600 nats below the best state's, where exp-space
terms would approach the subnormal range) takes the log-space route inside the same call:
those rows get ``C = m + log sum p exp(V - m)`` with m the row's largest successor value,
the step's action sums are log-sum-exps with a shift per state, and the adjoint
recomputes those rows' weights in log space too. So any finite ``local`` gives the exact
answer up to float64 rounding. The causal kind is log-sum-exps with a shift per state
throughout. Entries of ``local`` may be -inf (a forbidden action) as long as every state
keeps one finite action; +inf and NaN are not allowed (the caller checks, see
:func:`local_is_supported`).

The recursion is written once, below: NumPy array code over the S·A rows, compiled by
Numba (``cache=True``: once per machine). Its four inner operations (a sparse product,
its transpose, two per-state normalisations) come in two implementations with one
contract: loops where compiled, NumPy expressions under ``NUMBA_DISABLE_JIT=1`` (Python
loops would be slow); the tests check them against each other. Cost per call:
O(B · T · S · A · F) time, O(B · T · S · A) memory for the saved policies and sums.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "CAUSAL",
    "GLOBAL",
    "kind_code",
    "local_is_supported",
    "padded_transitions",
    "soft_bellman_adjoint",
    "soft_bellman_forward",
]

GLOBAL = 0
"""Integer code of the global kind (C = log E exp V) for the compiled functions."""
CAUSAL = 1
"""Integer code of the causal kind (C = E V) for the compiled functions."""

_LOG_FAR = -600.0
"""A global row whose exp-space sum g has log g below this takes the log-space route."""
_FAR = float(np.exp(_LOG_FAR))


def kind_code(kind: str) -> int:
    """``GLOBAL`` or ``CAUSAL`` for ``"global"`` / ``"causal"``.

    Raises:
        ValueError: for any other kind.
    """
    if kind == "global":
        return GLOBAL
    if kind == "causal":
        return CAUSAL
    raise ValueError(f"kind must be 'global' or 'causal'; got {kind!r}")


def padded_transitions(
    successors: np.ndarray, probs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Transitions as padded sparse rows ``(successors (S·A, F) int64, probs (S·A, F) float64)``.

    Row ``s·A + a`` lists the successors s' of (s, a) with p(s' | s, a); entries with
    probability 0 are padding. Padding is pointed at the row's most likely successor, so
    that a maximum over a row's entries is a maximum over its true successors (the log-space
    route needs that); duplicates are allowed (they add up).

    Args:
        successors: s'[s, a, f] or rows (S·A, F), integers in [0, S).
        probs: p(s'[s, a, f] | s, a), the same shape, rows summing to 1.

    Returns:
        C-contiguous int64 and float64 arrays of shape (S·A, F).

    Raises:
        ValueError: for mismatched shapes, negative probabilities or a row without mass.
    """
    probs = np.asarray(probs, dtype=np.float64)
    successors = np.asarray(successors)
    if successors.shape != probs.shape or successors.ndim < 2:
        raise ValueError(
            f"successors and probs must have the same shape (..., F); got "
            f"{successors.shape} and {probs.shape}"
        )
    probs = probs.reshape(-1, probs.shape[-1])
    successors = successors.reshape(probs.shape).astype(np.int64)
    if (probs < 0).any() or not (probs.max(1) > 0).all():
        raise ValueError("every row of probs must be non-negative with positive mass")
    best = successors[np.arange(len(probs)), probs.argmax(1)]
    successors = np.where(probs > 0, successors, best[:, None])
    return np.ascontiguousarray(successors), np.ascontiguousarray(probs)


def local_is_supported(local: np.ndarray, num_actions: int) -> bool:
    """Whether ``local (..., S·A)`` suits the kernel: no NaN or +inf, a finite action per state."""
    top = local.reshape(-1, num_actions).max(1)
    return bool(np.isfinite(top).all()) and not bool(np.isnan(local).any())


# ---------------------------------------------------------------- primitives
# Four array operations the recursion is made of, each in two implementations with the
# same contract: NumPy expressions (used when Numba's JIT is disabled, where Python loops
# would be slow) and plain loops (compiled, where NumPy's temporaries would be slow). The
# tests check the two against each other; the recursion below exists once.


def _expect_numpy(x, successors, probs):
    """``(P x)[r] = sum_f probs[r, f] x[successors[r, f]]``, shape (S·A,)."""
    return (probs * x[successors.ravel()].reshape(successors.shape)).sum(1)


def _expect_loops(x, successors, probs):
    """Loop implementation of :func:`_expect_numpy`."""
    num_rows, fan_out = successors.shape
    out = np.empty(num_rows)
    for r in range(num_rows):
        acc = 0.0
        for f in range(fan_out):
            acc += probs[r, f] * x[successors[r, f]]
        out[r] = acc
    return out


def _transpose_numpy(y, successors, probs, num_states):
    """``(P^T y)[s'] = sum_{r, f: successors[r, f] = s'} probs[r, f] y[r]``, shape (S,)."""
    weights = (probs * y.reshape(-1, 1)).ravel()
    return np.bincount(successors.ravel(), weights, num_states)


def _transpose_loops(y, successors, probs, num_states):
    """Loop implementation of :func:`_transpose_numpy`."""
    num_rows, fan_out = successors.shape
    out = np.zeros(num_states)
    for r in range(num_rows):
        yr = y[r]
        if yr != 0.0:
            for f in range(fan_out):
                out[successors[r, f]] += probs[r, f] * yr
    return out


def _softmax_numpy(q, num_actions, policy):
    """``V[s] = log sum_a exp q[s·A + a]``, shape (S,); writes exp(q - V) into ``policy``."""
    q = q.reshape(-1, num_actions)
    top = q.max(1)
    e = np.exp(q - top.reshape(-1, 1))
    norm = e.sum(1)
    policy[:] = (e / norm.reshape(-1, 1)).ravel()
    return top + np.log(norm)


def _softmax_loops(q, num_actions, policy):
    """Loop implementation of :func:`_softmax_numpy` (max, then shifted sum, per state)."""
    num_states = q.shape[0] // num_actions
    out = np.empty(num_states)
    for s in range(num_states):
        base = s * num_actions
        top = q[base]
        for a in range(1, num_actions):
            top = max(top, q[base + a])
        norm = 0.0
        for a in range(num_actions):
            e = np.exp(q[base + a] - top)
            policy[base + a] = e
            norm += e
        for a in range(num_actions):
            policy[base + a] /= norm
        out[s] = top + np.log(norm)
    return out


def _weighted_numpy(scaled, g, num_actions, policy):
    """``log z[s] = log sum_a scaled[s·A + a] g[s·A + a]``, shape (S,); policy = scaled g / z."""
    w = (scaled * g).reshape(-1, num_actions)
    norm = w.sum(1)
    policy[:] = (w / norm.reshape(-1, 1)).ravel()
    return np.log(norm)


def _weighted_loops(scaled, g, num_actions, policy):
    """Loop implementation of :func:`_weighted_numpy`."""
    num_states = g.shape[0] // num_actions
    out = np.empty(num_states)
    for s in range(num_states):
        base = s * num_actions
        norm = 0.0
        for a in range(num_actions):
            w = scaled[base + a] * g[base + a]
            policy[base + a] = w
            norm += w
        for a in range(num_actions):
            policy[base + a] /= norm
        out[s] = np.log(norm)
    return out


if numba.config.DISABLE_JIT:
    _expect, _transpose = _expect_numpy, _transpose_numpy
    _softmax, _weighted = _softmax_numpy, _weighted_numpy
else:
    _expect = numba.njit(cache=True, nogil=True)(_expect_loops)
    _transpose = numba.njit(cache=True, nogil=True)(_transpose_loops)
    _softmax = numba.njit(cache=True, nogil=True)(_softmax_loops)
    _weighted = numba.njit(cache=True, nogil=True)(_weighted_loops)


@numba.njit(cache=True, nogil=True)
def _row_max(x):
    """``x.max(1)`` of x (R, C) as C vector operations (Numba's max has no axis)."""
    top = x[:, 0].copy()
    for j in range(1, x.shape[1]):
        top = np.maximum(top, x[:, j])
    return top


@numba.njit(cache=True, nogil=True)
def _log_expect_rows(rows, next_values, successors, probs):
    """``log sum_f p[r, f] exp V[s'[r, f]]`` for the given rows, with a shift per row.

    Returns the log sums (len(rows),) and the weights p exp(V' - C), (len(rows), F).
    """
    succ = successors[rows]
    gathered = next_values[succ.ravel()].reshape(succ.shape)
    top = _row_max(gathered)
    terms = probs[rows] * np.exp(gathered - top.reshape(-1, 1))
    norm = terms[:, 0].copy()
    for f in range(1, succ.shape[1]):
        norm += terms[:, f]
    return top + np.log(norm), terms / norm.reshape(-1, 1)


@numba.njit(cache=True, nogil=True)
def soft_bellman_forward(local, successors, probs, num_actions, horizon, kind):
    """Soft values, policies and inverse sums of the backward recursion (module docstring).

    Args:
        local: r(s, a) + log beta(a | s), shape (B, S·A), float64, rows ``s·A + a``.
        successors: padded successor rows (S·A, F) int64 (:func:`padded_transitions`).
        probs: their probabilities (S·A, F) float64, 0 at padding.
        num_actions: A.
        horizon: T >= 0.
        kind: ``GLOBAL`` or ``CAUSAL``.

    Returns:
        ``(values, policies, inverse_sums)``: V[b, t, s] of shape (B, T + 1, S) with
        V[:, T] = 0; pi_t(a | s) at [b, t, s·A + a], shape (B, T, S·A); for the global
        kind 1 / g_t = exp(m_t - C_t(s, a)) in the same layout, 0 where the row took the
        log-space route (shape (B, 0, S·A) for the causal kind).
    """
    batch, num_rows = local.shape
    num_states = num_rows // num_actions
    values = np.zeros((batch, horizon + 1, num_states))
    policies = np.empty((batch, horizon, num_rows))
    inverse_sums = np.zeros((batch, horizon if kind == GLOBAL else 0, num_rows))
    for b in range(batch):
        # global kind: exp(Q - max_a local - m) = E g with E = exp(local - max_a local), so
        # V = max_a local + m + log sum_a E g: S exponentials and S logarithms per step
        top = _row_max(local[b].reshape(num_states, num_actions))
        scaled = np.exp(local[b].reshape(num_states, num_actions) - top.reshape(-1, 1)).ravel()
        for t in range(horizon - 1, -1, -1):
            following = values[b, t + 1]
            if kind == GLOBAL:
                shift = following.max()
                g = _expect(np.exp(following - shift), successors, probs)
                far = np.nonzero(g < _FAR)[0]
                if far.size == 0:
                    log_z = _weighted(scaled, g, num_actions, policies[b, t])
                    values[b, t] = top + shift + log_z
                    inverse_sums[b, t] = 1.0 / g
                    continue
                # some rows' sums are too small for exp space: log space for them
                cont = shift + np.log(np.maximum(g, _FAR))
                cont[far] = _log_expect_rows(far, following, successors, probs)[0]
                inverse = 1.0 / np.maximum(g, _FAR)
                inverse[far] = 0.0
                inverse_sums[b, t] = inverse
            else:
                cont = _expect(following, successors, probs)
            values[b, t] = _softmax(local[b] + cont, num_actions, policies[b, t])
    return values, policies, inverse_sums


@numba.njit(cache=True, nogil=True)
def soft_bellman_adjoint(
    grad_values, values, policies, inverse_sums, successors, probs, num_actions, kind
):
    """dL/dlocal from dL/dV by the occupancy recursion (module docstring).

    Args:
        grad_values: dL/dV[b, t, s], shape (B, T + 1, S) (every t, including T).
        values: V (B, T + 1, S) from :func:`soft_bellman_forward`.
        policies: pi (B, T, S·A) from the forward.
        inverse_sums: 1 / g (B, T, S·A) from the forward (global kind).
        successors: the padded successor rows (S·A, F) given to the forward.
        probs: their probabilities (S·A, F).
        num_actions: A.
        kind: ``GLOBAL`` or ``CAUSAL`` (as in the forward).

    Returns:
        dL/dlocal, shape (B, S·A).
    """
    batch, horizon, num_rows = policies.shape
    num_states = num_rows // num_actions
    grad_local = np.zeros((batch, num_rows))
    for b in range(batch):
        adjoint = grad_values[b, 0].copy()
        for t in range(horizon):
            grad_q = (policies[b, t].reshape(num_states, num_actions)
                      * adjoint.reshape(-1, 1)).ravel()
            grad_local[b] += grad_q
            if kind == GLOBAL:
                # p exp(V' - C) = p u / g with u = exp(V' - m)
                following = values[b, t + 1]
                inverse = inverse_sums[b, t]
                back = np.exp(following - following.max()) * _transpose(
                    grad_q * inverse, successors, probs, num_states)
                far = np.nonzero(inverse == 0.0)[0]
                if far.size > 0:  # log space, as the forward did for these rows
                    weights = _log_expect_rows(far, following, successors, probs)[1]
                    back += _transpose(grad_q[far], successors[far], weights, num_states)
            else:
                back = _transpose(grad_q, successors, probs, num_states)
            adjoint = back + grad_values[b, t + 1]
    return grad_local
