r"""Convergence guards run after every fit: no posterior comes back wrong without a word.

:func:`check_convergence` reads what the back-ends record (draws, ``sample_stats``, the
SVI loss history, importance log-weights, the normaliser's diagnostics, the MAP's Newton
decrement, the optimised objective) and chooses the checks from that record, never from
the method's name, so a back-end registered under any name is judged by what it ran. It
applies the
Stan / ArviZ criteria (Vehtari et al. 2021, "Rank-normalization, folding, and
localization"; Betancourt 2017, "A conceptual introduction to HMC"; Vehtari et al. 2024,
"Pareto smoothed importance sampling"):

==================  =================================================  ==================
check               fails when                                         applies when (typ.)
==================  =================================================  ==================
``r_hat``           rank-normalised split r_hat > 1.01 (any coord.)    MCMC, >= 2 chains
``ess_bulk``        bulk ESS < 100 per chain                           MCMC
``ess_tail``        tail ESS < 100 per chain                           MCMC
``divergences``     any divergent transition                           NUTS/HMC
``tree_depth``      > 1% of draws hit the NUTS tree-depth cap          NUTS
``e_bfmi``          E-BFMI < 0.3 in any chain                          NUTS/HMC
``svi_loss``        the loss still drifts: relative change between     SVI/Laplace (Adam)
                    the means of the last two windows > 1e-3 and
                    larger than 3 standard errors of the difference
``khat``            PSIS k-hat of the importance weights > 0.7         importance
``ess_importance``  Pareto-smoothed ESS of the weights < 100           importance
``normalizer_khat`` the importance normaliser's k-hat > 0.7 at any     estimated log Z
                    of up to 20 posterior draws
``elbo_stationar``  the fitted Gaussian guide is not a stationary      SVI, Gaussian
``ity``             point of the ELBO: the standardised mean score     guide, cheap
                    exceeds 1 beyond 3 Monte-Carlo standard errors     potential
``map_newton_dec``  the MAP is not a stationary point: the Newton      Laplace (L-BFGS)
``rement``          decrement sqrt(g^T H^{-1} g) > 1e-3 posterior sds
==================  =================================================  ==================

MAP stationarity. A Laplace fit by L-BFGS records the Newton decrement at its MAP, the
length of the remaining Newton step in the posterior's own standard deviations
(:mod:`bayes_irl.inference.backends.laplace`); a raw gradient norm is not judged, because
its rounding floor depends on n, on the feature scale and on the machine's summation order.

ELBO stationarity. For a guide q = N(m, S) (full, low-rank or mean-field) the gradient of
the ELBO in m is E_q[grad log p(theta, D)], which is zero at the optimum whatever the shape
of the posterior. With S = L L^T, the standardised score a = L^T E_q[grad log p] is, for a
Gaussian posterior N(mu, S), exactly -L^{-1} (m - mu): how many of the fit's own standard
deviations (in whitened coordinates) its mean lies from where the ELBO wants it. It is
estimated from 100 guide draws (m and L from the draws), with Monte-Carlo standard error
sd(z_k) / sqrt(100) per coordinate, and fails when ``max_k |a_k| - 3 se_k > 1``: the mean
is at least one reported sd from stationarity, beyond noise (a false alarm from noise alone
needs a 3-se deviation, p < 0.0014 per coordinate). Measured: correct SVI fits (3x3 and
5x5 gridworlds, several seeds, full and mean-field guides, Laplace and prior starts) stay
at or below 0.5 after the 3-se margin; SVI from the prior under a N(0, 1e6) prior, whose
weights ran off to 1e4-1e5 with sd 0.1-0.7 while its loss had flattened, scores 146
(3x3, 300 steps) and 5.2e3 (5x5, 5000 steps) (``benchmarks/guard_results.md``). Its
power is limited by the Monte-Carlo noise: on the 5x5 gridworld the s.e. reached 0.8, so
only mean errors beyond ~1 + 3 s.e. sds are certain to be flagged. The check needs the
model's potential (:func:`bayes_irl.models.model_potential`), in its unconstrained
coordinates, where the guide is Gaussian; it is skipped where the potential is an
estimate.

The result, a :class:`ConvergenceReport`, is stored in ``Posterior.attrs`` (keys
``convergence_*``, one per check with its value and threshold, and the verdict), so
``Posterior.to_inference_data()`` and a saved ``posterior.nc`` carry it. :func:`enforce`
turns a failed report into a :class:`ConvergenceWarning` (default) or, with
``strict=True``, a :class:`ConvergenceError`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import arviz as az
import numpy as np
import torch

from bayes_irl.inference.backends.laplace import NEWTON_TOLERANCE
from bayes_irl.inference.diagnostics import effective_sample_size, pareto_smooth
from bayes_irl.models.potential import model_potential

__all__ = [
    "ConvergenceCheck",
    "ConvergenceError",
    "ConvergenceReport",
    "ConvergenceWarning",
    "THRESHOLDS",
    "check_convergence",
    "enforce",
]

THRESHOLDS: dict[str, float] = {
    "r_hat": 1.01,
    "ess_per_chain": 100.0,
    "divergences": 0.0,
    "tree_depth_fraction": 0.01,
    "e_bfmi": 0.3,
    "svi_relative_change": 1e-3,
    "khat": 0.7,
    "ess_importance": 100.0,
    "elbo_stationarity": 1.0,
    "map_newton_decrement": NEWTON_TOLERANCE,
}
"""The criteria of the module docstring (Stan/ArviZ defaults)."""

_NORMALIZER_DRAWS = 20
"""Posterior draws at which an estimating normaliser's k-hat is evaluated."""

