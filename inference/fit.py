"""One call for every inference algorithm: ``fit(model, data, method=...)``.

Swapping the algorithm is a keyword argument, never a new code path: every back-end takes
the same model and prepared data and returns the same :class:`Posterior`.

============  ==================================================================
method        back-end
============  ==================================================================
"svi"         :func:`bayes_irl.inference.backends.svi.run_svi` (default guide
              AutoMultivariateNormal; ``guide=`` any autoguide name/class/callable)
"laplace"     :func:`bayes_irl.inference.backends.laplace_backend.run_laplace` (MAP + Hessian)
"nuts"        :func:`bayes_irl.inference.backends.mcmc.run_mcmc` with the NUTS kernel
"hmc"         :func:`bayes_irl.inference.backends.mcmc.run_mcmc` with fixed-length HMC
"importance"  :func:`bayes_irl.inference.backends.importance.run_importance` (SIR)
============  ==================================================================

``"rationality_importance"``
(:func:`bayes_irl.inference.backends.rationality.run_rationality_importance`) fits a
demonstration model whose rationality beta is a latent (SIR in (beta * theta, log beta)).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable

import pyro

from bayes_irl.inference.backends import BACKENDS
from bayes_irl.inference.backends.rationality import warn_if_gaussian_on_rationality
from bayes_irl.inference.convergence import check_convergence, enforce
from bayes_irl.inference.global_random_state import preserve_global_state
from bayes_irl.inference.posterior import Posterior

__all__ = ["fit", "BACKENDS", "backend_options", "register_backend"]


def register_backend(name: str, backend: Callable[..., Posterior]) -> None:
    """Make ``backend`` available as ``fit(..., method=name)``."""
    BACKENDS[name] = backend


def _forwarded_to(backend: Callable) -> tuple[Callable, frozenset[str]] | None:
    """The function a back-end passes its ``**options`` to, and the names it fixes itself."""
    from bayes_irl.inference.backends import laplace_backend, mcmc, svi

    table = {
        laplace_backend.run_laplace: (svi.run_svi, frozenset()),
        mcmc.run_nuts: (mcmc.run_mcmc, frozenset({"kernel"})),
        mcmc.run_hmc: (mcmc.run_mcmc, frozenset({"kernel"})),
    }
    return table.get(backend)


def backend_options(method: str) -> list[str] | None:
    """The option names ``fit(..., method=method, **options)`` accepts, sorted.

    Read from the back-end's signature (and, for back-ends that pass ``**options`` on, from
    the function they pass them to). ``None`` when the back-end takes arbitrary keywords
    that cannot be listed (a user-registered back-end with ``**options``).

    Raises:
        ValueError: for an unknown method.
    """
    if method not in BACKENDS:
        raise ValueError(f"method must be one of {sorted(BACKENDS)}; got {method!r}")
    names: set[str] = set()
    backend = BACKENDS[method]
    excluded: frozenset[str] = frozenset()
    while backend is not None:
        params = list(inspect.signature(backend).parameters.values())[2:]  # model, data
        names |= {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return sorted(names - excluded)
        forwarded = _forwarded_to(backend)
        if forwarded is None:
            return None
        backend, fixed = forwarded
        excluded |= fixed
    return None  # pragma: no cover - the loop returns


# Names other libraries use for the same options (optax/numpyro/Pyro habits).
_ALIASES = {
    "lr": "learning_rate",
    "step_size": "learning_rate",
    "num_warmup": "warmup_steps",
    "warmup": "warmup_steps",
    "chains": "num_chains",
    "steps": "num_steps",
    "num_iterations": "num_steps",
    "draws": "num_samples",
}


def check_options(method: str, options: dict) -> None:
    """Raise a ValueError naming unknown ``options`` of ``method`` and listing the valid ones.

    Called by :func:`fit` before the back-end runs, so a misspelt option (``lr=`` for
    ``learning_rate=``, ``num_warmup=`` for ``warmup_steps=``) fails at once and clearly
    instead of as a ``TypeError`` from an inner function.
    """
    valid = backend_options(method)
    if valid is None:
        return
    unknown = sorted(set(options) - set(valid))
    if unknown:
        hints = []
        for name in unknown:
            alias = _ALIASES.get(name)
            close = [alias] if alias in valid else difflib.get_close_matches(name, valid, n=1)
            if close:
                hints.append(f"{name!r} -> did you mean {close[0]!r}?")
        hint = f" ({'; '.join(hints)})" if hints else ""
        raise ValueError(
            f"unknown option(s) {unknown} for method={method!r}{hint}; valid options: "
            f"{', '.join(valid)}"
        )


@preserve_global_state
def fit(
    model,
    data,
    *,
    method: str = "nuts",
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
        method: a key of :data:`BACKENDS`; default ``"nuts"``, as ``bayes-irl fit``.
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
        ValueError: for an unknown method, an option the back-end does not take (the
            message lists the valid ones; see :func:`backend_options`) or invalid data.
        ConvergenceError: with ``strict=True``, when a convergence check fails.

    The caller's global random state (``random``, numpy, torch, Pyro's param store) is
    the same after the call as before; the fit itself is seeded by ``seed``.

    Example:
        >>> from bayes_irl import GridWorld
        >>> from bayes_irl.models import DemonstrationModel
        >>> from bayes_irl.inference import ExactNormalizer, fit
        >>> world = GridWorld.create(size=3, horizon=4, seed=0)
        >>> model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
        >>> post = fit(model, world.sample_demonstrations(50), progress_bar=False)
        >>> post.method
        'nuts'
    """
    if method not in BACKENDS:
        raise ValueError(f"method must be one of {sorted(BACKENDS)}; got {method!r}")
    check_options(method, options)
    warn_if_gaussian_on_rationality(model, method)
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
