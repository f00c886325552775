"""The result of every inference back-end, and its one converter to ArviZ.

A :class:`Posterior` holds equally weighted draws of the latent sites with shape
``(chain, draw, *site_shape)``, per-draw sample statistics and the model and data that
produced them. :meth:`Posterior.to_inference_data` builds an ``arviz.InferenceData`` with
the groups ``posterior``, ``sample_stats`` (``lp`` = log joint density per draw, plus
the back-end's own statistics), ``log_likelihood`` (one value per demonstration or
comparison, so ``az.loo`` works), ``observed_data`` and ``constant_data``, with named
dimensions and coordinates, and attributes recording the method, normaliser, seeds and
package versions.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from typing import Any

import arviz as az
import numpy as np
import pyro
import torch
from pyro import poutine

__all__ = ["Posterior", "pointwise_log_likelihood"]


def pointwise_log_likelihood(
    model, data, samples: dict[str, torch.Tensor], *, chunk_size: int = 100
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Score every observed item under every draw, vectorised over draws in chunks.

    Args:
        model: a bayes_irl model (see :mod:`bayes_irl.models.demonstrations`).
        data: the prepared data.
        samples: latent site -> tensor of shape (N, *site_shape) (flattened draws).
        chunk_size: draws scored at once (bounds memory: one recursion per draw).

    Returns:
        ``(log_lik, log_joint)``: observed site -> (N, n_items) tensor, and the (N,) log
        joint density log p(theta) + sum_i log p(x_i | theta).
    """
    num = next(iter(samples.values())).shape[0]
    log_lik: dict[str, list[torch.Tensor]] = {name: [] for name in model.observed_sites}
    joints = []
    with torch.no_grad():
        for start in range(0, num, chunk_size):
            chunk = {k: v[start : start + chunk_size] for k, v in samples.items()}
            size = next(iter(chunk.values())).shape[0]
            conditioned = poutine.condition(model, data=chunk)
            with pyro.plate("_draws", size, dim=-2):
                trace = poutine.trace(conditioned).get_trace(data, subsample=False)
            joint = torch.zeros(size, dtype=torch.float64)
            for name, site in trace.nodes.items():
                if site["type"] != "sample" or name == "_draws":
                    continue
                lp = site["fn"].log_prob(site["value"])
                lp = lp.reshape(size, -1).to(torch.float64) if lp.dim() else lp.expand(size, 1)
                joint += lp.sum(-1).cpu()
                if name in log_lik:
                    log_lik[name].append(lp.cpu())
            joints.append(joint)
    return {k: torch.cat(v) for k, v in log_lik.items()}, torch.cat(joints)


