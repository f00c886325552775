r"""Rank statistics of simulation-based calibration: fractional ranks, coverage, uniformity.

The statistics :func:`bayes_irl.inference.calibration.run_calibration` computes from the
ranks of N simulations (see :mod:`bayes_irl.inference.calibration` for the simulations).
The fractional rank of the truth among L posterior draws,

    u_s = (rank_s + U_s) / (L + 1),   U_s ~ Uniform(0, 1),

is exactly Uniform(0, 1) under a calibrated posterior (Talts et al. 2018). The central
c-interval of the draws contains the truth iff |u - 1/2| <= c / 2, so its coverage is the
mean of that indicator over simulations.

Uniformity test: the ECDF F_N of the N values u_s at K evaluation points z_i. Under
uniformity N F_N(z_i) ~ Binomial(N, z_i); the statistic

    gamma = min_i 2 min(Bin(N F_N(z_i); N, z_i), 1 - Bin(N F_N(z_i) - 1; N, z_i))

(Säilynoja et al. 2022, eq. 6) is small where the ECDF leaves its pointwise band anywhere;
its p-value comes from ``num_null`` seeded simulations of gamma under uniformity, and
"inside the 95% simultaneous band" is p > 0.05 (the band ArviZ draws with
``az.plot_ecdf(..., confidence_bands=True)``). A run is flagged miscalibrated when any
quantity's p-value is below ``alpha / Q`` (Bonferroni over the Q quantities).
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import stats

from bayes_irl.validation import positive_int

__all__ = [
    "COVERAGE_LEVELS",
    "coverage",
    "expected_coverage_band",
    "fractional_ranks",
    "uniformity_test",
]

COVERAGE_LEVELS = (0.5, 0.8, 0.9, 0.95)
"""Central-interval levels whose coverage is reported."""


def fractional_ranks(
    truth: np.ndarray, draws: np.ndarray, generator: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Ranks of the truth among draws (ties at random) and their fractional ranks.

    Args:
        truth: shape (Q,).
        draws: shape (L, Q).
        generator: numpy generator for the tie-breaks and the fractional part.

    Returns:
        ``(rank, pit)``: int ranks in {0, ..., L} and ``(rank + U) / (L + 1)`` in (0, 1),
        both of shape (Q,).

    Raises:
        ValueError: for mismatched shapes or NaN.
    """
    truth, draws = np.asarray(truth, dtype=float), np.asarray(draws, dtype=float)
    if draws.ndim != 2 or truth.shape != draws.shape[1:]:
        raise ValueError(
            f"draws must have shape (L, Q) and truth (Q,); got {draws.shape} and {truth.shape}"
        )
    if np.isnan(truth).any() or np.isnan(draws).any():
        raise ValueError("truth or draws contain NaN: the fit or a test quantity failed")
    below = (draws < truth).sum(0)
    ties = (draws == truth).sum(0)
    rank = below + np.floor(generator.random(truth.shape) * (ties + 1)).astype(int)
    pit = (rank + generator.random(truth.shape)) / (draws.shape[0] + 1)
    return rank, pit


def coverage(pit: np.ndarray, levels=COVERAGE_LEVELS) -> tuple[np.ndarray, np.ndarray]:
    """Coverage of central intervals from fractional ranks.

    Args:
        pit: shape (N, Q), values in (0, 1).
        levels: central-interval levels in (0, 1).

    Returns:
        ``(coverage, std_error)``, both (Q, len(levels)): the fraction of simulations with
        ``|u - 1/2| <= c / 2`` and its binomial standard error ``sqrt(c (1 - c) / N)``.
    """
    pit = np.asarray(pit, dtype=float)
    levels = np.asarray(levels, dtype=float)
    inside = np.abs(pit[:, :, None] - 0.5) <= levels / 2  # (N, Q, C)
    n = pit.shape[0]
    se = np.sqrt(levels * (1 - levels) / n) * np.ones((pit.shape[1], 1))
    return inside.mean(0), se


def _eval_points(num: int) -> np.ndarray:
    k = min(num, 100)
    return np.arange(1, k) / k


def _gamma(pit: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Säilynoja's gamma of each row of ``pit`` (M, N) at evaluation points z (K,)."""
    n = pit.shape[-1]
    counts = (np.sort(pit, -1)[..., None] <= z).sum(-2)  # (M, K)
    lower = stats.binom.cdf(counts, n, z)
    upper = stats.binom.sf(counts - 1, n, z)
    return np.minimum(1.0, 2 * np.minimum(lower, upper)).min(-1)


@functools.lru_cache(maxsize=16)
def _null_gammas(n: int, num_null: int, seed: int) -> np.ndarray:
    z = _eval_points(n)
    rng = np.random.default_rng(seed)
    out = [_gamma(rng.random((min(500, num_null - i), n)), z) for i in range(0, num_null, 500)]
    return np.sort(np.concatenate(out))


def uniformity_test(
    pit: np.ndarray, *, num_null: int = 2000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Säilynoja et al.'s simultaneous ECDF test of Uniform(0, 1) for each column.

    Args:
        pit: fractional ranks, shape (N,) or (N, Q).
        num_null: simulations of the statistic under uniformity (the p-value's resolution
            is 1 / (num_null + 1)).
        seed: seeds the null simulations.

    Returns:
        ``(gamma, p_value)``, shape (Q,) (or scalars for 1-D input). p > 0.05 means the
        ECDF stays inside the 95% simultaneous band.

    Raises:
        ValueError: for values outside [0, 1] or fewer than 2 simulations.
    """
    pit = np.asarray(pit, dtype=float)
    one = pit.ndim == 1
    pit2 = pit[:, None] if one else pit
    if pit2.shape[0] < 2 or np.isnan(pit2).any() or (pit2 < 0).any() or (pit2 > 1).any():
        raise ValueError(
            f"pit must hold >= 2 values in [0, 1] per column; got shape {pit.shape}"
        )
    n = pit2.shape[0]
    gamma = _gamma(pit2.T, _eval_points(n))  # (Q,)
    null = _null_gammas(n, positive_int(num_null, "num_null"), int(seed))
    p = (1 + np.searchsorted(null, gamma, side="right")) / (len(null) + 1)
    return (gamma[0], p[0]) if one else (gamma, p)


def expected_coverage_band(num_simulations: int, level: float, prob: float = 0.95):
    """Central ``prob`` binomial range of the coverage of a calibrated ``level`` interval."""
    lo, hi = stats.binom.interval(prob, num_simulations, level)
    return lo / num_simulations, hi / num_simulations

