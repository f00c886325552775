r"""The preference model: pairwise comparisons or rankings of trajectories, one reward.

Items are trajectories of a tabular MDP; an item's utility is its return under the SAME
reward models as the demonstrations (:mod:`bayes_irl.rewards`), computed by the reward's
one ``returns(theta, states, actions)``:

    theta ~ prior                      (plate over the D reward parameters)
    R_i = sum_{t < L_i} r_theta(s_t, a_t)      for every item trajectory i
    y_j ~ BradleyTerry(R_first_j, R_second_j; beta)      j = 1..n  (plate "comparisons")
    (or rho_j ~ PlackettLuce(R_{C_j}; beta) for rankings of the choice sets C_j)

Optional latents: the rationality ``beta ~ beta_prior`` (site ``preference_beta``; with
preferences alone only beta * theta is identified, so the priors set the split; with
demonstrations in a :class:`~bayes_irl.models.CombinedModel` theta's scale is identified
and beta is learned) and the Davidson tie strength ``nu ~ tie_prior`` (site
``tie_strength``). Without a prior the tie strength defaults to nu = 1 (Davidson) or
theta_RK = 2 (Rao-Kupper): both give P(tie) = 1/3 for two items of equal return.

Bradley-Terry IS the maxent model P(x | C) ∝ exp(beta R(x)) on the two-element choice set
C = {x_1, x_2} with uniform base measure (:func:`bayes_irl.choice_sets.choice_set_mdp`
makes that executable); the likelihoods live in :mod:`bayes_irl.models.choice`, the data
and their validation in :mod:`bayes_irl.models.preference_data`.

The model follows :class:`bayes_irl.protocols.Model`, so ``bayes_irl.inference.fit`` and
``Posterior.to_inference_data`` work unchanged; the log-likelihood group has one value per
comparison (or ranking). :func:`~bayes_irl.models.preference_simulation.simulate_comparisons`
and :func:`~bayes_irl.models.preference_simulation.simulate_rankings` draw data from the
model at a known theta*; :meth:`PreferenceModel.replicate` draws replicated observations
for posterior predictive checks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyro
import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints

from bayes_irl.mdp import TabularMDP
from bayes_irl.models.choice import TIE_MODELS, BradleyTerry, PlackettLuce
from bayes_irl.models.preference_data import (
    PairwiseComparisons,
    PreparedPreferences,
    Rankings,
    as_trajectories,
    prepare_comparisons,
    prepare_rankings,
)
from bayes_irl.models.preference_potential import BradleyTerryPotential
from bayes_irl.rewards import LinearReward, RewardModel
from bayes_irl.validation import positive_int

__all__ = [
    "BETA_SITE",
    "DEFAULT_TIE_STRENGTH",
    "TIE_SITE",
    "PreferenceModel",
]

BETA_SITE = "preference_beta"
"""Pyro site of the rationality beta when it is latent (``beta_prior``)."""

TIE_SITE = "tie_strength"
"""Pyro site of the Davidson tie strength nu when it is latent (``tie_prior``)."""

DEFAULT_TIE_STRENGTH = {"davidson": 1.0, "rao_kupper": 2.0}
"""Default tie strengths: P(tie) = 1/3 for two items of equal return under either model."""


def _check_positive_prior(prior, name: str) -> None:
    if not isinstance(prior, torch.distributions.Distribution):
        raise ValueError(f"{name} must be a torch/pyro Distribution; got {type(prior).__name__}")
    support = prior.support
    if support not in (constraints.positive, constraints.nonnegative) or prior.event_shape:
        raise ValueError(
            f"{name} must be a scalar distribution on the positive reals (e.g. "
            f"dist.LogNormal(0.0, 0.5)); got {type(prior).__name__} with support {support}"
        )


def _split(items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(states (..., T + 1), actions (..., T))`` of tabular trajectories (..., T + 1, 2)."""
    return items[..., 0], items[..., :-1, 1]


