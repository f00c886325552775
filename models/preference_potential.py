r"""The Bradley-Terry potential of a linear reward by sufficient statistics.

With a linear reward the return of an item trajectory is R_theta(x) = theta . F(x), where
F(x) = sum_t phi(s_t, a_t) is its feature count. A comparison j of items (a_j, b_j) with
outcome y_j (1: a_j preferred, 0: b_j preferred) and a fixed rationality beta has

    log p(y_j | theta) = log sigma(s_j beta theta . (F(a_j) - F(b_j))),    s_j = 2 y_j - 1,

so the data enter only through the signed, scaled feature differences
d_j = s_j beta (F(a_j) - F(b_j)). Equal rows are merged with their counts c_u (the
sufficient statistics: at most one row per (pair, outcome)), and

    U(theta) = -log p(theta) - sum_u c_u log sigma(theta . d_u),
    dU/dtheta = -d log p / d theta - sum_u c_u sigma(-theta . d_u) d_u,

one (U', K) matrix product per evaluation whatever the number of comparisons.
:class:`BradleyTerryPotential` evaluates it in NumPy (the MAP search, the NumPy NUTS and
SVI loops) and in torch (batches, Hessians), like
:class:`bayes_irl.models.statistics_potential.DemonstrationPotential` does for
demonstrations.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import log_expit
from torch import Tensor

from bayes_irl.models.statistics_potential import StatisticsPotential, closed_form_normal

__all__ = ["BradleyTerryPotential"]


class BradleyTerryPotential(StatisticsPotential):
    """U(theta) = -log p(theta, comparisons) of Bradley-Terry data on a linear reward.

    Args:
        differences: d_u, the distinct signed and beta-scaled feature differences, shape
            (U', K).
        counts: c_u, how many comparisons share each row, shape (U',).
        prior: the prior on theta (batch shape (K,)).
        site: the latent site's name.

    Raises:
        ValueError: for mismatched shapes, non-finite differences or non-positive counts.
    """

    def __init__(self, *, differences: Tensor, counts: Tensor, prior, site: str) -> None:
        if differences.dim() != 2 or counts.shape != differences.shape[:1]:
            raise ValueError(
                "differences must have shape (U, K) and counts shape (U,); got "
                f"{tuple(differences.shape)} and {tuple(counts.shape)}"
            )
        if not torch.isfinite(differences).all() or not (counts > 0).all():
            raise ValueError("differences must be finite and counts positive")
        self.site = site
        self._differences_t = differences.detach().double()
        self._counts_t = counts.detach().double()
        self._differences = self._differences_t.cpu().numpy()
        self._counts = self._counts_t.cpu().numpy()
        self._prior = prior
        self._normal = closed_form_normal(prior, differences.shape[1])
        self._set_layout(differences.shape[1])

    @classmethod
    def from_comparisons(
        cls, item_features: Tensor, first: Tensor, second: Tensor, outcomes: Tensor, *,
        beta: float, prior, site: str,
    ) -> BradleyTerryPotential:
        """Build the potential from item feature counts and comparisons.

        Args:
            item_features: F(x) of every item, shape (m, K).
            first: index of each comparison's first item, int64 (n,).
            second: index of its second item, int64 (n,).
            outcomes: 1.0 (first preferred) or 0.0 (second preferred), shape (n,).
            beta: the fixed rationality > 0.
            prior: the prior on theta.
            site: the latent site's name.
        """
        sign = 2.0 * outcomes.double() - 1.0
        rows = beta * sign[:, None] * (item_features[first] - item_features[second]).double()
        unique, counts = torch.unique(rows, dim=0, return_counts=True)
        return cls(differences=unique, counts=counts.double(), prior=prior, site=site)

    def reference(self, params: dict[str, Tensor]) -> Tensor:
        """U in torch, for theta of shape ``batch + (K,)``; returns shape ``batch``."""
        theta = params[self.site]
        differences = self._differences_t.to(theta)
        log_lik = torch.nn.functional.logsigmoid(theta @ differences.T) @ self._counts_t.to(theta)
        return -(self._prior.log_prob(theta).sum(-1) + log_lik)

    def _evaluate(self, theta: np.ndarray) -> tuple[float, np.ndarray] | None:
        """``(U(theta), dU/dtheta)`` for theta of shape (K,); None if not finite."""
        theta = np.asarray(theta, dtype=np.float64)
        margins = self._differences @ theta  # (U',)
        log_lik = float(log_expit(margins) @ self._counts)
        # d/dm log sigma(m) = sigma(-m)
        weights = self._counts * np.exp(log_expit(-margins))
        prior_value, prior_grad = self._log_prior(theta)
        value = -(prior_value + log_lik)
        grad = -(prior_grad + self._differences.T @ weights)
        if not (np.isfinite(value) and np.isfinite(grad).all()):
            return None
        return float(value), grad
