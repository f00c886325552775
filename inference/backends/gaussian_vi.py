r"""Gaussian VI in NumPy as a pure kernel (``init``/``step`` over an explicit state) and its loop.

Pyro's SVI step costs several milliseconds of tracing and autograd bookkeeping, more than
a fast potential's gradient itself.
For the Gaussian guides q = N(mu, L L^T) (full rank, L lower triangular with a positive
diagonal; mean-field: L diagonal) this module maximises the same ELBO,

    ELBO(mu, L) = -E_{eps ~ N(0, I)}[U(mu + L eps)] + log|det L| + D/2 (1 + log 2 pi),

with plain float64 arrays:

* reparameterised gradients from ``num_pairs`` antithetic pairs (eps, -eps) per step:
  ``d/dmu = E[grad U]``, ``d/dL = tril(E[grad U eps^T]) - diag(1 / L_ii)`` (the entropy's
  gradient is exact);
* a control variate with known expectation, a linear model of the gradient
  c(theta) = b + C theta: E_q[c] = b + C mu and E_q[c eps^T] = C L, so only the residual
  grad U - c is estimated by Monte Carlo. It starts as the linearisation at the Laplace
  fit (C = H_0, the Hessian there) and is refitted by least squares on the (theta,
  grad U) pairs of the averaged tail (below) after every window. It depends only on
  earlier steps, so the estimator stays unbiased; for a near-Gaussian posterior the
  residual, and with it the gradient noise, is small;
* Adam on whitened parameters: mu = mu_0 + L_0 m with L_0 the Laplace Cholesky factor,
  and L = W T with W = L_0 (full rank) or diag(1/sqrt(diag H_0)) (mean-field), T lower
  triangular (diagonal) with its diagonal as exp(d). The run starts at the Laplace fit
  (m = 0, T = I), where the target is close to N(0, I).

Stopping rule (ELBO-gradient stationarity). Each step records standardised gradients: the
mean score a = L_0^T E_q[grad U] (for a Gaussian posterior N(m*, S) and S = L_0 L_0^T
exactly -L_0^{-1}(mu - m*): the mean's error in posterior sds, whitened) and half the
scale score R = tril(L^T E_q[grad U eps^T]) - I (the gradient in the log-scale directions
L -> L(I + delta); in one dimension R = sigma^2 / s^2 - 1, about twice the relative sd
error). The steps are grouped in windows of ``window`` steps; after each window the tail,
the last half of the windows so far, is averaged: the means of a and R / 2 over its steps
with standard errors (the larger of the i.i.d. one and the batch-means one over its
windows, since successive iterates are correlated). The run stops when the tail has at
least 4 windows and every coordinate satisfies ``|mean| + 2 se <= tol`` (default 0.05):
the guide is within about ``tol`` posterior sds (mean) and ``tol`` relative (sds) of an
ELBO stationary point, beyond the Monte-Carlo noise. The returned guide is the average of
the tail's iterates (Polyak averaging: Adam's average iterate, not its last one, sits where
the averaged gradient vanishes). At ``num_steps`` without stopping the tail average is
returned and ``converged`` is False.

The recorded loss is the negative ELBO estimate with the quadratic control variate
(the quadratic model of U at the Laplace fit, whose Gaussian expectation is exact), so its
trace is smooth enough for the SVI loss guard.

Kernel form (BlackJAX style): :func:`init` gives a :class:`GaussianVIState` (arrays,
numbers and the RNG's ``bit_generator.state``; the run's fixed quantities in
:class:`GaussianVIConstants`), :func:`step` maps it to the next state and a
:class:`GaussianVIInfo`, and :func:`fit_gaussian_guide` is the loop that calls them until
the stopping rule or ``num_steps``; a checkpoint is the saved state.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from bayes_irl.inference.backends.hamiltonian import generator

__all__ = ["GaussianVIConstants", "GaussianVIFit", "GaussianVIInfo", "GaussianVIState",
           "fit_gaussian_guide", "init", "step"]

_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8


class GaussianVIConstants(NamedTuple):
    """The run's fixed quantities (computed once by :func:`init`).

    Attributes:
        loc0: the MAP mu_0, shape (D,).
        chol0: the Laplace Cholesky factor L_0, shape (D, D).
        hessian0: H_0, the inverse Laplace covariance, shape (D, D).
        whiten: W: L_0 (full rank) or diag(1/sqrt(diag H_0)) (mean-field), shape (D, D).
        potential0: U(mu_0).
        grad0: dU/dz at mu_0, shape (D,).
        mean_field: whether L is diagonal.
        learning_rate: Adam's step size in the whitened parameters.
        num_pairs: antithetic pairs per step.
        window: steps per stationarity window.
        tol: the stopping tolerance.
    """

    loc0: np.ndarray
    chol0: np.ndarray
    hessian0: np.ndarray
    whiten: np.ndarray
    potential0: float
    grad0: np.ndarray
    mean_field: bool
    learning_rate: float
    num_pairs: int
    window: int
    tol: float


class GaussianVIState(NamedTuple):
    """Everything the next steps depend on (arrays, numbers, the RNG state).

    Attributes:
        step: steps done.
        params: the whitened parameters (m (D,), d = log diag T (D,), T's entries below the
            diagonal (D(D-1)/2, full rank only)).
        adam_m: Adam's first moment, shaped like ``params``.
        adam_v: Adam's second moment, shaped like ``params``.
        rng_state: the NumPy ``bit_generator.state`` of the eps draws.
        losses: the negative ELBO estimate per step so far, shape (step,).
        batches: per finished window, the sums of its scores, iterates and (theta, grad)
            moments (a tuple of dicts of arrays).
        batch: the same sums for the window under way.
        cv: the control variate ``(b (D,), C (D, D))``, c(theta) = b + C theta.
        stationarity: the stopping rule's statistic over the averaged tail (inf before
            two windows).
        converged: whether the stopping rule has fired.
        result: the tail average ``(mu (D,), L (D, D))``, or None before the first window.
        constants: the :class:`GaussianVIConstants`.
    """

    step: int
    params: np.ndarray
    adam_m: np.ndarray
    adam_v: np.ndarray
    rng_state: dict
    losses: np.ndarray
    batches: tuple
    batch: dict
    cv: tuple
    stationarity: float
    converged: bool
    result: tuple | None
    constants: GaussianVIConstants


class GaussianVIInfo(NamedTuple):
    """One step.

    Attributes:
        loss: the negative ELBO estimate (with the quadratic control variate).
        num_evaluations: potential evaluations taken (2 · num_pairs).
    """

    loss: float
    num_evaluations: int


@dataclass
class GaussianVIFit:
    """What :func:`fit_gaussian_guide` returns.

    Attributes:
        loc: the guide's mean mu, shape (D,).
        scale_tril: the guide's Cholesky factor L, shape (D, D) (diagonal for mean-field).
        losses: negative ELBO estimate per step, shape (num_steps_run,).
        converged: whether the stationarity rule stopped the run before ``num_steps``.
        stationarity: ``max |mean| + 2 se`` of the standardised gradients over the
            averaged tail (the rule's statistic; compare with ``tol``).
        num_evaluations: potential evaluations in this run (2 · num_pairs per step).
        wall_time: seconds in the loop.
        state: the final :class:`GaussianVIState`, for checkpoints.
    """

    loc: np.ndarray
    scale_tril: np.ndarray
    losses: np.ndarray
    converged: bool
    stationarity: float
    num_evaluations: int
    wall_time: float
    state: GaussianVIState


def init(
    value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]],
    *,
    loc: np.ndarray,
    covariance: np.ndarray,
    mean_field: bool,
    seed: int,
    learning_rate: float = 0.01,
    num_pairs: int = 1,
    window: int = 25,
    tol: float = 0.05,
) -> GaussianVIState:
    """The state at the Laplace fit (m = 0, T = I), one potential evaluation at ``loc``.

    Args:
        value_and_grad: ``theta (D,) -> (U, dU/dtheta)``, float64 NumPy.
        loc: the MAP mu_0, shape (D,).
        covariance: the Laplace covariance H_0^{-1}, shape (D, D).
        mean_field: fit a diagonal L (``AutoNormal``) instead of a full one
            (``AutoMultivariateNormal``).
        seed: seeds the NumPy generator of the eps draws.
        learning_rate: Adam step size in the whitened parameters (units of Laplace sds).
        num_pairs: antithetic pairs per step (2 · num_pairs gradient evaluations).
        window: steps per stationarity window (>= 2).
        tol: the stopping tolerance, in posterior sds for the mean and relative for the
            scales.

    Returns:
        The :class:`GaussianVIState`.

    Raises:
        ValueError: for a bad ``learning_rate``, ``num_pairs``, ``window`` or ``tol``, or
            a covariance that is not positive definite.
        FloatingPointError: if the potential or its gradient is non-finite at ``loc``.
    """
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0; got {learning_rate}")
    if num_pairs < 1:
        raise ValueError(f"num_pairs must be >= 1; got {num_pairs}")
    if window < 2:
        raise ValueError(f"window must be >= 2; got {window}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0; got {tol}")
    loc0 = np.asarray(loc, dtype=np.float64)
    cov0 = np.asarray(covariance, dtype=np.float64)
    dim = loc0.shape[0]
    try:
        chol0 = np.linalg.cholesky(cov0)
    except np.linalg.LinAlgError as error:
        raise ValueError("covariance must be positive definite") from error
    hessian0 = np.linalg.inv(cov0)
    hessian0 = 0.5 * (hessian0 + hessian0.T)
    if mean_field:
        # the mean-field optimum for a Gaussian target: sds 1/sqrt(diag H_0)
        whiten = np.diag(1.0 / np.sqrt(np.diag(hessian0)))
    else:
        whiten = chol0
    potential0, grad0 = _evaluate(value_and_grad, loc0)
    constants = GaussianVIConstants(loc0, chol0, hessian0, whiten, potential0, grad0,
                                    bool(mean_field), float(learning_rate), int(num_pairs),
                                    int(window), float(tol))
    params = np.zeros(2 * dim + (0 if mean_field else dim * (dim - 1) // 2))
    return GaussianVIState(
        step=0, params=params, adam_m=np.zeros_like(params), adam_v=np.zeros_like(params),
        rng_state=np.random.default_rng(seed).bit_generator.state, losses=np.empty(0),
        batches=(), batch=_empty_batch(dim, _num_scores(dim, mean_field)),
        cv=(grad0 - hessian0 @ loc0, hessian0), stationarity=math.inf, converged=False,
        result=None, constants=constants)


def _num_scores(dim: int, mean_field: bool) -> int:
    return dim + (dim if mean_field else dim * (dim + 1) // 2)


def _unpack(c: GaussianVIConstants, params: np.ndarray):
    """``(mu (D,), L (D, D), d (D,), T (D, D))`` of the whitened parameters."""
    dim = c.loc0.shape[0]
    m, d, off = params[:dim], params[dim:2 * dim], params[2 * dim:]
    tri = np.diag(np.exp(d))
    if not c.mean_field:
        tri[np.tril_indices(dim, -1)] = off
    return c.loc0 + c.chol0 @ m, c.whiten @ tri, d, tri


def guide(state: GaussianVIState) -> tuple[np.ndarray, np.ndarray]:
    """The guide ``(mu (D,), L (D, D))`` of ``state``.

    The tail average once a window is done, else the current iterate.
    """
    if state.result is not None:
        return state.result
    mu, chol, _, _ = _unpack(state.constants, state.params)
    return mu, chol


def step(state: GaussianVIState, value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]]
         ) -> tuple[GaussianVIState, GaussianVIInfo]:
    """One Adam step of the ELBO from ``state`` (not modified).

    Returns:
        ``(next state, info)``.

    Raises:
        FloatingPointError: if the potential, its gradient or the loss is non-finite.
    """
    c = state.constants
    dim = c.loc0.shape[0]
    lower = np.tril_indices(dim, -1)
    rows, cols = np.tril_indices(dim) if not c.mean_field else (np.arange(dim), np.arange(dim))
    rng = generator(state.rng_state)
    mu, chol, d, _ = _unpack(c, state.params)  # L lower triangular (diagonal for mean-field)
    eps = rng.standard_normal((c.num_pairs, dim))
    eps = np.concatenate([eps, -eps])  # antithetic: (2 · num_pairs, D)
    thetas = mu + eps @ chol.T
    values = np.empty(len(eps))
    grads = np.empty((len(eps), dim))
    for k, theta in enumerate(thetas):
        values[k], grads[k] = _evaluate(value_and_grad, theta)
    # control variate c(theta) = b + C theta, fitted on earlier steps only (so it does
    # not depend on this step's eps): E_q[c] = b + C mu, E_q[c eps^T] = C L
    intercept, slope = state.cv
    residual = grads - (intercept + thetas @ slope.T)
    grad_mu = residual.mean(0) + intercept + slope @ mu
    outer = residual.T @ eps / len(eps) + slope @ chol  # E[grad U eps^T]
    # the loss with the quadratic model Q of U at the Laplace fit: U - Q + E_q[Q]
    offset, centred = mu - c.loc0, thetas - c.loc0
    quad = c.potential0 + centred @ c.grad0 + 0.5 * np.einsum("kd,de,ke->k", centred,
                                                              c.hessian0, centred)
    expected_quad = (c.potential0 + offset @ c.grad0 + 0.5 * offset @ c.hessian0 @ offset
                     + 0.5 * np.sum(c.hessian0 * (chol @ chol.T)))
    log_det = float(np.log(np.diag(chol)).sum())
    constant = 0.5 * dim * (1.0 + math.log(2.0 * math.pi))
    loss = float((values - quad).mean() + expected_quad - log_det - constant)
    if not np.isfinite(loss):
        raise FloatingPointError(f"the ELBO became {loss} at step {state.step}")
    # standardised gradients: mean score a and half the scale score R (docstring)
    scores = np.concatenate([c.chol0.T @ grad_mu,
                             0.5 * ((chol.T @ outer)[rows, cols] - (rows == cols))])
    batch = _accumulate(state.batch, scores, mu, chol, thetas, grads)
    # gradients in the whitened parameters (m, d = log diag T, off = T below diag)
    g_m = c.chol0.T @ grad_mu
    g_tri = c.whiten.T @ outer
    g_d = np.diag(g_tri) * np.exp(d) - 1.0  # entropy: d/dd_i sum_i d_i = 1
    gradient = np.concatenate([g_m, g_d, g_tri[lower] if not c.mean_field else []])
    t = state.step + 1
    beta1, beta2 = _ADAM_BETAS
    adam_m = beta1 * state.adam_m + (1 - beta1) * gradient
    adam_v = beta2 * state.adam_v + (1 - beta2) * gradient**2
    params = state.params - c.learning_rate * (adam_m / (1 - beta1**t)) / (
        np.sqrt(adam_v / (1 - beta2**t)) + _ADAM_EPS)
    new = state._replace(step=t, params=params, adam_m=adam_m, adam_v=adam_v,
                         rng_state=rng.bit_generator.state,
                         losses=np.append(state.losses, loss), batch=batch)
    if batch["count"] == c.window:
        new = _check_tail(new._replace(batches=(*state.batches, batch),
                                       batch=_empty_batch(dim, len(scores))))
    return new, GaussianVIInfo(loss=loss, num_evaluations=len(eps))


def fit_gaussian_guide(
    value_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]],
    *,
    loc: np.ndarray,
    covariance: np.ndarray,
    mean_field: bool,
    num_steps: int,
    seed: int,
    learning_rate: float = 0.01,
    num_pairs: int = 1,
    window: int = 25,
    tol: float = 0.05,
    state: GaussianVIState | None = None,
    on_step: Callable[[int, GaussianVIState], None] | None = None,
) -> GaussianVIFit:
    """Maximise the ELBO of a Gaussian guide started at the Laplace fit (module docstring).

    :func:`init`, then :func:`step` until the stopping rule or ``num_steps``.

    Args:
        value_and_grad: ``theta (D,) -> (U, dU/dtheta)``, float64 NumPy.
        loc: the MAP mu_0, shape (D,) (as :func:`init`).
        covariance: the Laplace covariance, shape (D, D).
        mean_field: fit a diagonal L.
        num_steps: the most steps (Adam updates).
        seed: seeds the eps draws.
        learning_rate: Adam step size in the whitened parameters.
        num_pairs: antithetic pairs per step.
        window: steps per stationarity window (>= 2).
        tol: the stopping tolerance.
        state: a :class:`GaussianVIState` to continue from (a checkpoint), or None.
        on_step: called as ``on_step(steps_done, state)`` after each step (checkpoints);
            it may raise to interrupt the run.

    Returns:
        The :class:`GaussianVIFit`.

    Raises:
        ValueError: for a bad ``num_steps`` or an option :func:`init` refuses.
        FloatingPointError: if the potential or its gradient becomes non-finite.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1; got {num_steps}")
    start_time = time.perf_counter()
    fresh = init(value_and_grad, loc=loc, covariance=covariance, mean_field=mean_field,
                 seed=seed, learning_rate=learning_rate, num_pairs=num_pairs, window=window,
                 tol=tol)
    state = fresh if state is None else state
    evaluations = 0
    while state.step < num_steps and not state.converged:
        state, info = step(state, value_and_grad)
        evaluations += info.num_evaluations
        if on_step is not None:
            on_step(state.step, state)
    mu, chol = guide(state)
    return GaussianVIFit(
        loc=np.asarray(mu),
        scale_tril=np.asarray(chol),
        losses=np.asarray(state.losses),
        converged=bool(state.converged),
        stationarity=float(state.stationarity),
        num_evaluations=evaluations,
        wall_time=time.perf_counter() - start_time,
        state=state,
    )


_MIN_TAIL_BATCHES = 4
"""Windows in the averaged tail before the rule may stop (batch means need a few)."""


def _empty_batch(dim: int, num_scores: int) -> dict:
    return {"count": 0, "scores": np.zeros(num_scores), "scores_sq": np.zeros(num_scores),
            "loc": np.zeros(dim), "tril": np.zeros((dim, dim)), "samples": 0,
            "theta": np.zeros(dim), "grad": np.zeros(dim), "theta_theta": np.zeros((dim, dim)),
            "grad_theta": np.zeros((dim, dim))}


def _accumulate(batch: dict, scores, mu, chol, thetas, grads) -> dict:
    """``batch`` with one more step's sums (a new dict)."""
    return {
        "count": batch["count"] + 1,
        "scores": batch["scores"] + scores,
        "scores_sq": batch["scores_sq"] + scores**2,
        "loc": batch["loc"] + mu,
        "tril": batch["tril"] + chol,
        "samples": batch["samples"] + len(thetas),
        "theta": batch["theta"] + thetas.sum(0),
        "grad": batch["grad"] + grads.sum(0),
        "theta_theta": batch["theta_theta"] + thetas.T @ thetas,
        "grad_theta": batch["grad_theta"] + grads.T @ thetas,
    }


def _check_tail(state: GaussianVIState) -> GaussianVIState:
    """After a window: average the tail, refit the control variate, apply the stopping rule.

    The tail is the last half of the windows so far; see the module docstring.
    """
    dim = state.constants.loc0.shape[0]
    batches = state.batches
    tail = batches[len(batches) // 2:]
    total = {k: sum(b[k] for b in tail) for k in tail[0]}
    steps = total["count"]
    state = state._replace(result=(total["loc"] / steps, total["tril"] / steps))
    # control variate: least squares grad ~ b + C theta over the tail's samples
    n = total["samples"]
    if n >= 4 * (dim + 1):
        mean_theta, mean_grad = total["theta"] / n, total["grad"] / n
        cov_theta = total["theta_theta"] / n - np.outer(mean_theta, mean_theta)
        cov_grad_theta = total["grad_theta"] / n - np.outer(mean_grad, mean_theta)
        try:
            slope = np.linalg.solve(cov_theta.T, cov_grad_theta.T).T
        except np.linalg.LinAlgError:
            slope = None
        if slope is not None and np.isfinite(slope).all():
            state = state._replace(cv=(mean_grad - slope @ mean_theta, slope))
    if len(tail) < 2:
        return state
    means = np.stack([b["scores"] / b["count"] for b in tail])
    mean = total["scores"] / steps
    per_step = np.maximum(total["scores_sq"] / steps - mean**2, 0.0) * steps / (steps - 1)
    # the larger of the i.i.d. and the batch-means standard errors (iterates are correlated)
    se = np.maximum(np.sqrt(per_step / steps), means.std(0, ddof=1) / math.sqrt(len(tail)))
    stationarity = float((np.abs(mean) + 2 * se).max())
    return state._replace(
        stationarity=stationarity,
        converged=len(tail) >= _MIN_TAIL_BATCHES and stationarity <= state.constants.tol)


def _evaluate(value_and_grad, theta: np.ndarray) -> tuple[float, np.ndarray]:
    value, grad = value_and_grad(theta)
    if not (np.isfinite(value) and np.isfinite(grad).all()):
        raise FloatingPointError(
            f"the potential (or its gradient) became {value} at theta={theta}; check the data "
            "and the prior, or fit with svi_backend='pyro'")
    return float(value), np.asarray(grad, dtype=np.float64)
