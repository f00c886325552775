"""One call for every inference algorithm: ``fit(model, data, method=...)``.

Swapping the algorithm is a keyword argument, never a new code path: every back-end takes
the same model and prepared data and returns the same :class:`Posterior`.

============  ==================================================================
method        back-end
============  ==================================================================
"svi"         :func:`bayes_irl.inference.svi.run_svi` (default guide
              AutoMultivariateNormal; ``guide=`` any autoguide name/class/callable)
"laplace"     SVI with AutoLaplaceApproximation (MAP + Hessian), then Gaussian draws
"nuts"        :func:`bayes_irl.inference.mcmc.run_mcmc` with the NUTS kernel
"hmc"         :func:`bayes_irl.inference.mcmc.run_mcmc` with fixed-length HMC
============  ==================================================================
"""

from __future__ import annotations

from collections.abc import Callable

import pyro

from bayes_irl.inference.mcmc import run_mcmc
from bayes_irl.inference.posterior import Posterior
from bayes_irl.inference.svi import run_svi

__all__ = ["fit", "BACKENDS", "register_backend"]


def _laplace(model, data, **options) -> Posterior:
    options.setdefault("guide", "laplace")
    posterior = run_svi(model, data, **options)
    posterior.method = "laplace"
    return posterior


def _nuts(model, data, **options) -> Posterior:
    return run_mcmc(model, data, kernel="nuts", **options)


def _hmc(model, data, **options) -> Posterior:
    return run_mcmc(model, data, kernel="hmc", **options)


BACKENDS: dict[str, Callable[..., Posterior]] = {
    "svi": run_svi,
    "laplace": _laplace,
    "nuts": _nuts,
    "hmc": _hmc,
}
"""Back-end name -> function ``(model, data, **options) -> Posterior``."""


def register_backend(name: str, backend: Callable[..., Posterior]) -> None:
    """Make ``backend`` available as ``fit(..., method=name)``."""
    BACKENDS[name] = backend


def fit(model, data, *, method: str = "svi", validate: bool = True, **options) -> Posterior:
    """Fit the posterior of ``model`` given ``data`` with the chosen back-end.

    Args:
        model: a bayes_irl model (e.g. :class:`bayes_irl.models.DemonstrationModel`).
        data: raw data (e.g. a :class:`bayes_irl.TrajectoryBatch`); validated once by
            ``model.prepare_data``.
        method: a key of :data:`BACKENDS`.
        validate: turn on Pyro's distribution argument validation during the fit.
        **options: passed to the back-end (seed, num_steps, num_samples, guide, ...).

    Returns:
        The :class:`Posterior`; call ``.to_inference_data()`` for ArviZ.

    Raises:
        ValueError: for an unknown method or invalid data.

    Example:
        >>> from bayes_irl import GridWorld
        >>> from bayes_irl.models import DemonstrationModel
        >>> from bayes_irl.inference import ExactNormalizer, fit
        >>> world = GridWorld.create(size=3, horizon=4, seed=0)
        >>> model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
        >>> post = fit(model, world.sample_demonstrations(50), method="svi",
        ...            num_steps=50, num_samples=10, progress_bar=False)
        >>> post.method
        'svi'
    """
    if method not in BACKENDS:
        raise ValueError(f"method must be one of {sorted(BACKENDS)}; got {method!r}")
    prepared = model.prepare_data(data)
    previous = pyro.infer.util.is_validation_enabled()
    pyro.enable_validation(validate)
    try:
        return BACKENDS[method](model, prepared, **options)
    finally:
        pyro.enable_validation(previous)
