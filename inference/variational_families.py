"""Pyro guides (variational families over the reward parameters) selectable by name.

The Pyro *guide* is the variational family over theta; it is not the guide *policy* (the
importance proposal over trajectories, :mod:`bayes_irl.inference.normalizers`).
``fit(..., method="svi", guide=NAME)`` looks NAME up in :data:`GUIDES`; an AutoGuide class
or any guide callable works as well.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import pyro.infer.autoguide as autoguide
from pyro.distributions.transforms import iterated, spline_autoregressive

__all__ = ["GUIDES", "neural_spline_guide"]


def neural_spline_guide(model, *, num_layers: int = 2, count_bins: int = 8, bound: float = 5.0):
    """Return an ``AutoNormalizingFlow`` guide with autoregressive neural-spline layers.

    The flow maps a standard normal over the D unconstrained latent coordinates through
    ``num_layers`` autoregressive rational-quadratic splines (Durkan et al. 2019) with
    ``count_bins`` bins on [-bound, bound] (identity outside).

    Args:
        model: the Pyro model.
        num_layers: number of spline layers.
        count_bins: spline segments per coordinate.
        bound: half-width of the spline's active interval in the unconstrained space.

    Returns:
        The (uninitialised) autoguide; select it by name as ``guide="neural_spline"``.
    """
    if num_layers < 1 or count_bins < 2 or not bound > 0:
        raise ValueError(
            "num_layers must be >= 1, count_bins >= 2 and bound > 0; got "
            f"{num_layers}, {count_bins}, {bound}"
        )
    factory = functools.partial(
        iterated, num_layers, functools.partial(spline_autoregressive, count_bins=count_bins,
                                                bound=bound)
    )
    return autoguide.AutoNormalizingFlow(model, factory)


GUIDES: dict[str, Callable] = {
    "normal": autoguide.AutoNormal,
    "multivariate_normal": autoguide.AutoMultivariateNormal,
    "lowrank_normal": autoguide.AutoLowRankMultivariateNormal,
    "delta": autoguide.AutoDelta,
    "laplace": autoguide.AutoLaplaceApproximation,
    "iaf": autoguide.AutoIAFNormal,
    "neural_spline": neural_spline_guide,
}
"""Autoguides selectable by name; any callable ``guide_factory(model)`` works as well."""