_STATIONARITY_DRAWS = 100
"""Guide draws at which the ELBO-stationarity score is evaluated (and the fewest needed)."""

_GAUSSIAN_GUIDES = ("AutoMultivariateNormal", "AutoLowRankMultivariateNormal", "AutoNormal",
                    "AutoDiagonalNormal")
"""SVI guides q = N(m, S) with a free mean m: E_q[grad log p] = 0 at their ELBO optimum."""


class ConvergenceWarning(UserWarning):
    """A fit failed a convergence check; the posterior may be wrong (see the message)."""


class ConvergenceError(RuntimeError):
    """Raised instead of :class:`ConvergenceWarning` when ``strict=True``."""


@dataclass(frozen=True)
class ConvergenceCheck:
    """One criterion applied to one fit.

    Attributes:
        name: the check (see the module table).
        value: the measured value (the worst coordinate / chain).
        threshold: the limit it is compared with.
        passed: True when the criterion holds.
        detail: a human-readable sentence on what was measured and what to do.
    """

    name: str
    value: float
    threshold: float
    passed: bool
    detail: str


@dataclass
class ConvergenceReport:
    """Every check run after one fit.

    Attributes:
        method: the back-end.
        checks: the checks that applied to it (a check with nothing to read is skipped).
    """

    method: str
    checks: list[ConvergenceCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[ConvergenceCheck]:
        """The checks that failed."""
        return [c for c in self.checks if not c.passed]

    def verdict(self) -> str:
        """One line: ``"converged (...)"`` or ``"NOT CONVERGED: ..."`` naming each failure."""
        if self.ok:
            names = ", ".join(c.name for c in self.checks) or "no checks apply"
            return f"converged ({self.method}: {names} passed)"
        return f"NOT CONVERGED ({self.method}): " + "; ".join(c.detail for c in self.failures)

    def to_attrs(self) -> dict[str, Any]:
        """NetCDF-serialisable attributes: ``convergence_<check>`` = value, plus the verdict."""
        attrs: dict[str, Any] = {
            "convergence_ok": int(self.ok),
            "convergence_verdict": self.verdict(),
        }
        for c in self.checks:
            attrs[f"convergence_{c.name}"] = float(c.value)
            attrs[f"convergence_{c.name}_threshold"] = float(c.threshold)
        return attrs


def enforce(report: ConvergenceReport, *, strict: bool = False, stacklevel: int = 2) -> None:
    """Warn (default) or raise when ``report`` has failures.

    Raises:
        ConvergenceError: when ``strict`` and a check failed.
    """
    if report.ok:
        return
    if strict:
        raise ConvergenceError(report.verdict())
    warnings.warn(report.verdict(), ConvergenceWarning, stacklevel=stacklevel + 1)


def check_convergence(posterior) -> ConvergenceReport:
    """Run every check that applies to ``posterior`` (a :class:`Posterior`).

    Returns:
        The :class:`ConvergenceReport` (not stored; :func:`bayes_irl.inference.fit` stores
        ``report.to_attrs()`` in ``posterior.attrs``).
    """
    report = ConvergenceReport(method=posterior.method)
    checks = report.checks
    # which checks apply is read from what the fit recorded, never from the method name:
    # several chains or a sampler's per-draw statistics make the draws Markov chains
    if posterior.num_chains > 1 or "diverging" in posterior.sample_stats:
        checks.extend(_mcmc_checks(posterior))
    losses = posterior.extra.get("losses")
    if losses is not None and posterior.attrs.get("optimizer") != "lbfgs":
        check = _svi_loss_check(np.asarray(losses, dtype=float))
        if check is not None:
            checks.append(check)
    log_weights = posterior.extra.get("log_weights")
    if log_weights is not None:
        checks.extend(_importance_checks(torch.as_tensor(log_weights)))
    check = _normalizer_check(posterior)
    if check is not None:
        checks.append(check)
    check = _elbo_stationarity_check(posterior)
    if check is not None:
        checks.append(check)
    check = _map_check(posterior)
    if check is not None:
        checks.append(check)
    return report


def _map_check(posterior) -> ConvergenceCheck | None:
    """The Newton decrement a Laplace fit by L-BFGS recorded at its MAP."""
    decrement = posterior.attrs.get("newton_decrement")
    if decrement is None:
        return None
    decrement = float(decrement)
    limit = THRESHOLDS["map_newton_decrement"]
    passed = math.isfinite(decrement) and decrement <= limit
    return ConvergenceCheck(
        "map_newton_decrement", decrement, limit, bool(passed),
        f"the MAP search stopped {decrement:.2g} posterior sds (Newton decrement) from a "
        f"stationary point, above {limit:g}: raise max_iter, or check that the posterior "
        "has a proper mode (a flat direction or an improper prior)")


def _draws_idata(posterior) -> az.InferenceData:
    return az.from_dict(
        posterior={k: v.detach().cpu().numpy() for k, v in posterior.samples.items()}
    )


def _mcmc_checks(posterior) -> list[ConvergenceCheck]:
    out = []
    chains, draws = posterior.num_chains, posterior.num_draws
    idata = _draws_idata(posterior)
    with warnings.catch_warnings():
        # ArviZ warns on its own for short chains; the checks below report it.
        warnings.simplefilter("ignore")
        if chains >= 2:
            rhat = max(float(np.nanmax(v.values)) for v in az.rhat(idata).data_vars.values())
            out.append(ConvergenceCheck(
                "r_hat", rhat, THRESHOLDS["r_hat"], bool(rhat <= THRESHOLDS["r_hat"]),
                f"r_hat {rhat:.3f} > {THRESHOLDS['r_hat']} (chains disagree: run longer or "
                "reparameterise)"))
        limit = THRESHOLDS["ess_per_chain"] * chains
        for kind in ("bulk", "tail"):
            ess = min(float(np.nanmin(v.values))
                      for v in az.ess(idata, method=kind).data_vars.values())
            ess = 0.0 if math.isnan(ess) else ess
            out.append(ConvergenceCheck(
                f"ess_{kind}", ess, limit, bool(ess >= limit),
                f"{kind} ESS {ess:.0f} < {limit:.0f} (100 per chain x {chains}; "
                f"{draws} draws per chain: draw more)"))
    stats = posterior.sample_stats
    if "diverging" in stats:
        num = int(np.sum(stats["diverging"]))
        out.append(ConvergenceCheck(
            "divergences", num, THRESHOLDS["divergences"], num == 0,
            f"{num} divergent transitions (the sampler misses part of the posterior: raise "
            "target_accept_prob or reparameterise)"))
    if "tree_depth" in stats and "max_tree_depth" in posterior.attrs:  # NUTS records its cap
        cap = int(posterior.attrs["max_tree_depth"])
        frac = float(np.mean(np.asarray(stats["tree_depth"]) >= cap))
        out.append(ConvergenceCheck(
            "tree_depth", frac, THRESHOLDS["tree_depth_fraction"],
            bool(frac <= THRESHOLDS["tree_depth_fraction"]),
            f"{100 * frac:.0f}% of draws hit max_tree_depth {cap} (trajectories truncated: "
            "raise max_tree_depth)"))
    if "energy" in stats:
        energy = np.asarray(stats["energy"], dtype=float)
        bfmi = float(np.min(_e_bfmi(energy)))
        out.append(ConvergenceCheck(
            "e_bfmi", bfmi, THRESHOLDS["e_bfmi"], bool(bfmi >= THRESHOLDS["e_bfmi"]),
            f"E-BFMI {bfmi:.2f} < {THRESHOLDS['e_bfmi']} (momentum resampling explores the "
            "energy poorly: heavy tails or bad mass matrix)"))
    return out


def _e_bfmi(energy: np.ndarray) -> np.ndarray:
    """E-BFMI per chain, ``sum (E_n - E_{n-1})^2 / sum (E_n - mean E)^2``; energy (chain, draw)."""
    diff = np.diff(energy, axis=1)
    var = np.var(energy, axis=1) * energy.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(var > 0, np.sum(diff**2, axis=1) / var, np.inf)


def _svi_loss_check(losses: np.ndarray) -> ConvergenceCheck | None:
    """Compare the mean loss of the last two windows (each 10% of the run, >= 20 steps).

    The loss is a one-sample ELBO estimate, so its window means are noisy: a drift counts
    only when it is both larger than ``svi_relative_change`` of the loss scale and larger
    than 3 standard errors of the difference of the two means (a converged run then fails
    about 3 times in 1000 by noise alone).
    """
    window = max(20, len(losses) // 10)
    if len(losses) < 2 * window:
        return ConvergenceCheck(
            "svi_loss", math.inf, THRESHOLDS["svi_relative_change"], False,
            f"only {len(losses)} SVI steps: too few to judge convergence (need >= {2 * window})")
    last, previous = losses[-window:], losses[-2 * window:-window]
    drift = abs(last.mean() - previous.mean())
    scale = max(abs(last.mean()), 1.0)
    se = math.sqrt((last.var(ddof=1) + previous.var(ddof=1)) / window)
    relative = drift / scale
    passed = relative <= THRESHOLDS["svi_relative_change"] or drift <= 3 * se
    return ConvergenceCheck(
        "svi_loss", relative, THRESHOLDS["svi_relative_change"], bool(passed),
        f"SVI loss still changing: mean of the last {window} steps differs from the "
        f"{window} before by {relative:.2e} (relative; noise 3 SE = {3 * se / scale:.1e}): "
        "run more steps or lower the learning rate")


def _psis_ess(log_weights: torch.Tensor) -> tuple[float, float]:
    """PSIS k-hat and the ESS of the Pareto-smoothed weights (ArviZ ``psislw``)."""
    lw = log_weights.detach().to(torch.float64).cpu().numpy().reshape(-1)
    if not np.isfinite(lw).any():
        return math.inf, 0.0
    smoothed, khat = pareto_smooth(lw)
    return khat, float(effective_sample_size(torch.from_numpy(smoothed)))


def _importance_checks(log_weights: torch.Tensor) -> list[ConvergenceCheck]:
    khat, ess = _psis_ess(log_weights)
    k = log_weights.numel()
    return [
        ConvergenceCheck(
            "khat", khat, THRESHOLDS["khat"], bool(khat <= THRESHOLDS["khat"]),
            f"importance PSIS k-hat {khat:.2f} > {THRESHOLDS['khat']} (the weights are "
            "unreliable: more proposals or a fitted guide as proposal)"),
        ConvergenceCheck(
            "ess_importance", ess, THRESHOLDS["ess_importance"],
            bool(ess >= THRESHOLDS["ess_importance"]),
            f"Pareto-smoothed importance ESS {ess:.1f} of {k} < "
            f"{THRESHOLDS['ess_importance']:.0f}"),
    ]


def _normalizer_check(posterior) -> ConvergenceCheck | None:
    """Evaluate an estimating normaliser (one with ``diagnostics``) at posterior draws."""
    model = posterior.model
    normalizer = getattr(model, "normalizer", None)
    reward = getattr(model, "reward_model", None)
    if normalizer is None or reward is None or not hasattr(normalizer, "diagnostics"):
        return None
    if getattr(normalizer, "is_exact", False):
        # nothing estimated; and a causal exact normaliser has no single log Z to call
        return None
    site = getattr(reward, "site_name", None)
    if site not in posterior.samples:
        return None
    flat = posterior.flat_samples()[site]
    index = torch.linspace(0, flat.shape[0] - 1, min(_NORMALIZER_DRAWS, flat.shape[0])).long()
    khats, esses = [], []
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the normaliser's own warning; reported below
        for i in index.tolist():
            try:
                normalizer.log_normalizer(reward, flat[i].unsqueeze(0))
            except Exception:  # noqa: BLE001 - khat_policy="raise" normalisers raise on high k-hat
                khats.append(math.inf)
                continue
            diag = normalizer.diagnostics
            if diag is None and not khats:
                return None  # an exact normaliser: nothing estimated, nothing to check
            if diag is not None:
                khats.append(float(diag.khat))
                esses.append(float(diag.ess))
    if not khats:
        return None
    worst = max(khats)
    ess = min(esses) if esses else 0.0
    return ConvergenceCheck(
        "normalizer_khat", worst, THRESHOLDS["khat"], bool(worst <= THRESHOLDS["khat"]),
        f"the importance normaliser's PSIS k-hat reaches {worst:.2f} > {THRESHOLDS['khat']} "
        f"(ESS down to {ess:.1f}) at posterior draws: log Z and the posterior are unreliable; "
        "train the guide policy or use more samples")


def _elbo_stationarity_check(posterior) -> ConvergenceCheck | None:
    """The standardised ELBO mean score of a Gaussian SVI guide (see the module docstring)."""
    if (posterior.attrs.get("objective") != "elbo"
            or posterior.attrs.get("guide") not in _GAUSSIAN_GUIDES):
        return None
    if posterior.model is None or posterior.data is None:
        return None  # e.g. reloaded without model and data
    # the fit's own potential where the back-end kept it, else the model's
    potential = posterior.extra.get("potential") or model_potential(posterior.model,
                                                                     posterior.data)
    layout = potential.layout
    # an estimated normaliser's bank is not the posterior the guide was fitted to
    if not potential.exact or not set(layout.names) <= set(posterior.samples):
        return None
    flat = posterior.flat_samples()
    draws = layout.flatten({name: flat[name].detach() for name in layout.names}).to(
        torch.float64)
    if draws.shape[0] < _STATIONARITY_DRAWS:
        return None  # too few draws for a standard error
    chol, info = torch.linalg.cholesky_ex(torch.cov(draws.T).reshape(draws.shape[1], -1))
    index = torch.linspace(0, draws.shape[0] - 1, _STATIONARITY_DRAWS).long()
    # the score of the log density of z, grad log p = -dU/dz
    grads = [torch.from_numpy(-potential.value_and_grad(z.numpy())[1]) for z in draws[index]]
    scores = torch.stack(grads).to(torch.float64) @ chol  # z_i = L^T grad log p(theta_i)
    mean = scores.mean(0)
    se = scores.std(0) / math.sqrt(len(index))
    if info != 0 or not torch.isfinite(scores).all():
        excess = math.inf  # a degenerate guide or a non-finite gradient: not an optimum
    else:
        excess = max(float((mean.abs() - 3 * se).max()), 0.0)
    worst = int(mean.abs().argmax())
    limit = THRESHOLDS["elbo_stationarity"]
    return ConvergenceCheck(
        "elbo_stationarity", excess, limit, bool(excess <= limit),
        f"the fitted guide is not an ELBO optimum: its mean lies {float(mean.abs()[worst]):.3g}"
        f" (Monte-Carlo s.e. {float(se[worst]):.2g}) of its own posterior sds from where the "
        "ELBO gradient vanishes: run SVI longer, start from init='laplace', or use a "
        "narrower prior")
