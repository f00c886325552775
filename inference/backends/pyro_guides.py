"""Pyro guides over theta: built by name, started at a Laplace fit, packaged as a Posterior.

The Pyro *guide* is the variational family over the reward parameters theta (not the
guide *policy* over trajectories). :func:`make_guide` builds one from a name of
:data:`~bayes_irl.inference.variational_families.GUIDES`, an AutoGuide class or a callable;
:func:`_laplace_initialised_guide` starts a Gaussian autoguide at a
:class:`~bayes_irl.inference.backends.laplace.LaplaceFit` (in the potential's unconstrained
space z, the model's latent sites in sampling order); :func:`guide_posterior` turns a
fitted guide into a one-chain :class:`~bayes_irl.inference.posterior.Posterior` of
independent draws. Used by the SVI and Laplace back-ends.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import numpy as np
import pyro
import pyro.infer.autoguide as autoguide
import torch
from pyro import poutine
from pyro.nn import PyroParam

from bayes_irl.inference.backends.laplace import LaplaceFit
from bayes_irl.inference.posterior import Posterior
from bayes_irl.inference.variational_families import GUIDES

__all__ = ["draw_from_guide", "gaussian_guide", "guide_posterior", "make_guide"]


def make_guide(model, guide) -> Callable:
    """Instantiate ``guide``: a name in :data:`GUIDES`, an autoguide class, or a callable.

    Raises:
        ValueError: for an unknown name.
    """
    if isinstance(guide, str):
        if guide not in GUIDES:
            raise ValueError(f"guide must be one of {sorted(GUIDES)} or a callable; got {guide!r}")
        return GUIDES[guide](model)
    if isinstance(guide, type) and issubclass(guide, autoguide.AutoGuide):
        return guide(model)
    if callable(guide):
        return guide
    raise ValueError(f"guide must be a name, an AutoGuide class or a callable; got {guide!r}")


def draw_from_guide(model, guide: Callable, data, num_samples: int) -> dict[str, torch.Tensor]:
    """Draw ``num_samples`` joint samples of the model's latent sites from the guide.

    Returns:
        latent site -> tensor of shape (num_samples, *site_shape).
    """
    latent = set(model.latent_dims)
    with torch.no_grad(), pyro.plate("_draws", num_samples, dim=-2):
        trace = poutine.trace(guide).get_trace(data)
    samples = {
        name: site["value"].reshape(num_samples, *site["value"].shape[-1:])
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and name in latent
    }
    missing = latent - set(samples)
    if missing:
        raise ValueError(f"the guide does not sample the latent sites {sorted(missing)}")
    return samples


def _guide_class(guide):
    """The autoguide class of a guide name, or ``guide`` itself."""
    return GUIDES.get(guide) if isinstance(guide, str) else guide


def _potential_model(model, laplace: LaplaceFit) -> Callable:
    """The model's latent sites with the cheap potential as their only density.

    The model runs with its densities masked and its observed sites hidden (so the guide
    sees the same latent sites, plates and shapes), and ``pyro.factor`` adds
    ``-U(theta)``, the whole log joint, computed from the sufficient statistics.
    """
    if laplace.potential.kind == "traced" or not laplace.layout.is_identity:
        return model  # the potential is the model's own trace: nothing cheaper to put in
    hidden = list(model.observed_sites)
    (site,) = laplace.layout.names

    def potential_model(data, *args, **kwargs):
        with poutine.trace() as tracer, poutine.mask(mask=False), poutine.block(hide=hidden):
            model(data, *args, **kwargs)
        theta = tracer.trace.nodes[site]["value"]
        pyro.factor("_log_joint", -laplace.potential.torch(theta))

    return potential_model


def _starts_at_laplace(guide) -> bool:
    """Whether :func:`_laplace_initialised_guide` starts ``guide`` at the Laplace fit.

    Normalising flows and user-written guides keep their own initialisation, so they keep
    the fixed schedule of a start from scratch.
    """
    cls = _guide_class(guide)
    return (
        isinstance(cls, type)
        and issubclass(cls, autoguide.AutoGuide)
        and not issubclass(cls, autoguide.AutoNormalizingFlow)
        and (
            cls in (autoguide.AutoMultivariateNormal, autoguide.AutoNormal)
            or "init_loc_fn" in inspect.signature(cls.__init__).parameters
        )
    )


def _laplace_initialised_guide(model, guide, laplace: LaplaceFit, data) -> Callable:
    """The guide ``guide`` (name, class or callable) for ``model``, started at the Laplace fit."""
    cls = _guide_class(guide)
    if cls is autoguide.AutoMultivariateNormal:
        made = autoguide.AutoMultivariateNormal(model)
        made._setup_prototype(data)
        # the guide's scale_tril is diag(scale) @ U with U unit lower triangular:
        # cov = L L^T with L = chol(cov) gives scale = diag(L), U = L / scale (rows)
        chol = torch.linalg.cholesky(laplace.covariance)
        scale = chol.diagonal().clone()
        made.loc = torch.nn.Parameter(laplace.loc.clone())
        made.scale = PyroParam(scale, made.scale_constraint)
        made.scale_tril = PyroParam(chol / scale[:, None], made.scale_tril_constraint)
        return made
    values = {k: v.detach().clone() for k, v in laplace.constrain(laplace.loc).items()}
    if cls is autoguide.AutoNormal:
        # mean-field optimum for a Gaussian target: the precision's diagonal
        precision = torch.linalg.inv(laplace.covariance).diagonal()
        made = autoguide.AutoNormal(model, init_loc_fn=autoguide.init_to_value(values=values))
        made._setup_prototype(data)
        for site, scales in laplace.layout.unconstrained(precision.rsqrt()).items():
            setattr(made.scales, site, PyroParam(scales, made.scale_constraint, event_dim=0))
        return made
    if _starts_at_laplace(guide):  # other autoguides taking init_loc_fn (flows do not)
        return cls(model, init_loc_fn=autoguide.init_to_value(values=values))
    return make_guide(model, guide)


def gaussian_guide(model, data, laplace: LaplaceFit) -> autoguide.AutoMultivariateNormal:
    """``AutoMultivariateNormal`` fixed at N(MAP, Sigma) of a :class:`LaplaceFit`.

    The guide's unconstrained space is the potential's z: the model's latent sites in
    sampling order, each through ``biject_to`` of its support.
    """
    guide = autoguide.AutoMultivariateNormal(model)
    guide._setup_prototype(data)
    scale = laplace.covariance.diagonal().sqrt()
    correlation = laplace.covariance / scale[:, None] / scale[None, :]
    with torch.no_grad():
        del guide.loc
        del guide.scale
        del guide.scale_tril
        guide.register_buffer("loc", laplace.loc.clone())
        guide.register_buffer("scale", scale)
        guide.register_buffer("scale_tril", torch.linalg.cholesky(correlation))
    return guide


def guide_posterior(
    model, data, guide_fn: Callable, *, losses: np.ndarray, num_samples: int, attrs: dict,
    draws: dict[str, torch.Tensor] | None = None,
) -> Posterior:
    """Package a fitted guide as a one-chain :class:`Posterior` of ``num_samples`` draws.

    Args:
        model: the fitted model.
        data: its prepared data.
        guide_fn: the fitted Pyro guide.
        losses: ELBO loss per step, shape (num_steps,).
        num_samples: independent draws from the guide.
        attrs: run metadata; the guide's class and the final loss are added.
        draws: the draws when the caller has them (latent site -> (num_samples, ...)),
            else they are drawn from the guide.

    Returns:
        The Posterior (``method="svi"``; the loss trace in sample_stats as ``loss``).
    """
    if draws is None:
        draws = draw_from_guide(model, guide_fn, data, num_samples)
    return Posterior(
        samples={k: v.unsqueeze(0) for k, v in draws.items()},
        method="svi",
        model=model,
        data=data,
        attrs={
            "objective": "elbo",  # what was optimised: the convergence checks read it
            **attrs,
            "guide": type(guide_fn).__name__,
            "final_loss": float(losses[-10:].mean()),
        },
        extra={
            "guide": guide_fn,
            "losses": losses,
            "sample_stats_extra": {"loss": (losses, "svi_step")},
        },
    )
