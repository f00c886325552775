"""Diagnostics of importance-sampling estimates: ESS and Pareto-smoothed k-hat.

For log-weights l_k (k = 1..K) of samples from a proposal q for a target ∝ p:

* log Z_hat = logsumexp_k l_k - log K (unbiased for Z, biased low for log Z by Jensen);
* the Kish effective sample size ESS = (sum w)^2 / sum w^2;
* PSIS k-hat (Vehtari et al. 2024, "Pareto smoothed importance sampling"): the shape of
  a generalised Pareto fit to the largest weights. k-hat < 0.5 is reliable, 0.5-0.7 is
  acceptable with slower convergence, and above 0.7 the estimate cannot be trusted (the
  variance of the weights is effectively infinite at the sample size used).

Expected mode shift. A bank of log-weights that is reused for every theta (a fixed bank)
errs in the self-normalised feature mean E_wbar[phi] by about sd(phi) / sqrt(ESS). With n
observations the log-likelihood's score is n (phi_bar - E_wbar[phi]) and its curvature
n Cov(phi), so the posterior mode moves by Cov^-1 delta while the posterior sd is about
(n Cov)^-1/2: in posterior-sd units the shift is

    sqrt(n / ESS)   per coordinate (root mean square),

which :attr:`ImportanceDiagnostics.mode_shift` reports next to k-hat. At n = 300 and
ESS = 1000 that is 0.55 sd: the bank must be refreshed (its errors then average out over
steps) or much larger, even when k-hat is fine.

Sequential Monte Carlo. After resampling a bank holds duplicated paths with equal
weights; the k-hat and ESS of those weights say nothing about the sweep. The sweep's own
diagnostics (:func:`smc_relative_variance`, conditional ESS from the incremental weights)
are computed from the genealogy: with W the final normalised weights, E_k the time-0
ancestor ("Eve") of particle k and R intermediate resampling events, the Lee & Whiteley
(2018) estimator of the relative variance of Z_hat is

    V = 1 - (K / (K - 1))^(R + 1) * sum_{i, j: E_i != E_j} W_i W_j,

which reduces to the importance-sampling estimate (K sum W^2 - 1) / (K - 1) when R = 0.
Its equivalent ESS is 1 / (V + 1 / K). The conditional ESS of step t (Zhou, Johansen &
Aston 2016) is K (sum_k W_k G_k)^2 / sum_k W_k G_k^2 with W the weights before the step and
G the incremental weights.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import arviz as az
import numpy as np
import torch

__all__ = [
    "ImportanceWarning",
    "ImportanceDiagnostics",
    "effective_sample_size",
    "importance_diagnostics",
    "log_mean_exp",
    "KHAT_THRESHOLD",
    "MODE_SHIFT_THRESHOLD",
    "conditional_ess",
    "smc_relative_variance",
]

MODE_SHIFT_THRESHOLD = 0.2
"""Above this expected mode shift (posterior sd) a fixed bank biases the posterior visibly."""

KHAT_THRESHOLD = 0.7
"""Above this PSIS k-hat an importance estimate is unreliable (Vehtari et al.)."""


class ImportanceWarning(UserWarning):
    """An importance estimate is unreliable (PSIS k-hat above :data:`KHAT_THRESHOLD`).

    The one warning class of every importance-sampling estimator in bayes_irl (tabular and
    simulator normalisers, SMC, the importance back-end), so a single filter controls all.
    """


@dataclass(frozen=True)
class ImportanceDiagnostics:
    """Diagnostics of one importance-sampling estimate.

    Attributes:
        num_samples: K.
        ess: Kish effective sample size, in [1, K].
        khat: PSIS Pareto shape estimate (NaN when K is too small to fit it).
        log_z: the estimate log Z_hat (float).
        log_z_std_error: delta-method standard error of log Z_hat, sqrt(Var(w) / K) / mean(w).
        num_observations: n, the observations whose likelihood uses this estimate (None:
            unknown).
    """

    num_samples: int
    ess: float
    khat: float
    log_z: float
    log_z_std_error: float
    num_observations: int | None = None

    @property
    def mode_shift(self) -> float:
        """Expected posterior-mode shift of a fixed bank, ``sqrt(n / ESS)`` posterior sd.

        NaN when ``num_observations`` is unknown (see the module docstring).
        """
        if self.num_observations is None:
            return math.nan
        return math.sqrt(self.num_observations / self.ess)

    @property
    def reliable(self) -> bool:
        """True when k-hat is below :data:`KHAT_THRESHOLD`."""
        return bool(self.khat < KHAT_THRESHOLD)


def log_mean_exp(log_weights: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Return ``logsumexp(log_weights, dim) - log K`` (differentiable), K = size of ``dim``."""
    return torch.logsumexp(log_weights, dim=dim) - math.log(log_weights.shape[dim])


