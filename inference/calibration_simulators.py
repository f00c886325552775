"""Simulators of simulation-based calibration: the prior draw and the data given it.

One simulation of :func:`bayes_irl.inference.calibration.run_calibration` draws every
latent site from the model's prior (:func:`draw_prior`) and data given those latents from
a simulator, ``simulator(model, latents, generator) -> raw data``: the model's own exact
sampler (correct specification) or a different demonstrator (misspecification):
:class:`DemonstrationSimulator` (with a fixed or :class:`LogNormalRationality` beta, a
causal demonstrator or a reward outside the feature span) and
:class:`PreferenceSimulator` (Bradley-Terry comparisons).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from pyro import poutine

from bayes_irl.mdp import TabularMDP
from bayes_irl.soft_bellman import sample_maxent_trajectories
from bayes_irl.validation import positive_int

__all__ = [
    "DemonstrationSimulator",
    "Latents",
    "LogNormalRationality",
    "PreferenceSimulator",
    "draw_prior",
]

Latents = dict[str, torch.Tensor]
"""Latent values by site name: site -> tensor of the site's shape."""


def draw_prior(model: Any, seed: int) -> Latents:
    """Draw every latent site of ``model`` from its prior (seeded; global RNG untouched).

    Uses ``model.sample_latents()`` where the model has it (e.g. a demonstration model
    with a rationality latent), else the reward model's prior.

    Returns:
        site -> value of the site's shape (theta: (D,)).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        with poutine.block():
            sampler = getattr(model, "sample_latents", None)
            if sampler is not None:
                return {k: v.detach() for k, v in sampler().items()}
            reward = model.reward_model
            return {reward.site_name: reward().detach()}


@dataclass(frozen=True)
class LogNormalRationality:
    """A demonstrator's beta drawn per simulation: ``log beta ~ Normal(loc, scale)``."""

    loc: float = 0.0
    scale: float = 0.5

    def draw(self, generator: torch.Generator) -> torch.Tensor:
        """One beta, shape (1,), from ``generator``."""
        z = torch.randn(1, generator=generator, dtype=torch.float64)
        return torch.exp(self.loc + self.scale * z)


@dataclass
class DemonstrationSimulator:
    """Simulate demonstrations given latents: the model's own exact sampler by default.

    The defaults make the data come from the fitted model itself (correct
    specification). The options simulate a *different* demonstrator (misspecification):

    Args:
        num_demonstrations: n.
        rationality: the demonstrator's beta (the data follow ``MaxEnt(beta R_theta)``): a
            float, or a :class:`LogNormalRationality` (a new beta per simulation, e.g. an
            unknown beta fitted by a model that fixes beta = 1); None: the model's own (its
            latent beta, or 1).
        kind: ``"global"`` or ``"causal"`` demonstrator (tabular MDPs); None: the model's
            own (its normaliser's kind, via ``model.simulate``).
        reward_offset: a step-reward table (S, A) added to ``beta R_theta`` (a reward
            outside the model's feature span); tabular MDPs only.

    Raises:
        ValueError: for a non-positive n or rationality.
    """

    num_demonstrations: int
    rationality: float | LogNormalRationality | None = None
    kind: str | None = None
    reward_offset: torch.Tensor | None = None

    def __post_init__(self) -> None:
        self.num_demonstrations = positive_int(self.num_demonstrations, "num_demonstrations")
        if isinstance(self.rationality, (int, float)) and not float(self.rationality) > 0:
            raise ValueError(f"rationality must be > 0; got {self.rationality!r}")

    def __call__(self, model: Any, latents: Latents, generator: torch.Generator) -> Any:
        """Return raw demonstrations ``(n, *event_shape)`` for ``model.prepare_data``."""
        theta = latents[model.reward_model.site_name]
        beta = latents.get(getattr(model, "rationality_site", "rationality"))
        if isinstance(self.rationality, LogNormalRationality):
            beta = self.rationality.draw(generator).to(theta.dtype)
        elif self.rationality is not None:
            beta = torch.full((1,), float(self.rationality), dtype=theta.dtype)
        plain = self.kind is None and self.reward_offset is None
        if plain:
            return model.simulate(theta, self.num_demonstrations, generator=generator,
                                  rationality=beta)
        mdp = getattr(model, "mdp", None)
        if not isinstance(mdp, TabularMDP):
            raise ValueError("kind= and reward_offset= need a model on a TabularMDP")
        rewards = model.reward_model.step_rewards(theta).detach()
        if beta is not None:
            rewards = rewards * beta.to(rewards.dtype)
        if self.reward_offset is not None:
            rewards = rewards + torch.as_tensor(self.reward_offset, dtype=rewards.dtype)
        kind = self.kind or getattr(model.normalizer, "kind", "global")
        return sample_maxent_trajectories(
            mdp, rewards, self.num_demonstrations, kind=kind, generator=generator
        )


@dataclass
class PreferenceSimulator:
    """Simulate pairwise comparisons with the model's own choice model (Bradley-Terry).

    Args:
        num_comparisons: n.
        items: for a model built on an MDP, the candidate trajectories (m, T + 1, 2);
            ignored for an item-pool model.
    """

    num_comparisons: int
    items: Any = None

    def __post_init__(self) -> None:
        self.num_comparisons = positive_int(self.num_comparisons, "num_comparisons")

    def __call__(self, model: Any, latents: Latents, generator: torch.Generator) -> Any:
        """Return :class:`~bayes_irl.models.PairwiseComparisons` drawn at the latents."""
        from bayes_irl.models.preference_simulation import simulate_comparisons

        theta = latents[model.reward_model.site_name]
        seed = int(torch.randint(2**31 - 1, (), generator=generator))
        return simulate_comparisons(
            model, theta, self.num_comparisons, seed=seed, items=self.items
        )
