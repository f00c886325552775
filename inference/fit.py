"""One call for every inference algorithm: ``fit(model, data, method=...)``.

Swapping the algorithm is a keyword argument, never a new code path: every back-end takes
the same model and prepared data and returns the same :class:`Posterior`.

============  ==================================================================
method        back-end
============  ==================================================================
"svi"         :func:`bayes_irl.inference.backends.svi.run_svi` (default guide
              AutoMultivariateNormal; ``guide=`` any autoguide name/class/callable)
"laplace"     :func:`bayes_irl.inference.backends.svi.run_laplace` (MAP + Hessian)
"nuts"        :func:`bayes_irl.inference.backends.mcmc.run_mcmc` with the NUTS kernel
"hmc"         :func:`bayes_irl.inference.backends.mcmc.run_mcmc` with fixed-length HMC
"importance"  :func:`bayes_irl.inference.backends.importance.run_importance` (SIR)
============  ==================================================================
"""

from __future__ import annotations

from collections.abc import Callable

import pyro

from bayes_irl.inference.backends import BACKENDS
from bayes_irl.inference.convergence import check_convergence, enforce
from bayes_irl.inference.posterior import Posterior
from bayes_irl.inference.rng import preserve_global_state

__all__ = ["fit", "BACKENDS", "register_backend"]


def register_backend(name: str, backend: Callable[..., Posterior]) -> None:
    """Make ``backend`` available as ``fit(..., method=name)``."""
    BACKENDS[name] = backend


@preserve_global_state
def fit(
    model,
    data,
    *,
    method: str = "svi",
    validate: bool = True,
    check: bool = True,
    strict: bool = False,
    **options,
) -> Posterior:
    """Fit the posterior of ``model`` given ``data`` with the chosen back-end.

    Args:
        model: a bayes_irl model (e.g. :class:`bayes_irl.models.DemonstrationModel`).
        data: raw data (e.g. a :class:`bayes_irl.TrajectoryBatch`); validated once by
            ``model.prepare_data``.
        method: a key of :data:`BACKENDS`.
        validate: turn on Pyro's distribution argument validation during the fit.
        check: run the convergence guards of :mod:`bayes_irl.inference.convergence`
            after the fit (r_hat, bulk/tail ESS, divergences, tree depth, E-BFMI, SVI loss
            drift, importance k-hat/ESS); the report is stored in ``posterior.attrs``
            (``convergence_*``) and a failure issues a ``ConvergenceWarning``.
        strict: raise ``ConvergenceError`` instead of warning.
        **options: passed to the back-end (seed, num_steps, num_samples, guide, ...).

    Returns:
        The :class:`Posterior`; call ``.to_inference_data()`` for ArviZ.

    Raises:
        ValueError: for an unknown method or invalid data.
        ConvergenceError: with ``strict=True``, when a convergence check fails.

    The caller's global random state (``random``, numpy, torch, Pyro's param store) is
    the same after the call as before; the fit itself is seeded by ``seed``.

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
        posterior = BACKENDS[method](model, prepared, **options)
    finally:
        pyro.enable_validation(previous)
    if check:
        report = check_convergence(posterior)
        posterior.attrs.update(report.to_attrs())
        posterior.extra["convergence"] = report
        enforce(report, strict=strict, stacklevel=3)
    return posterior