def effective_sample_size(log_weights: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Kish effective sample size ``(sum w)^2 / sum w^2`` of unnormalised log-weights.

    The one ESS function of bayes_irl (importance normalisers, SMC, active learning).

    Args:
        log_weights: any shape; ``-inf`` entries are zero weights.
        dim: the dimension of the K weights.

    Returns:
        ESS in [1, K], shape ``log_weights.shape`` without ``dim`` (not differentiable).
    """
    with torch.no_grad():
        w = torch.softmax(log_weights, dim=dim)
        return 1.0 / (w**2).sum(dim)


def pareto_smooth(log_weights: np.ndarray) -> tuple[np.ndarray, float]:
    """Pareto-smooth one vector of log-weights (ArviZ ``psislw``).

    Args:
        log_weights: shape (K,), finite or -inf (zero weight), at least one finite.

    Returns:
        The smoothed log-weights (K,) and the PSIS k-hat. Zero weights enter the tail fit
        50 nats below the smallest finite log-weight (ArviZ needs finite values).
    """
    finite = np.isfinite(log_weights)
    lw = np.where(finite, log_weights, log_weights[finite].min() - 50.0)
    with warnings.catch_warnings():
        # ArviZ warns when k-hat is high; the caller decides what to do with it.
        warnings.simplefilter("ignore")
        smoothed, khat = az.psislw(lw.copy())
    return smoothed, float(np.asarray(khat))


def importance_diagnostics(
    log_weights: torch.Tensor, *, num_observations: int | None = None
) -> ImportanceDiagnostics:
    """Compute ESS, PSIS k-hat and the standard error for one vector of log-weights.

    Args:
        log_weights: shape (K,), finite or -inf (zero weight); NaN or +inf raise.
        num_observations: n, for :attr:`ImportanceDiagnostics.mode_shift`.

    Returns:
        The :class:`ImportanceDiagnostics`.

    Raises:
        ValueError: if the log-weights contain NaN or +inf, or are all -inf.
    """
    lw = log_weights.detach().to(torch.float64).cpu().reshape(-1)
    if torch.isnan(lw).any() or (lw == torch.inf).any():
        raise ValueError("log_weights contain NaN or +inf; check the reward and the proposal")
    if not torch.isfinite(lw).any():
        raise ValueError("every log-weight is -inf: the proposal never hits the target's support")
    k = lw.numel()
    w = torch.exp(lw - lw.max())
    ess = float(effective_sample_size(lw))
    mean_w = w.mean()
    se = float(w.std(unbiased=True) / math.sqrt(k) / mean_w) if k > 1 else math.inf
    khat = math.nan
    spread = float(lw[torch.isfinite(lw)].max() - lw[torch.isfinite(lw)].min())
    if spread <= 1e-9 * max(1.0, float(lw[torch.isfinite(lw)].abs().max())):
        # Equal weights (a perfect proposal): there is no tail to fit. ArviZ's PSIS
        # returns inf here, which would flag the best possible estimate as unreliable.
        khat = -math.inf
    elif k >= 10:
        _, khat = pareto_smooth(lw.numpy())
    log_z = float(torch.logsumexp(lw, 0) - math.log(k))
    return ImportanceDiagnostics(
        num_samples=k, ess=ess, khat=khat, log_z=log_z, log_z_std_error=se,
        num_observations=num_observations,
    )


def conditional_ess(log_weights: torch.Tensor, log_increments: torch.Tensor) -> float:
    """Conditional ESS of one SMC step, in [1, K] (Zhou, Johansen & Aston 2016).

    Args:
        log_weights: log W of the particles before the step (unnormalised), shape (K,).
        log_increments: log G, the step's incremental log-weights, shape (K,).

    Returns:
        ``K (sum W G)^2 / sum W G^2`` with W normalised.
    """
    with torch.no_grad():
        log_w = torch.log_softmax(log_weights.to(torch.float64), -1)
        g = log_increments.to(torch.float64)
        k = log_w.shape[-1]
        num = 2 * torch.logsumexp(log_w + g, -1)
        den = torch.logsumexp(log_w + 2 * g, -1)
        return float(k * torch.exp(num - den))


def smc_relative_variance(
    log_weights: torch.Tensor, eves: torch.Tensor, num_resamples: int
) -> float:
    """Lee & Whiteley's (2018) estimate of Var(Z_hat) / Z^2 of an SMC sweep.

    Args:
        log_weights: final unnormalised log-weights, shape (K,).
        eves: int time-0 ancestor of each final particle, shape (K,).
        num_resamples: R, intermediate resampling events of the sweep.

    Returns:
        V >= -1 / K (a float; see the module docstring). Large V (>= 1) means the sweep's
        estimate cannot be trusted; V close to 1 with few distinct Eves signals
        path degeneracy (the estimator then under-states the variance).
    """
    with torch.no_grad():
        w = torch.softmax(log_weights.to(torch.float64), -1)
        k = w.shape[0]
        per_eve = torch.zeros(k, dtype=torch.float64).index_add(0, eves.cpu(), w.cpu())
        distinct_pairs = 1.0 - float((per_eve**2).sum())
        return 1.0 - (k / (k - 1)) ** (num_resamples + 1) * distinct_pairs
