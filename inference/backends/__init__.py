"""Inference back-ends: each is one function ``(model, prepared_data, **options) -> Posterior``.

:data:`BACKENDS` is the explicit registry behind ``fit(model, data, method=NAME)``; a new
back-end is one module here and one line in this dictionary (or, from user code,
:func:`bayes_irl.inference.fit.register_backend`).
"""

from __future__ import annotations

from collections.abc import Callable

from bayes_irl.inference.backends.importance import run_importance
from bayes_irl.inference.backends.laplace_backend import run_laplace
from bayes_irl.inference.backends.mcmc import run_hmc, run_mcmc, run_nuts
from bayes_irl.inference.backends.rationality import run_rationality_importance
from bayes_irl.inference.backends.svi import run_svi
from bayes_irl.inference.posterior import Posterior

__all__ = [
    "BACKENDS",
    "run_hmc",
    "run_importance",
    "run_laplace",
    "run_mcmc",
    "run_nuts",
    "run_rationality_importance",
    "run_svi",
]

BACKENDS: dict[str, Callable[..., Posterior]] = {
    "svi": run_svi,
    "laplace": run_laplace,
    "nuts": run_nuts,
    "hmc": run_hmc,
    "importance": run_importance,
    "rationality_importance": run_rationality_importance,
}
"""Back-end name -> function ``(model, prepared_data, **options) -> Posterior``."""
