"""Optional feature standardisation, with the posterior reported on the user's scale.

Features of very different scales (e.g. one column x1000) make the posterior of the
weights badly conditioned: posterior sds differ by orders of magnitude, a fixed SVI step
size and a N(0, 1) prior no longer fit every coordinate. Fitting on standardised features

    phi~[s, a, k] = (phi[s, a, k] - c_k) / s_k,   c_k, s_k = mean and sd over (s, a),

with weights theta~ gives the reward theta~ . phi~ = theta . phi - const with
theta_k = theta~_k / s_k. The constant sum_k theta_k c_k is earned at every step, so it
adds the same amount to every full-horizon trajectory and cancels in the maxent
distribution (global and causal): the two models are one model in two parameterisations.
A prior N(0, 1) on theta~ is the prior N(0, 1 / s_k) on theta_k, which the user-scale
model carries, so the log-likelihood, ``lp`` and every ArviZ group of the reported
posterior are those of the user-scale model.
"""

from __future__ import annotations

import torch

__all__ = ["standardized_features", "weights_to_user_scale"]


def standardized_features(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre and scale every feature column over all (s, a).

    Args:
        features: ``phi[s, a, k]``, shape (S, A, K) (or (S, K)).

    Returns:
        ``(standardised, scale)``: the standardised features (same shape) and ``s_k``,
        shape (K,). A constant column keeps scale 1 (it is centred to zero: its weight is
        not identified, see :mod:`bayes_irl.identifiability`).
    """
    flat = features.reshape(-1, features.shape[-1])
    center = flat.mean(0)
    scale = flat.std(0, unbiased=False)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return (features - center) / scale, scale


def weights_to_user_scale(posterior, site: str, scale: torch.Tensor, user_model) -> None:
    """Map draws of the standardised weights to the user's scale, in place.

    ``theta_k = theta~_k / s_k`` for every draw; ``posterior.model`` becomes
    ``user_model`` (the same reward on the user's features with prior N(0, 1 / s_k)), so
    ``to_inference_data`` scores the user-scale model. Records ``standardized = 1`` and
    ``feature_scale`` in ``posterior.attrs``.
    """
    posterior.samples[site] = posterior.samples[site] / scale.to(posterior.samples[site])
    posterior.model = user_model
    posterior.attrs["standardized"] = 1
    posterior.attrs["feature_scale"] = ", ".join(f"{float(v):.6g}" for v in scale)