class PreferenceModel:
    """Pyro model of pairwise comparisons (Bradley-Terry) or rankings (Plackett-Luce).

    Args:
        reward_model: the :class:`bayes_irl.RewardModel` (shared with demonstrations).
        mdp_or_items: a :class:`TabularMDP` (the data then carry the item trajectories
            themselves) or a fixed item pool, a :class:`TrajectoryBatch` or int tensor of
            shape (m, T + 1, 2) (the data then carry item indices).
        beta: rationality temperature > 0 (fixed, so theta's scale is identified).
        likelihood: ``"bradley_terry"`` (pairs) or ``"plackett_luce"`` (rankings).
        ties: ``None``, ``"davidson"`` or ``"rao_kupper"`` (Bradley-Terry only).
        tie_strength: nu >= 0 (Davidson) or theta_RK >= 1 (Rao-Kupper); default
            :data:`DEFAULT_TIE_STRENGTH` (P(tie) = 1/3 at equal returns).
        subsample_size: comparisons per SVI step (``None`` = all).
        beta_prior: optional prior of a latent rationality beta (scalar distribution on
            the positive reals, e.g. ``dist.LogNormal(0.0, 0.5)``); ``beta`` is then unused.
        tie_prior: optional prior of a latent Davidson tie strength nu (positive reals,
            e.g. ``dist.LogNormal(0.0, 1.0)``, median 1); needs ``ties="davidson"``.

    Example:
        >>> from bayes_irl import GridWorld
        >>> world = GridWorld.create(size=3, horizon=4, seed=0)
        >>> items = world.sample_demonstrations(10, seed=1)
        >>> model = PreferenceModel(world.reward_model, items)
        >>> data = simulate_comparisons(model, world.true_weights, 25, seed=0)
        >>> model.prepare_data(data).num_observations
        25
    """

    observed_site = "preferences"

    def __init__(
        self,
        reward_model: RewardModel,
        mdp_or_items,
        *,
        beta: float = 1.0,
        likelihood: str = "bradley_terry",
        ties: str | None = None,
        tie_strength: float | None = None,
        subsample_size: int | None = None,
        beta_prior: torch.distributions.Distribution | None = None,
        tie_prior: torch.distributions.Distribution | None = None,
    ) -> None:
        if not isinstance(reward_model, RewardModel):
            raise ValueError(
                f"reward_model must be a bayes_irl.RewardModel; got {type(reward_model).__name__}"
            )
        if likelihood not in ("bradley_terry", "plackett_luce"):
            raise ValueError(
                f"likelihood must be 'bradley_terry' or 'plackett_luce'; got {likelihood!r}"
            )
        if not (isinstance(beta, (int, float)) and np.isfinite(beta) and beta > 0):
            raise ValueError(f"beta must be a finite float > 0; got {beta!r}")
        if ties not in TIE_MODELS:
            raise ValueError(f"ties must be one of {TIE_MODELS}; got {ties!r}")
        if ties is not None and likelihood != "bradley_terry":
            raise ValueError("ties are modelled for likelihood='bradley_terry' only")
        if tie_prior is not None:
            if ties != "davidson":
                raise ValueError("tie_prior (a learned tie strength) needs ties='davidson'")
            if tie_strength is not None:
                raise ValueError("give tie_strength (fixed) or tie_prior (learned), not both")
            _check_positive_prior(tie_prior, "tie_prior")
        if beta_prior is not None:
            _check_positive_prior(beta_prior, "beta_prior")
        if ties is not None and tie_strength is None:
            tie_strength = DEFAULT_TIE_STRENGTH[ties]
        if ties == "davidson" and not (np.isfinite(tie_strength) and tie_strength >= 0):
            raise ValueError(f"tie_strength must be >= 0 for Davidson ties; got {tie_strength!r}")
        if ties == "rao_kupper" and not (np.isfinite(tie_strength) and tie_strength >= 1):
            raise ValueError(f"tie_strength must be >= 1 for Rao-Kupper ties; got {tie_strength!r}")
        if subsample_size is not None:
            subsample_size = positive_int(subsample_size, "subsample_size")
        if not callable(getattr(reward_model, "step_rewards", None)):
            raise ValueError(
                "reward_model must be a tabular reward with step_rewards (the items are "
                f"tabular trajectories); got {type(reward_model).__name__}"
            )
        self.reward_model = reward_model
        features = getattr(reward_model, "features", None)
        dtype = features.dtype if torch.is_tensor(features) else torch.float64
        probe = reward_model.step_rewards(torch.zeros(reward_model.num_params, dtype=dtype))
        self.num_states, self.num_actions = probe.shape[-2:]
        if isinstance(mdp_or_items, TabularMDP):
            self.mdp, self.items = mdp_or_items, None
            if (self.mdp.num_states, self.mdp.num_actions) != (self.num_states, self.num_actions):
                raise ValueError(
                    f"mdp has (S, A) = ({self.mdp.num_states}, {self.mdp.num_actions}) but the "
                    f"reward model gives ({self.num_states}, {self.num_actions})"
                )
        else:
            self.mdp = None
            items = as_trajectories(mdp_or_items, "mdp_or_items", None)
            self._check_item_ranges(items, "mdp_or_items")
            self.items = items
        self.beta = float(beta)
        self.likelihood = likelihood
        self.ties, self.tie_strength = ties, tie_strength
        self.subsample_size = subsample_size
        self.beta_prior, self.tie_prior = beta_prior, tie_prior

    @property
    def has_latent_judge(self) -> bool:
        """True when beta or the tie strength is latent (has a prior)."""
        return self.beta_prior is not None or self.tie_prior is not None

    def _check_item_ranges(self, items: torch.Tensor, name: str) -> None:
        states, actions = items[..., 0], items[..., :-1, 1]
        if (states >= self.num_states).any() or (actions >= self.num_actions).any():
            raise ValueError(
                f"{name} holds states >= S = {self.num_states} or actions >= A = "
                f"{self.num_actions} of the reward model"
            )

    # ------------------------------------------------------------------ protocol
    @property
    def observed_sites(self) -> dict[str, str]:
        """Observed site name -> ArviZ dimension of its per-item log-likelihood."""
        dim = "comparison" if self.likelihood == "bradley_terry" else "ranking"
        return {self.observed_site: dim}

    @property
    def latent_dims(self) -> dict[str, tuple[str, list[str]]]:
        """Latent site name -> (dimension name, coordinate labels)."""
        rm = self.reward_model
        dims = {rm.site_name: (rm.dim_name, list(rm.param_names))}
        if self.beta_prior is not None:
            dims[BETA_SITE] = (f"{BETA_SITE}_dim", ["beta"])
        if self.tie_prior is not None:
            dims[TIE_SITE] = (f"{TIE_SITE}_dim", ["nu"])
        return dims

    def prepare_data(self, data) -> PreparedPreferences:
        """Validate raw preferences and return them as an item table plus indices.

        Args:
            data: :class:`PairwiseComparisons` (Bradley-Terry) or :class:`Rankings`
                (Plackett-Luce), or an already prepared :class:`PreparedPreferences`.

        Returns:
            The :class:`PreparedPreferences`.

        Raises:
            ValueError: for the wrong data type, mismatched shapes, out-of-range indices,
                NaN or outcomes outside {0, 1} (or 0.5 without a tie model).
        """
        if isinstance(data, PreparedPreferences):
            return data
        if self.likelihood == "bradley_terry":
            if not isinstance(data, PairwiseComparisons):
                raise ValueError(
                    "data must be PairwiseComparisons for likelihood='bradley_terry'; got "
                    f"{type(data).__name__}"
                )
            return prepare_comparisons(
                data, items=self.items, mdp=self.mdp, allow_ties=self.ties is not None
            )
        if not isinstance(data, Rankings):
            raise ValueError(
                f"data must be Rankings for likelihood='plackett_luce'; got {type(data).__name__}"
            )
        return prepare_rankings(data, items=self.items, mdp=self.mdp)

    # ------------------------------------------------------------------ likelihood
    def returns(self, theta: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Return R_theta of item trajectories by the reward model's ``returns``.

        Args:
            theta: reward parameters, shape ``batch + (D,)``.
            items: int64 trajectories, shape ``(m, T + 1, 2)``.

        Returns:
            Shape ``batch + (m,)``.
        """
        states, actions = _split(items.to(theta.device))
        # theta (..., 1, D) against m items: the reward indexes its table once per draw
        return self.reward_model.returns(theta.unsqueeze(-2), states, actions)

    def item_returns(self, theta: torch.Tensor, data: PreparedPreferences) -> torch.Tensor:
        """Return R of every item of ``data``, shape ``batch + (m,)`` for theta ``batch + (D,)``."""
        return self.returns(theta, data.items)

    def _judge(self, beta, tie_strength, dtype) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return (beta, tie strength) as tensors: the given values or the fixed ones."""
        if beta is None:
            if self.beta_prior is not None:
                raise ValueError("beta is latent (beta_prior): pass beta= (a draw of it)")
            beta = self.beta
        if tie_strength is None and self.ties is not None:
            if self.tie_prior is not None:
                raise ValueError("the tie strength is latent (tie_prior): pass tie_strength=")
            tie_strength = float(self.tie_strength)
        beta = torch.as_tensor(beta, dtype=dtype)
        if tie_strength is not None:
            tie_strength = torch.as_tensor(tie_strength, dtype=dtype)
        return beta, tie_strength

    def sample_judge(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Sample the latent beta and tie strength in the current Pyro program.

        Returns:
            ``(beta, tie_strength)``, each of shape (1,) (a plate of size one, so that a
            vectorised draw dimension broadcasts against the comparisons), or None where
            the value is fixed.
        """
        beta = tie = None
        if self.beta_prior is not None:
            with pyro.plate(f"{BETA_SITE}_plate", 1, dim=-1):
                beta = pyro.sample(BETA_SITE, self.beta_prior)
        if self.tie_prior is not None:
            with pyro.plate(f"{TIE_SITE}_plate", 1, dim=-1):
                tie = pyro.sample(TIE_SITE, self.tie_prior)
        return beta, tie

    def distribution(
        self,
        returns: torch.Tensor,
        data: PreparedPreferences,
        index: torch.Tensor | None = None,
        *,
        beta: torch.Tensor | None = None,
        tie_strength: torch.Tensor | None = None,
    ) -> TorchDistribution:
        """Return the likelihood of the observations ``index`` given item returns.

        Args:
            returns: item returns, shape ``batch + (m,)``.
            data: the prepared data.
            index: observations to score (int64 (b,)); default all n.
            beta: rationality, broadcastable to ``batch + (b,)`` (e.g. ``batch + (1,)``);
                required when it is latent, else the fixed ``beta``.
            tie_strength: the tie strength, likewise (required when latent).

        Returns:
            A :class:`BradleyTerry` with batch ``batch + (b,)`` or a :class:`PlackettLuce`
            with batch ``batch + (b,)`` and event (k,).
        """
        if index is None:
            index = torch.arange(data.num_observations)
        beta, tie_strength = self._judge(beta, tie_strength, returns.dtype)
        if data.is_pairwise:
            return BradleyTerry(
                returns[..., data.first[index]],
                returns[..., data.second[index]],
                beta=beta,
                ties=self.ties,
                tie_strength=tie_strength,
            )
        if beta.dim() > 0:  # Plackett-Luce takes a scalar beta; a latent one has shape (1,)
            beta = beta.reshape(())
        return PlackettLuce(returns[..., data.choice_sets[index]], beta=beta)

    def log_likelihood(
        self,
        theta: torch.Tensor,
        data: PreparedPreferences,
        *,
        beta: torch.Tensor | None = None,
        tie_strength: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return log p(y_j | theta) for every observation, shape ``batch + (n,)``.

        Args:
            theta: reward parameters, shape ``batch + (D,)``.
            data: the prepared data.
            beta: the rationality (required when latent), broadcastable to ``batch + (n,)``.
            tie_strength: the tie strength (required when latent), likewise.
        """
        likelihood = self.distribution(
            self.item_returns(theta, data), data, beta=beta, tie_strength=tie_strength
        )
        return likelihood.log_prob(data.observations())

    def replicate(
        self,
        theta: torch.Tensor,
        data: PreparedPreferences,
        *,
        generator: torch.Generator | None = None,
        beta: torch.Tensor | None = None,
        tie_strength: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Draw replicated observations of the items and sets of ``data`` given theta.

        The sampler of posterior predictive checks: the same comparisons (or choice sets)
        are judged again by the model's own likelihood.

        Args:
            theta: reward parameters, shape ``batch + (D,)``.
            data: the prepared data (its items, pairs or choice sets are kept).
            generator: private torch generator (default: the global RNG).
            beta: the rationality (required when latent), broadcastable to ``batch + (n,)``.
            tie_strength: the tie strength (required when latent), likewise.

        Returns:
            Outcomes of shape ``batch + (n,)`` (pairs) or orders ``batch + (n, k)``
            (rankings), in the form of ``data.outcomes`` / ``data.orders``.
        """
        with torch.no_grad():
            likelihood = self.distribution(
                self.item_returns(theta, data), data, beta=beta, tie_strength=tie_strength
            )
            return likelihood.sample(generator=generator)

    def observe(
        self, theta: torch.Tensor, data: PreparedPreferences, *, subsample: bool = True
    ) -> torch.Tensor:
        """Add the observation plate to the current Pyro program, given theta.

        Shared by models that draw one reward for several kinds of data
        (:class:`bayes_irl.models.CombinedModel`).

        Args:
            theta: reward parameters drawn by the caller, shape ``batch + (D,)``.
            data: the prepared data.
            subsample: use ``subsample_size``.

        Returns:
            The observed values of the (sub)sampled observations.
        """
        size = self.subsample_size if subsample else None
        beta, tie_strength = self.sample_judge()
        returns = self.item_returns(theta, data)
        with pyro.plate("comparisons", data.num_observations, subsample_size=size, dim=-1) as idx:
            return pyro.sample(
                self.observed_site,
                self.distribution(returns, data, idx, beta=beta, tie_strength=tie_strength),
                obs=data.observations(idx),
            )

    def __call__(self, data: PreparedPreferences, *, subsample: bool = True) -> torch.Tensor:
        """Run the model on prepared data (see :meth:`prepare_data`).

        Returns:
            The observed outcomes (b,) or orders (b, k).
        """
        theta = self.reward_model()
        return self.observe(theta, data, subsample=subsample)

    def sufficient_statistics_potential(self, data: Any) -> BradleyTerryPotential | None:
        r"""A potential energy whose cost does not grow with the number of comparisons, or None.

        Bradley-Terry comparisons without ties and with a fixed beta, on a
        :class:`bayes_irl.LinearReward` whose prior has real support: the data enter through
        the distinct signed feature differences d_u = s_j beta (F(a_j) - F(b_j)) and their
        counts, and ``U(theta) = -log p(theta) - sum_u c_u log sigma(theta . d_u)`` (see
        :mod:`bayes_irl.models.preference_potential`). Laplace, NUTS and SVI then run on it
        with a NumPy gradient.

        Args:
            data: prepared comparisons (:class:`PreparedPreferences`).

        Returns:
            ``potential({site_name: theta (K,)}) -> scalar``, the negative log joint density
            up to a constant (a batch of thetas gives a batch), or None.
        """
        reward = self.reward_model
        if (not isinstance(reward, LinearReward) or self.likelihood != "bradley_terry"
                or self.ties is not None or self.has_latent_judge
                or not isinstance(data, PreparedPreferences) or not data.is_pairwise):
            return None
        if reward.prior.support is not constraints.real:
            return None
        dtype = reward.features.dtype
        basis = torch.eye(reward.num_params, dtype=dtype)
        item_features = self.returns(basis, data.items).T  # (m, K): returns are linear
        outcomes = data.observations()
        if ((outcomes != 0) & (outcomes != 1)).any():
            return None
        return BradleyTerryPotential.from_comparisons(
            item_features, data.first, data.second, outcomes, beta=self.beta,
            prior=reward.prior, site=reward.site_name,
        )

    def arviz_groups(self, data: PreparedPreferences) -> dict:
        """Return observed_data, constant_data, coords and dims for ArviZ."""
        items = data.items.cpu()
        m, horizon_plus_one = items.shape[:2]
        dim = self.observed_sites[self.observed_site]
        if data.is_pairwise:
            observed = {
                "outcomes": data.outcomes.cpu().numpy(),
                "first_item": data.first.cpu().numpy(),
                "second_item": data.second.cpu().numpy(),
            }
            dims = {k: [dim] for k in observed}
        else:
            observed = {
                "choice_sets": data.choice_sets.cpu().numpy(),
                "orders": data.orders.cpu().numpy(),
            }
            dims = {k: [dim, "rank"] for k in observed}
        dims.update({"item_states": ["item", "time"], "item_actions": ["item", "time"]})
        constant = {"item_states": items[..., 0].numpy(), "item_actions": items[..., 1].numpy()}
        if self.beta_prior is None:
            constant["beta"] = np.asarray(self.beta)
        return {
            "observed_data": observed,
            "constant_data": constant,
            "coords": {
                dim: np.arange(data.num_observations),
                "item": np.arange(m),
                "time": np.arange(horizon_plus_one),
            },
            "dims": dims,
        }
