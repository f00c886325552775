r"""Gaussian SVI in NumPy on a potential with a NumPy gradient: the fast path's SVI loop.

Pyro's SVI step costs several milliseconds of tracing and autograd bookkeeping, more than
the lean potential's gradient itself (:class:`bayes_irl.models.lean_potential.LeanPotential`).
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
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["LeanSVIFit", "fit_gaussian_guide"]

_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8


@dataclass
class LeanSVIFit:
    """What :func:`fit_gaussian_guide` returns.

    Attributes:
        loc: the guide's mean mu, shape (D,).
        scale_tril: the guide's Cholesky factor L, shape (D, D) (diagonal for mean-field).
        losses: negative ELBO estimate per step, shape (num_steps_run,).
        converged: whether the stationarity rule stopped the run before ``num_steps``.
        stationarity: ``max |mean| + 2 se`` of the standardised gradients over the
            averaged tail (the rule's statistic; compare with ``tol``).
        num_evaluations: potential evaluations (2 · num_pairs per step).
        wall_time: seconds in the loop.
        state: the loop's complete state (parameters, Adam moments, RNG, window
            statistics), for checkpoints.
    """

    loc: np.ndarray
    scale_tril: np.ndarray
    losses: np.ndarray
    converged: bool
    stationarity: float
    num_evaluations: int
    wall_time: float
    state: dict


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
    state: dict | None = None,
    on_step: Callable[[int, dict], None] | None = None,
) -> LeanSVIFit:
    """Maximise the ELBO of a Gaussian guide started at the Laplace fit (module docstring).

    Args:
        value_and_grad: ``theta (D,) -> (U, dU/dtheta)``, float64 NumPy.
        loc: the MAP mu_0, shape (D,).
        covariance: the Laplace covariance H_0^{-1}, shape (D, D).
        mean_field: fit a diagonal L (``AutoNormal``) instead of a full one
            (``AutoMultivariateNormal``).
        num_steps: the most steps (Adam updates).
        seed: seeds the loop's NumPy generator (the eps draws).
        learning_rate: Adam step size in the whitened parameters (units of Laplace sds).
        num_pairs: antithetic pairs per step (2 · num_pairs gradient evaluations).
        window: steps per stationarity window (>= 2).
        tol: the stopping tolerance, in posterior sds for the mean and relative for the
            scales.
        state: a ``LeanSVIFit.state`` to continue from (a checkpoint), or None.
        on_step: called as ``on_step(steps_done, state)`` after each step (checkpoints);
            it may raise to interrupt the run.

    Returns:
        The :class:`LeanSVIFit`.

    Raises:
        ValueError: for a bad ``num_steps``, ``learning_rate``, ``num_pairs``, ``window``
            or ``tol``, or a covariance that is not positive definite.
        FloatingPointError: if the potential or its gradient becomes non-finite.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1; got {num_steps}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0; got {learning_rate}")
    if num_pairs < 1:
        raise ValueError(f"num_pairs must be >= 1; got {num_pairs}")
    if window < 2:
        raise ValueError(f"window must be >= 2; got {window}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0; got {tol}")
    start_time = time.perf_counter()
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
    lower = np.tril_indices(dim, -1)
    rows, cols = np.tril_indices(dim) if not mean_field else (np.arange(dim), np.arange(dim))
    num_scores = dim + len(rows)

    if state is None:
        state = {
            "step": 0,
            "params": np.zeros(2 * dim + (0 if mean_field else len(lower[0]))),
            "adam_m": None,
            "adam_v": None,
            "rng": np.random.default_rng(seed).bit_generator.state,
            "losses": [],
            "batches": [],  # per window: sums of scores, iterates and (theta, grad) moments
            "batch": _empty_batch(dim, num_scores),
            "cv": (grad0 - hessian0 @ loc0, hessian0),  # c(theta) = b + C theta
            "stationarity": math.inf,
            "converged": False,
            "result": None,
        }
    else:
        state = copy.deepcopy(state)
    rng = np.random.default_rng()
    rng.bit_generator.state = state["rng"]

    def unpack(params: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m, d, off = params[:dim], params[dim:2 * dim], params[2 * dim:]
        tri = np.diag(np.exp(d))
        if not mean_field:
            tri[lower] = off
        return m, d, tri

    params = state["params"].copy()
    if state["adam_m"] is None:
        state["adam_m"], state["adam_v"] = np.zeros_like(params), np.zeros_like(params)
    adam_m, adam_v = state["adam_m"].copy(), state["adam_v"].copy()
    beta1, beta2 = _ADAM_BETAS
    evaluations = 0
    constant = 0.5 * dim * (1.0 + math.log(2.0 * math.pi))

    while state["step"] < num_steps and not state["converged"]:
        m, d, tri = unpack(params)
        mu = loc0 + chol0 @ m
        chol = whiten @ tri  # L, lower triangular (diagonal for mean-field)
        eps = rng.standard_normal((num_pairs, dim))
        eps = np.concatenate([eps, -eps])  # antithetic: (2 · num_pairs, D)
        thetas = mu + eps @ chol.T
        values = np.empty(len(eps))
        grads = np.empty((len(eps), dim))
        for k, theta in enumerate(thetas):
            values[k], grads[k] = _evaluate(value_and_grad, theta)
        evaluations += len(eps)
        # control variate c(theta) = b + C theta, fitted on earlier steps only (so it does
        # not depend on this step's eps): E_q[c] = b + C mu, E_q[c eps^T] = C L
        intercept, slope = state["cv"]
        residual = grads - (intercept + thetas @ slope.T)
        grad_mu = residual.mean(0) + intercept + slope @ mu
        outer = residual.T @ eps / len(eps) + slope @ chol  # E[grad U eps^T]
        # the loss with the quadratic model Q of U at the Laplace fit: U - Q + E_q[Q]
        offset, centred = mu - loc0, thetas - loc0
        quad = potential0 + centred @ grad0 + 0.5 * np.einsum("kd,de,ke->k", centred,
                                                               hessian0, centred)
        expected_quad = (potential0 + offset @ grad0 + 0.5 * offset @ hessian0 @ offset
                         + 0.5 * np.sum(hessian0 * (chol @ chol.T)))
        log_det = float(np.log(np.diag(chol)).sum())
        loss = float((values - quad).mean() + expected_quad - log_det - constant)
        if not np.isfinite(loss):
            raise FloatingPointError(f"the ELBO became {loss} at step {state['step']}")
        state["losses"].append(loss)
        # standardised gradients: mean score a and half the scale score R (docstring)
        scores = np.concatenate([chol0.T @ grad_mu,
                                 0.5 * ((chol.T @ outer)[rows, cols] - (rows == cols))])
        _accumulate(state["batch"], scores, mu, chol, thetas, grads)
        # gradients in the whitened parameters (m, d = log diag T, off = T below diag)
        g_m = chol0.T @ grad_mu
        g_tri = whiten.T @ outer
        g_d = np.diag(g_tri) * np.exp(d) - 1.0  # entropy: d/dd_i sum_i d_i = 1
        gradient = np.concatenate([g_m, g_d, g_tri[lower] if not mean_field else []])
        state["step"] += 1
        t = state["step"]
        adam_m = beta1 * adam_m + (1 - beta1) * gradient
        adam_v = beta2 * adam_v + (1 - beta2) * gradient**2
        params = params - learning_rate * (adam_m / (1 - beta1**t)) / (
            np.sqrt(adam_v / (1 - beta2**t)) + _ADAM_EPS)
        if state["batch"]["count"] == window:
            state["batches"].append(state["batch"])
            state["batch"] = _empty_batch(dim, num_scores)
            _check_tail(state, tol=tol, dim=dim)
        state["params"], state["adam_m"], state["adam_v"] = params, adam_m, adam_v
        state["rng"] = rng.bit_generator.state
        if on_step is not None:
            on_step(t, state)

    if state["result"] is not None:
        mu, chol = state["result"]
    else:  # fewer steps than two windows: the last iterate
        m, _, tri = unpack(params)
        mu, chol = loc0 + chol0 @ m, whiten @ tri
    return LeanSVIFit(
        loc=np.asarray(mu),
        scale_tril=np.asarray(chol),
        losses=np.asarray(state["losses"]),
        converged=bool(state["converged"]),
        stationarity=float(state["stationarity"]),
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


def _accumulate(batch: dict, scores, mu, chol, thetas, grads) -> None:
    batch["count"] += 1
    batch["scores"] += scores
    batch["scores_sq"] += scores**2
    batch["loc"] += mu
    batch["tril"] += chol
    batch["samples"] += len(thetas)
    batch["theta"] += thetas.sum(0)
    batch["grad"] += grads.sum(0)
    batch["theta_theta"] += thetas.T @ thetas
    batch["grad_theta"] += grads.T @ thetas


def _check_tail(state: dict, *, tol: float, dim: int) -> None:
    """After a window: average the tail, refit the control variate, apply the stopping rule.

    The tail is the last half of the windows so far; see the module docstring.
    """
    batches = state["batches"]
    tail = batches[len(batches) // 2:]
    total = {k: sum(b[k] for b in tail) for k in tail[0]}
    steps = total["count"]
    state["result"] = (total["loc"] / steps, total["tril"] / steps)
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
            state["cv"] = (mean_grad - slope @ mean_theta, slope)
    if len(tail) < 2:
        return
    means = np.stack([b["scores"] / b["count"] for b in tail])
    mean = total["scores"] / steps
    per_step = np.maximum(total["scores_sq"] / steps - mean**2, 0.0) * steps / (steps - 1)
    # the larger of the i.i.d. and the batch-means standard errors (iterates are correlated)
    se = np.maximum(np.sqrt(per_step / steps), means.std(0, ddof=1) / math.sqrt(len(tail)))
    state["stationarity"] = float((np.abs(mean) + 2 * se).max())
    state["converged"] = len(tail) >= _MIN_TAIL_BATCHES and state["stationarity"] <= tol


def _evaluate(value_and_grad, theta: np.ndarray) -> tuple[float, np.ndarray]:
    value, grad = value_and_grad(theta)
    if not (np.isfinite(value) and np.isfinite(grad).all()):
        raise FloatingPointError(
            f"the potential (or its gradient) became {value} at theta={theta}; check the data "
            "and the prior, or fit with svi_backend='pyro'")
    return float(value), np.asarray(grad, dtype=np.float64)
