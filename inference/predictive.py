r"""Posterior predictive checks: replicate the data from posterior draws and compare.

For posterior draws theta^(j) (j = 1..J, a thinned subset of the chains) replicate a data
set y^rep_j ~ p(y | theta^(j)) of the observed size, compute test statistics T on every
replicate and on the observed data y, and locate T(y) in the replicated distribution:

    p = 2 min( P(T(y^rep) >= T(y)), P(T(y^rep) <= T(y)) )      (two-sided, per component)

A vector statistic T (K components) also gets one *omnibus* p-value, which avoids testing
K components separately: with m_c and v_c the mean and variance of component c of the
replicated T,

    d(t) = sum_c (t_c - m_c)^2 / v_c,     p_omni = P( d(T(y^rep)) >= d(T(y)) ).

Components that never vary across the replicates (v_c = 0, e.g. a state no replicate
visits) are left out of d; an observed value away from such a constant still shows in the
per-component table (``outside``). With few replicates, rare events make this common.
A diagonal scale rather than the full covariance: with fewer replicates than components
the covariance is singular and a pseudo-inverse Mahalanobis distance gives every replicate
the same distance (p_omni degenerates to 0 or 1).

Statistics (per item, then averaged over items, so ArviZ's ``plot_ppc`` can show the
per-item distribution and ``plot_bpv`` the mean):

Every replicated data set comes from the model's own sampler (``model.simulate``); the
statistics are chosen per model type (:func:`register_replicator`):

* demonstrations (:class:`~bayes_irl.models.DemonstrationModel`, samples from the
  maxent distribution of each draw's reward by the normaliser (exact for an exact one),
  truncated to the observed lengths and, with ``given_initial_state``, started from the
  observed s_0):

  - ``feature_counts[demo, feature]`` = sum_{t < L} phi(s_t, a_t); its mean over demos is the
    feature expectation. CAUTION: for a linear reward under the global (or causal) maxent
    model the feature counts are the sufficient statistic and the maximum-likelihood fit
    matches their mean exactly (Ziebart 2008, eq. 6), so this check passes almost by
    construction, even for a misspecified reward; it detects prior-data conflict and
    problems of the inference, not of the reward's form.
  - ``state_visits[demo, mdp_state]`` = number of t <= L with s_t = s: not matched by a
    linear reward, so it can reveal a reward the model cannot express.

* pairwise comparisons / rankings (:class:`~bayes_irl.models.PreferenceModel`):
  ``preference_agreement[comparison]`` = 1 when the preferred item (or top-ranked item) is
  the one with the higher posterior-mean return, 0 when not, 0.5 for a tie: its mean is the
  rate at which the outcomes agree with the fitted reward's ordering, compared between the
  observed and the replicated comparisons. Too many observed disagreements (e.g. a
  temperature beta set too high, or a reward that cannot express the rater's preferences)
  give a small p-value.

* :class:`~bayes_irl.models.CombinedModel`: both groups of statistics.

Other models plug in with :func:`register_replicator`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import arviz as az
import numpy as np
import pandas as pd
import torch
import xarray as xr

from bayes_irl.inference.posterior import Posterior
from bayes_irl.models.combined import CombinedModel
from bayes_irl.models.demonstrations import DemonstrationModel
from bayes_irl.models.preferences import PreferenceModel
from bayes_irl.trajectories import feature_counts
from bayes_irl.validation import positive_int

__all__ = [
    "PPCResult",
    "PredictiveStatistic",
    "posterior_predictive_check",
    "register_replicator",
    "REPLICATORS",
]


@dataclass
class PredictiveStatistic:
    """One test statistic, per item, for the observed and every replicated data set.

    Attributes:
        name: ArviZ variable name (in ``observed_data`` and ``posterior_predictive``).
        observed: per-item values, shape (n_items, *component_shape).
        replicated: shape (J, n_items, *component_shape), one row per posterior draw.
        dims: ArviZ dims of ``observed``, e.g. ``["demo", "feature"]``.
        coords: coordinates of the component dims (dim -> labels).
    """

    name: str
    observed: np.ndarray
    replicated: np.ndarray
    dims: list[str]
    coords: dict[str, list] = field(default_factory=dict)

    def summary_observed(self) -> np.ndarray:
        """Mean over items of the observed statistic, shape component_shape."""
        return self.observed.mean(0)

    def summary_replicated(self) -> np.ndarray:
        """Mean over items per replicate, shape (J, *component_shape)."""
        return self.replicated.mean(1)


Replicator = Callable[[object, object, dict, torch.Generator], list[PredictiveStatistic]]
"""``replicator(model, data, draws, generator) -> statistics``; draws: site -> (J, ...)."""

REPLICATORS: dict[type, Replicator] = {}
"""Model class -> replicator; looked up along the model's MRO."""


