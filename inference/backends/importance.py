r"""The parameter-space importance-sampling back-end: sampling-importance-resampling (SIR).

This module holds :func:`run_importance` (``fit(..., method="importance")``) and
:func:`prior_proposal`, the model's prior as its default proposal. Any Pyro guide over
theta can be the proposal instead, e.g. a guide fitted by the SVI back-end (flow guides
are selected by name from :data:`bayes_irl.inference.variational_families.GUIDES`).
Every algorithm is one keyword of :func:`bayes_irl.inference.fit` and returns the same
:class:`Posterior`.

Proposals: ``proposal="prior"`` (default), a guide fitted by SVI (``post.extra["guide"]``,
e.g. ``fit(m, d, method="svi", guide="iaf")``: a heavier-tailed guide gives better
weights), or a user-written guide (``pyro.param`` + ``pyro.sample`` of the model's latent
sites, example below).

Importance sampling. For K proposal draws theta_k ~ q (the prior, or a fitted guide) the
log-weights are

    l_k = log p(theta_k) + sum_i log p(x_i | theta_k) - log q(theta_k),

their log-mean-exp estimates the log marginal likelihood log p(x) (unbiased in p(x),
biased low in log p(x)), and resampling ``num_samples`` indices with probabilities
w_k = exp(l_k) / sum_j exp(l_j) (sampling-importance-resampling, SIR) gives equally weighted
draws for the :class:`Posterior`. The Kish ESS = (sum w)^2 / sum w^2 bounds the number of
distinct draws; PSIS k-hat (Vehtari et al. 2024) of the log-weights says whether the
weighted estimates can be trusted: above 0.7 a :class:`ImportanceWarning` is
issued (more proposals or a better proposal are needed, e.g. ``proposal=svi_guide``).

Example of a custom guide (any callable with the model's signature that samples every
latent site inside the same plate as the model):

    >>> import pyro, pyro.distributions as dist, torch
    >>> from torch.distributions import constraints
    >>> def my_guide(data, *, subsample=True):
    ...     loc = pyro.param("loc", torch.zeros(2, dtype=torch.float64))
    ...     scale = pyro.param("scale", torch.full((2,), 0.1, dtype=torch.float64),
    ...                        constraint=constraints.positive)
    ...     with pyro.plate("feature", 2, dim=-1):
    ...         pyro.sample("weights", dist.Normal(loc, scale))
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import pyro
import torch
from pyro import poutine
from pyro.infer.importance import vectorized_importance_weights
from tqdm.auto import tqdm

from bayes_irl.inference.diagnostics import (
    KHAT_THRESHOLD,
    ImportanceWarning,
    importance_diagnostics,
)
from bayes_irl.inference.posterior import Posterior
from bayes_irl.validation import positive_int

__all__ = ["prior_proposal", "run_importance"]


def prior_proposal(model) -> Callable:
    """Return the model's prior as a proposal: the model with its observed sites hidden.

    Args:
        model: a bayes_irl model.

    Returns:
        A callable with the model's signature whose trace holds only the latent sites.
    """
    return poutine.block(model, hide_fn=lambda site: site.get("is_observed", False))


def _latent_values(trace, latent: set[str], num: int) -> dict[str, torch.Tensor]:
    out = {}
    for name, site in trace.nodes.items():
        if site["type"] == "sample" and name in latent:
            value = site["value"].detach()
            out[name] = value.reshape(num, *value.shape[-1:]) if value.dim() > 1 else value
    return out


def run_importance(
    model,
    data,
    *,
    proposal="prior",
    num_proposals: int = 20000,
    num_samples: int = 1000,
    chunk_size: int = 5000,
    seed: int = 0,
    warn: bool = True,
    progress_bar: bool = False,
) -> Posterior:
    """Importance sampling with a prior or guide proposal, resampled to equal weights.

    Args:
        model: a bayes_irl model (latent sites in plates of depth <= 1, as all models of
            :mod:`bayes_irl.models`).
        data: its prepared data.
        proposal: ``"prior"``, a fitted Pyro guide (e.g. ``post.extra["guide"]`` of an SVI
            fit: a heavier-tailed guide gives better weights), or any callable with the
            model's signature that samples the latent sites.
        num_proposals: K proposal draws (vectorised over draws in chunks).
        num_samples: equally weighted draws returned (resampled with replacement).
        chunk_size: proposal draws scored at once (bounds memory).
        seed: seeds Pyro's global RNG for the proposals and a private torch generator for
            the resampling.
        warn: issue :class:`ImportanceWarning` when k-hat > 0.7.
        progress_bar: show a tqdm bar over the proposal draws (advanced per chunk).

    Returns:
        A :class:`Posterior` with ``method="importance"``, draws of shape
        (1, num_samples, *site_shape); sample_stats ``log_weight`` (the unnormalised
        log-weight of each resampled draw, shape (1, num_samples)); attrs ``ess``,
        ``khat``, ``log_marginal_likelihood`` (log-mean-exp of the weights) and its
        delta-method standard error, ``num_proposals``, ``proposal``, ``wall_time_s``;
        ``extra["log_weights"]`` (K,), ``extra["diagnostics"]`` (an
        :class:`~bayes_irl.inference.diagnostics.ImportanceDiagnostics`) and
        ``extra["proposal_samples"]`` (site -> (K, *site_shape)).

    Raises:
        ValueError: for non-positive sizes or an invalid proposal.

    Example:
        >>> from bayes_irl import GridWorld
        >>> from bayes_irl.models import DemonstrationModel
        >>> from bayes_irl.inference import ExactNormalizer, fit
        >>> world = GridWorld.create(size=3, num_features=2, horizon=4, seed=0)
        >>> model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
        >>> post = fit(model, world.sample_demonstrations(20), method="importance",
        ...            num_proposals=2000, num_samples=100)
        >>> post.samples["weights"].shape
        torch.Size([1, 100, 2])
    """
    num_proposals = positive_int(num_proposals, "num_proposals")
    num_samples = positive_int(num_samples, "num_samples")
    chunk_size = positive_int(chunk_size, "chunk_size")
    if isinstance(proposal, str):
        if proposal != "prior":
            raise ValueError(f"proposal must be 'prior' or a guide callable; got {proposal!r}")
        guide, proposal_name = prior_proposal(model), "prior"
    elif callable(proposal):
        guide, proposal_name = proposal, type(proposal).__name__
    else:
        raise ValueError(f"proposal must be 'prior' or a guide callable; got {proposal!r}")

    pyro.set_rng_seed(seed)
    latent = set(model.latent_dims)
    start = time.perf_counter()
    log_weights, draws = [], []
    bar = tqdm(total=num_proposals, desc="importance", disable=not progress_bar, leave=False)
    with torch.no_grad(), bar:
        for first in range(0, num_proposals, chunk_size):
            size = min(chunk_size, num_proposals - first)
            lw, _, guide_trace = vectorized_importance_weights(
                model, guide, data, num_samples=size, max_plate_nesting=1
            )
            log_weights.append(lw.detach().to(torch.float64).reshape(size))
            draws.append(_latent_values(guide_trace, latent, size))
            bar.update(size)
    log_w = torch.cat(log_weights)
    samples = {name: torch.cat([d[name] for d in draws]) for name in draws[0]}
    missing = latent - set(samples)
    if missing:
        raise ValueError(f"the proposal does not sample the latent sites {sorted(missing)}")
    diagnostics = importance_diagnostics(log_w)
    generator = torch.Generator().manual_seed(seed)
    probs = torch.softmax(log_w, 0)
    index = torch.multinomial(probs, num_samples, replacement=True, generator=generator)
    wall = time.perf_counter() - start
    if warn and not diagnostics.khat < KHAT_THRESHOLD:
        warnings.warn(
            f"importance sampling is unreliable: PSIS k-hat = {diagnostics.khat:.2f} > "
            f"{KHAT_THRESHOLD} (ESS {diagnostics.ess:.1f} of {num_proposals} proposals); "
            "increase num_proposals or use a fitted guide as the proposal",
            ImportanceWarning,
            stacklevel=2,
        )
    return Posterior(
        samples={k: v[index].unsqueeze(0) for k, v in samples.items()},
        method="importance",
        model=model,
        data=data,
        sample_stats={"log_weight": log_w[index].unsqueeze(0).numpy()},
        attrs={
            "seed": seed,
            "proposal": proposal_name,
            "num_proposals": num_proposals,
            "ess": diagnostics.ess,
            "khat": diagnostics.khat,
            "log_marginal_likelihood": diagnostics.log_z,
            "log_marginal_likelihood_se": diagnostics.log_z_std_error,
            "distinct_draws": int(torch.unique(index).numel()),
            "wall_time_s": wall,
        },
        extra={
            "log_weights": log_w,
            "diagnostics": diagnostics,
            "proposal_samples": samples,
            "resample_index": index,
        },
    )


