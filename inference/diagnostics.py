"""Diagnostics of importance-sampling estimates: ESS and Pareto-smoothed k-hat.

For log-weights l_k (k = 1..K) of samples from a proposal q for a target ∝ p:

* log Z_hat = logsumexp_k l_k - log K (unbiased for Z, biased low for log Z by Jensen);
* the Kish effective sample size ESS = (sum w)^2 / sum w^2;
* PSIS k-hat (Vehtari et al. 2024, "Pareto smoothed importance sampling"): the shape of
  a generalised Pareto fit to the largest weights. k-hat < 0.5 is reliable, 0.5-0.7 is
  acceptable with slower convergence, and above 0.7 the estimate cannot be trusted (the
  variance of the weights is effectively infinite at the sample size used).
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
]

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
    """

    num_samples: int
    ess: float
    khat: float
    log_z: float
    log_z_std_error: float

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


def importance_diagnostics(log_weights: torch.Tensor) -> ImportanceDiagnostics:
    """Compute ESS, PSIS k-hat and the standard error for one vector of log-weights.

    Args:
        log_weights: shape (K,), finite or -inf (zero weight); NaN or +inf raise.

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
        finite = lw.numpy()
        finite = np.where(np.isfinite(finite), finite, finite[np.isfinite(finite)].min() - 50.0)
        with warnings.catch_warnings():
            # ArviZ warns when k-hat is high; the caller decides what to do with it.
            warnings.simplefilter("ignore")
            _, khat_arr = az.psislw(finite.copy())
        khat = float(np.asarray(khat_arr))
    log_z = float(torch.logsumexp(lw, 0) - math.log(k))
    return ImportanceDiagnostics(num_samples=k, ess=ess, khat=khat, log_z=log_z, log_z_std_error=se)