@dataclass
class Posterior:
    """Equally weighted posterior draws with everything needed to reproduce and diagnose.

    Attributes:
        samples: latent site -> tensor of shape (chain, draw, *site_shape).
        method: back-end name ("svi", "nuts", "hmc", "laplace", ...).
        model: the model that was fitted.
        data: the prepared data it was fitted to.
        sample_stats: back-end statistics, name -> array of shape (chain, draw).
        attrs: metadata (seed, options, wall time, ...), netCDF-serialisable values.
        extra: objects that are not draws, per back-end: SVI/Laplace ``guide`` (the
            fitted guide) and ``losses``; NUTS/HMC ``num_divergences`` (the Pyro ``MCMC``
            objects are not kept; their adaptation is saved by
            :class:`~bayes_irl.inference.checkpoint.MCMCCheckpoint`); importance
            ``log_weights``, ``diagnostics``, ``proposal_samples``; after
            :func:`~bayes_irl.inference.fit`, ``convergence`` (the
            :class:`~bayes_irl.inference.convergence.ConvergenceReport`). Empty for a
            posterior reloaded with :meth:`load`.
    """

    samples: dict[str, torch.Tensor]
    method: str
    model: Any
    data: Any
    sample_stats: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        sites = ", ".join(f"{k} {tuple(v.shape[2:])}" for k, v in self.samples.items())
        n_data = len(self.data) if hasattr(self.data, "__len__") else "?"
        return (
            f"Posterior(method={self.method!r}, chains={self.num_chains}, "
            f"draws={self.num_draws}, sites: {sites}; model={type(self.model).__name__}, "
            f"{n_data} data items)"
        )
    @classmethod
    def from_inference_data(cls, idata: az.InferenceData, *, model, data) -> Posterior:
        """Rebuild a Posterior from InferenceData (e.g. a saved ``posterior.nc``).

        The draws, per-draw ``sample_stats`` (chain, draw) and attributes (method, seeds,
        convergence diagnostics) come from ``idata``; the model and data are not stored in
        NetCDF, so they are given again (e.g. from the same MDP and demonstration files).
        Predictive checks, LOO and plots then work as on a fresh fit.

        Args:
            idata: InferenceData with a ``posterior`` group.
            model: the model that was fitted (same latent sites and shapes).
            data: the raw data it was fitted to (validated with ``model.prepare_data``).

        Returns:
            The Posterior (``extra`` is empty: guides and loss traces are not saved).

        Raises:
            ValueError: when ``idata`` lacks a posterior or the model's latent sites.
        """
        if not isinstance(idata, az.InferenceData) or "posterior" not in idata.groups():
            raise ValueError("idata must be an arviz.InferenceData with a 'posterior' group")
        latent = list(model.latent_dims)
        missing = [k for k in latent if k not in idata.posterior]
        if missing:
            raise ValueError(f"the InferenceData has no posterior draws of {missing}; it was "
                             "not fitted with this model")
        dtype = next((p.dtype for p in _floating_tensors(model)), torch.float64)
        samples = {k: torch.as_tensor(idata.posterior[k].values, dtype=dtype) for k in latent}
        stats = {}
        if "sample_stats" in idata.groups():
            for name, var in idata.sample_stats.data_vars.items():
                if var.dims == ("chain", "draw") and name != "lp":
                    stats[name] = var.values
        attrs = dict(idata.posterior.attrs)
        return cls(samples=samples, method=str(attrs.get("method", "unknown")), model=model,
                   data=model.prepare_data(data), sample_stats=stats,
                   attrs={k: v for k, v in attrs.items() if k.startswith(
                       ("convergence_", "seed", "num_", "wall_time", "guide", "khat", "ess"))})

    @classmethod
    def load(cls, path, *, model, data) -> Posterior:
        """Load a saved ``posterior.nc`` (see :meth:`from_inference_data`).

        Raises:
            ValueError: for a file that is not readable NetCDF InferenceData.
            FileNotFoundError: when ``path`` does not exist.
        """
        from pathlib import Path

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
        try:
            idata = az.from_netcdf(str(path))
        except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
            raise ValueError(f"{path} is not a readable InferenceData NetCDF file: {err}") from err
        return cls.from_inference_data(idata, model=model, data=data)

    @property
    def num_chains(self) -> int:
        """Number of chains (1 for SVI/Laplace: their draws are independent)."""
        return next(iter(self.samples.values())).shape[0]

    @property
    def num_draws(self) -> int:
        """Draws per chain."""
        return next(iter(self.samples.values())).shape[1]

    def flat_samples(self) -> dict[str, torch.Tensor]:
        """Return draws with chains merged: site -> (chain·draw, *site_shape)."""
        return {k: v.reshape(-1, *v.shape[2:]) for k, v in self.samples.items()}

    def mean(self, site: str | None = None) -> torch.Tensor:
        """Posterior mean of ``site`` (default: the reward parameters), shape site_shape."""
        return self.flat_samples()[site or self._default_site()].mean(0)

    def std(self, site: str | None = None) -> torch.Tensor:
        """Posterior standard deviation of ``site``, shape site_shape."""
        return self.flat_samples()[site or self._default_site()].std(0)

    def covariance(self, site: str | None = None) -> torch.Tensor:
        """Posterior covariance of a vector site, shape (D, D)."""
        x = self.flat_samples()[site or self._default_site()]
        return torch.cov(x.reshape(x.shape[0], -1).T)

    def _default_site(self) -> str:
        return next(iter(self.samples))

    def to_inference_data(self, *, chunk_size: int = 100) -> az.InferenceData:
        """Convert to ``arviz.InferenceData`` (see module docstring for the groups).

        Args:
            chunk_size: draws scored at once when computing the log-likelihood.

        Returns:
            The InferenceData; ``az.summary``, ``az.plot_posterior`` and ``az.loo`` work on
            it directly.
        """
        chains, draws = self.num_chains, self.num_draws
        log_lik, log_joint = pointwise_log_likelihood(
            self.model, self.data, self.flat_samples(), chunk_size=chunk_size
        )
        groups = self.model.arviz_groups(self.data)
        coords = dict(groups["coords"])
        dims = dict(groups["dims"])
        posterior = {}
        for name, value in self.samples.items():
            posterior[name] = value.detach().cpu().numpy()
            dim_name, labels = self.model.latent_dims.get(name, (f"{name}_dim", None))
            if value.dim() == 3:
                if labels is not None and dim_name in coords and (
                    list(coords[dim_name]) != list(labels)
                ):
                    # a data group uses the latent's dimension name with other labels (the
                    # MDP's own features next to a reward on other features): rename the
                    # data's dimension rather than fail on conflicting sizes
                    renamed = f"data_{dim_name}"
                    coords[renamed] = coords.pop(dim_name)
                    dims = {k: [renamed if d == dim_name else d for d in v]
                            for k, v in dims.items()}
                dims[name] = [dim_name]
                if labels is not None:
                    coords[dim_name] = labels
        log_likelihood = {}
        for name, value in log_lik.items():
            log_likelihood[name] = value.reshape(chains, draws, -1).numpy()
            dims[name] = [self.model.observed_sites[name]]
        sample_stats = {"lp": log_joint.reshape(chains, draws).numpy()}
        sample_stats.update(self.sample_stats)
        attrs = {
            "inference_library": "pyro",
            "inference_library_version": pyro.__version__,
            "bayes_irl_version": _version(),
            "torch_version": str(torch.__version__),
            "arviz_version": az.__version__,
            "python_version": platform.python_version(),
            "method": self.method,
            "normalizer": repr(getattr(self.model, "normalizer", None)),
            "model": type(self.model).__name__,
        }
        attrs.update({k: _netcdf_attr(v) for k, v in self.attrs.items()})
        idata = az.from_dict(
            posterior=posterior,
            sample_stats=sample_stats,
            log_likelihood=log_likelihood,
            observed_data=groups["observed_data"],
            constant_data=groups["constant_data"],
            coords=coords,
            dims=dims,
            attrs=attrs,
        )
        # Record provenance on every group, so it survives extracting a single group.
        for group in idata.groups():
            idata[group].attrs.update(attrs)
        for extra_name, (values, extra_dim) in self.extra.get("sample_stats_extra", {}).items():
            idata.sample_stats[extra_name] = ((extra_dim,), np.asarray(values))
        return idata


def _floating_tensors(model):
    """Floating tensors the model holds (to match the dtype of reloaded draws)."""
    reward = getattr(model, "reward_model", None)
    for obj in (reward, model):
        for value in vars(obj).values() if obj is not None else ():
            if torch.is_tensor(value) and value.is_floating_point():
                yield value


def _version() -> str:
    from bayes_irl import __version__

    return __version__


def _netcdf_attr(value):
    """NetCDF attributes take str and numbers only: convert the rest to str."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, float, str, np.integer, np.floating)):
        return value
    return str(value)