def register_replicator(model_type: type, replicator: Replicator) -> None:
    """Make :func:`posterior_predictive_check` support ``model_type``.

    The replicated data come from the model itself (its ``replicate(theta, data, *,
    generator)`` method, e.g. :meth:`~bayes_irl.models.DemonstrationModel.replicate`); a
    replicator only chooses the test statistics and computes them on the observed and the
    replicated data.

    Args:
        model_type: a model class.
        replicator: ``(model, data, draws, generator) -> list[PredictiveStatistic]``, with
            draws a dict site -> tensor (J, *site_shape); it asks the model for one data
            set per draw (with the generator) and returns per-item statistics.
    """
    REPLICATORS[model_type] = replicator


def _reward_site(model) -> str:
    """The latent site of the reward parameters (the model protocol's ``latent_dims``)."""
    sites = list(model.latent_dims)
    if len(sites) != 1:
        raise ValueError(
            f"posterior predictive checks need one latent reward site; {type(model).__name__} "
            f"has {sites}"
        )
    return sites[0]


# ------------------------------------------------------------------ demonstrations
def _trajectory_statistics(mdp, trajectories: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-trajectory feature counts (..., K) and state visits (..., S) of (..., T + 1, 2)."""
    states, actions = mdp.split(trajectories)
    counts = feature_counts(mdp.features, states, actions)
    visits = torch.nn.functional.one_hot(states.clamp(min=0), mdp.num_states).to(counts.dtype)
    visits = (visits * (states >= 0).unsqueeze(-1).to(counts.dtype)).sum(-2)
    return counts, visits


def _truncate_like(replicated: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """Cut full-length replicas (J, n, T + 1, 2) to the observed lengths of data (n, T + 1, 2)."""
    lengths = (data[:, :-1, 1] >= 0).sum(-1)  # (n,)
    steps = torch.arange(data.shape[1])
    keep_state = (steps <= lengths.unsqueeze(-1)).to(replicated.device)  # (n, T + 1)
    keep_action = (steps < lengths.unsqueeze(-1)).to(replicated.device)
    out = replicated.clone()
    out[..., 0] = torch.where(keep_state, out[..., 0], torch.full_like(out[..., 0], -1))
    out[..., 1] = torch.where(keep_action, out[..., 1], torch.full_like(out[..., 1], -1))
    return out


def _demonstration_statistics(
    model: DemonstrationModel, data: torch.Tensor, replicated: torch.Tensor
) -> list[PredictiveStatistic]:
    """Feature counts and state visits of observed (n, ...) and replicated (J, n, ...) demos."""
    mdp = model.space
    replicated = _truncate_like(replicated, data)
    obs_counts, obs_visits = _trajectory_statistics(mdp, data.to(mdp.device))
    rep_counts, rep_visits = _trajectory_statistics(mdp, replicated)
    demo_dim = model.observed_sites[model.observed_site]
    return [
        PredictiveStatistic(
            "feature_counts",
            obs_counts.cpu().numpy(),
            rep_counts.cpu().numpy(),
            [demo_dim, "feature"],
            {"feature": list(mdp.feature_names)},
        ),
        PredictiveStatistic(
            "state_visits",
            obs_visits.cpu().numpy(),
            rep_visits.cpu().numpy(),
            [demo_dim, "mdp_state"],
            {"mdp_state": list(range(mdp.num_states))},
        ),
    ]


def _replicate_demonstrations(
    model: DemonstrationModel, data: torch.Tensor, draws: dict, generator: torch.Generator
) -> list[PredictiveStatistic]:
    theta = draws[_reward_site(model)]  # (J, D)
    replicated = model.replicate(theta, data, generator=generator)
    return _demonstration_statistics(model, data, replicated)


# ------------------------------------------------------------------ preferences
def _agreement(outcomes: torch.Tensor, reference: torch.Tensor, data) -> torch.Tensor:
    """Agreement of outcomes with the reference item returns ``reference`` (m,)."""
    if data.is_pairwise:
        sign = torch.sign(reference[data.first] - reference[data.second])  # (n,)
        # outcome 1 -> +1, 0 -> -1, tie 0.5 -> 0; agreement in {0, 0.5, 1}
        direction = 2.0 * outcomes - 1.0
        return 0.5 * (1.0 + direction * sign)
    best = reference[data.choice_sets].argmax(-1)  # (n,) position of the best item
    return (outcomes[..., 0] == best).to(reference.dtype)


def _preference_statistics(
    model: PreferenceModel, data, theta: torch.Tensor, replicated: torch.Tensor
) -> list[PredictiveStatistic]:
    """Agreement of observed and replicated (J, n[, k]) answers with the mean-return order."""
    reference = model.item_returns(theta, data).detach().mean(0)  # (m,)
    dim = model.observed_sites[model.observed_site]
    return [
        PredictiveStatistic(
            "preference_agreement",
            _agreement(data.observations(), reference, data).cpu().numpy(),
            _agreement(replicated, reference, data).cpu().numpy(),
            [dim],
        )
    ]


def _replicate_preferences(
    model: PreferenceModel, data, draws: dict, generator: torch.Generator
) -> list[PredictiveStatistic]:
    theta = draws[_reward_site(model)]  # (J, D)
    replicated = model.replicate(theta, data, generator=generator)
    return _preference_statistics(model, data, theta, replicated)


def _replicate_combined(
    model: CombinedModel, data: dict, draws: dict, generator: torch.Generator
) -> list[PredictiveStatistic]:
    theta = draws[_reward_site(model)]
    replicated = model.replicate(theta, data, generator=generator)
    return _demonstration_statistics(
        model.demonstrations, data["demonstrations"], replicated["demonstrations"]
    ) + _preference_statistics(
        model.preferences, data["preferences"], theta, replicated["preferences"]
    )


register_replicator(DemonstrationModel, _replicate_demonstrations)
register_replicator(PreferenceModel, _replicate_preferences)
register_replicator(CombinedModel, _replicate_combined)


# ------------------------------------------------------------------ the check
@dataclass
class PPCResult:
    """The outcome of :func:`posterior_predictive_check`.

    Attributes:
        table: tidy ``pandas.DataFrame``, one row per statistic component, columns
            ``statistic``, ``component``, ``observed`` (mean over items of T(y)),
            ``replicated_mean``, ``replicated_sd``, ``lower``/``upper`` (central ``prob``
            interval of the replicated means), ``p_value`` (two-sided), ``outside``
            (observed outside the interval).
        omnibus: statistic name -> omnibus p-value (standardised squared distance, see
            the module docstring).
        statistics: statistic name -> :class:`PredictiveStatistic`.
        idata: the InferenceData with a ``posterior_predictive`` group (and the statistics
            added to ``observed_data``), ready for ``az.plot_ppc(idata, var_names=[...])``.
        prob: the central interval probability used.
    """

    table: pd.DataFrame
    omnibus: dict[str, float]
    statistics: dict[str, PredictiveStatistic]
    idata: az.InferenceData
    prob: float

    def flagged(self, alpha: float | None = None) -> list[str]:
        """Statistics whose omnibus p-value is below ``alpha`` (default ``1 - prob``)."""
        alpha = 1.0 - self.prob if alpha is None else alpha
        return [name for name, p in self.omnibus.items() if p < alpha]


def _two_sided_p(replicated: np.ndarray, observed: np.ndarray) -> np.ndarray:
    upper = (replicated >= observed).mean(0)
    lower = (replicated <= observed).mean(0)
    return np.minimum(1.0, 2.0 * np.minimum(upper, lower))


def _omnibus_p(replicated: np.ndarray, observed: np.ndarray) -> float:
    rep = replicated.reshape(replicated.shape[0], -1)
    obs = observed.reshape(-1)
    mean, var = rep.mean(0), rep.var(0, ddof=1)
    constant = var <= 1e-12 * np.maximum(1.0, mean**2)
    keep = ~constant
    if not keep.any():
        return 1.0
    d_rep = ((rep[:, keep] - mean[keep]) ** 2 / var[keep]).sum(-1)
    d_obs = float(((obs[keep] - mean[keep]) ** 2 / var[keep]).sum())
    return float(np.mean(d_rep >= d_obs - 1e-9 * max(1.0, d_obs)))


def _draw_index(num_chains: int, num_draws: int, per_chain: int) -> np.ndarray:
    per_chain = min(per_chain, num_draws)
    return np.unique(np.linspace(0, num_draws - 1, per_chain).round().astype(int))


def posterior_predictive_check(
    posterior: Posterior,
    *,
    idata: az.InferenceData | None = None,
    num_draws: int = 200,
    prob: float = 0.99,
    seed: int = 0,
) -> PPCResult:
    """Replicate the data from posterior draws and compare test statistics.

    Args:
        posterior: a fitted :class:`Posterior` (any back-end).
        idata: its InferenceData to extend in place with ``posterior_predictive`` (and the
            statistics in ``observed_data``); default ``posterior.to_inference_data()``.
        num_draws: total replicated data sets J (spread evenly over chains, evenly thinned
            within each chain; the ``draw`` coordinates match the posterior's).
        prob: central interval probability for ``lower``/``upper``/``outside`` and the
            default flagging level ``1 - prob``.
        seed: seeds the private torch generator of the replication.

    Returns:
        The :class:`PPCResult`.

    Raises:
        ValueError: for invalid ``num_draws``/``prob`` or a model without a replicator.

    Example:
        >>> from bayes_irl import GridWorld
        >>> from bayes_irl.models import DemonstrationModel
        >>> from bayes_irl.inference import ExactNormalizer, fit
        >>> world = GridWorld.create(size=3, num_features=2, horizon=4, seed=0)
        >>> model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
        >>> post = fit(model, world.sample_demonstrations(30), method="laplace",
        ...            num_steps=200, num_samples=100, progress_bar=False)
        >>> ppc = posterior_predictive_check(post, num_draws=50)
        >>> sorted(ppc.omnibus)
        ['feature_counts', 'state_visits']
    """
    if isinstance(posterior, az.InferenceData):
        raise ValueError(
            "posterior_predictive_check needs the model and data: pass "
            "Posterior.from_inference_data(idata, model=..., data=...) (or Posterior.load("
            "'posterior.nc', model=..., data=...)) instead of the InferenceData"
        )
    num_draws = positive_int(num_draws, "num_draws", minimum=2)
    if not 0 < prob < 1:
        raise ValueError(f"prob must lie in (0, 1); got {prob!r}")
    model = posterior.model
    replicator = next((REPLICATORS[t] for t in type(model).__mro__ if t in REPLICATORS), None)
    if replicator is None:
        raise ValueError(
            f"no replicator for model type {type(model).__name__}; known: "
            f"{sorted(t.__name__ for t in REPLICATORS)} (see register_replicator)"
        )
    chains = posterior.num_chains
    index = _draw_index(chains, posterior.num_draws, max(1, int(num_draws) // chains))
    draws = {k: v[:, index].reshape(-1, *v.shape[2:]) for k, v in posterior.samples.items()}
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        statistics = replicator(model, posterior.data, draws, generator)
    if idata is None:
        idata = posterior.to_inference_data()

    rows, omnibus, pp_vars = [], {}, {}
    for stat in statistics:
        obs = stat.summary_observed()
        rep = stat.summary_replicated()
        tail = (1.0 - prob) / 2.0
        lower, upper = np.quantile(rep, [tail, 1.0 - tail], axis=0)
        p_values = _two_sided_p(rep, obs)
        omnibus[stat.name] = _omnibus_p(rep, obs)
        component_dims = stat.dims[1:]
        labels = (
            stat.coords.get(component_dims[0], list(range(obs.shape[0])))
            if component_dims
            else [stat.name]
        )
        for c, label in enumerate(labels):
            sel = (c,) if component_dims else ()
            rows.append(
                {
                    "statistic": stat.name,
                    "component": label,
                    "observed": float(obs[sel]),
                    "replicated_mean": float(rep[(slice(None), *sel)].mean()),
                    "replicated_sd": float(rep[(slice(None), *sel)].std(ddof=1)),
                    "lower": float(lower[sel]),
                    "upper": float(upper[sel]),
                    "p_value": float(p_values[sel]),
                    "outside": bool(obs[sel] < lower[sel] or obs[sel] > upper[sel]),
                }
            )
        item_dim = stat.dims[0]
        coords = {item_dim: idata.observed_data.coords.get(item_dim, np.arange(len(stat.observed)))}
        coords.update(stat.coords)
        observed_da = xr.DataArray(stat.observed, dims=stat.dims, coords=coords)
        idata.observed_data[stat.name] = observed_da
        replicated = stat.replicated.reshape(chains, len(index), *stat.replicated.shape[1:])
        pp_vars[stat.name] = xr.DataArray(
            replicated,
            dims=["chain", "draw", *stat.dims],
            coords={"chain": np.arange(chains), "draw": index, **coords},
        )
    dataset = xr.Dataset(pp_vars, attrs={"seed": seed, "num_replicates": len(index) * chains})
    if "posterior_predictive" in idata.groups():
        idata.posterior_predictive = dataset
    else:
        idata.add_groups({"posterior_predictive": dataset})
    return PPCResult(
        table=pd.DataFrame(rows),
        omnibus=omnibus,
        statistics={s.name: s for s in statistics},
        idata=idata,
        prob=prob,
    )
