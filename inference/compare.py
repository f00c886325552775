r"""Leave-one-out cross-validation and model comparison: thin helpers over ArviZ.

PSIS-LOO (Vehtari, Gelman & Gabry 2017) estimates the expected log predictive density of a
new demonstration (or comparison) from the pointwise log-likelihood log p(y_i | theta^(s))
that :meth:`bayes_irl.inference.Posterior.to_inference_data` stores, one value per item:

    elpd_loo = sum_i log( sum_s w_i^(s) p(y_i | theta^(s)) / sum_s w_i^(s) ),
    w_i^(s) ∝ 1 / p(y_i | theta^(s))   (Pareto-smoothed),

and the Pareto shape k-hat of each item's weights says whether its term is reliable
(k-hat > 0.7: the item is highly influential, LOO for it cannot be trusted). Model
comparison ranks models by elpd_loo (``az.compare``), e.g. the global vs the causal maxent
model, or a linear vs a tabular reward, fitted to the SAME items.

The helpers return ArviZ's own objects (``ELPDData``, the comparison ``DataFrame``), so
everything ArviZ documents (``az.plot_khat``, ``az.plot_compare``) works on them.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import arviz as az
import pandas as pd

from bayes_irl.inference.posterior import Posterior

__all__ = ["loo", "compare", "observed_variable"]


def _as_idata(value) -> az.InferenceData:
    if isinstance(value, Posterior):
        return value.to_inference_data()
    if isinstance(value, az.InferenceData):
        return value
    raise ValueError(
        f"expected a Posterior or an arviz.InferenceData; got {type(value).__name__}"
    )


def observed_variable(idata: az.InferenceData, var_name: str | None = None) -> str:
    """Return the log-likelihood variable to use (the only one, or ``var_name``).

    Raises:
        ValueError: if there is no log_likelihood group, ``var_name`` is not in it, or
            there are several variables (e.g. a combined model) and none was chosen.
    """
    if "log_likelihood" not in idata.groups():
        raise ValueError("idata has no log_likelihood group; build it with to_inference_data()")
    names = list(idata.log_likelihood.data_vars)
    if var_name is not None:
        if var_name not in names:
            raise ValueError(f"var_name must be one of {names}; got {var_name!r}")
        return var_name
    if len(names) != 1:
        raise ValueError(
            f"the log_likelihood group has several variables {names}; pass var_name= to "
            "choose the items to leave out"
        )
    return names[0]


def loo(posterior_or_idata, *, var_name: str | None = None, **options) -> az.ELPDData:
    """PSIS-LOO with pointwise values and k-hat per demonstration/comparison.

    Args:
        posterior_or_idata: a :class:`Posterior` or its InferenceData.
        var_name: log-likelihood variable (needed for models with several observed sites).
        **options: passed to ``az.loo`` (e.g. ``reff``, ``scale``).

    Returns:
        ArviZ's ``ELPDData``: ``elpd_loo``, ``se``, ``p_loo``, ``loo_i`` and ``pareto_k``
        (a DataArray over the item dimension, e.g. ``demo``), ``warning`` (True when some
        k-hat > 0.7).

    Example:
        >>> from bayes_irl import GridWorld
        >>> from bayes_irl.models import DemonstrationModel
        >>> from bayes_irl.inference import ExactNormalizer, fit
        >>> world = GridWorld.create(size=3, num_features=2, horizon=4, seed=0)
        >>> model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
        >>> post = fit(model, world.sample_demonstrations(30), method="laplace",
        ...            num_steps=200, num_samples=200, progress_bar=False)
        >>> loo(post).pareto_k.dims
        ('demo',)
    """
    idata = _as_idata(posterior_or_idata)
    name = observed_variable(idata, var_name)
    options.setdefault("pointwise", True)
    return az.loo(idata, var_name=name, **options)


def compare(
    models: Mapping[str, object],
    *,
    var_name: str | None = None,
    ic: str = "loo",
    method: str = "stacking",
    **options,
) -> pd.DataFrame:
    """Rank models fitted to the same items by their expected log predictive density.

    Args:
        models: name -> :class:`Posterior` or InferenceData (at least two; every one with
            the same observed items in its log_likelihood group).
        var_name: log-likelihood variable (for models with several observed sites).
        ic: ``"loo"`` (PSIS-LOO) or ``"waic"``.
        method: weighting method of ``az.compare`` (``"stacking"``, ``"BB-pseudo-BMA"``,
            ``"pseudo-BMA"``).
        **options: passed to ``az.compare``.

    Returns:
        ArviZ's comparison DataFrame, best model first (columns ``rank``, ``elpd_loo``,
        ``p_loo``, ``elpd_diff``, ``weight``, ``se``, ``dse``, ``warning``, ``scale``).

    Raises:
        ValueError: for fewer than two models or mismatched items.
    """
    if len(models) < 2:
        raise ValueError(f"models must hold at least two entries; got {len(models)}")
    idatas = {name: _as_idata(value) for name, value in models.items()}
    names = {name: observed_variable(idata, var_name) for name, idata in idatas.items()}
    sizes = {name: idatas[name].log_likelihood[v].shape[2:] for name, v in names.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(
            f"the models score different numbers of items {dict(sizes)}; compare models "
            "fitted to the same data"
        )
    if len(set(names.values())) != 1:
        # az.compare needs one variable name; rename where the models differ.
        target = next(iter(names.values()))
        idatas = {
            name: _renamed(idata, names[name], target) for name, idata in idatas.items()
        }
        names = dict.fromkeys(names, target)
    with warnings.catch_warnings():
        # ArviZ 0.23 calls DataFrame.sort_values(inplace=True), deprecated in pandas 3.1;
        # harmless, and nothing the caller can act on.
        warnings.filterwarnings("ignore", message="The inplace keyword")
        return az.compare(
            idatas, ic=ic, method=method, var_name=next(iter(names.values())), **options
        )


def _renamed(idata: az.InferenceData, old: str, new: str) -> az.InferenceData:
    if old == new:
        return idata
    out = idata.copy()
    out.log_likelihood = out.log_likelihood.rename({old: new})
    return out
