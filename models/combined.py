"""Demonstrations and preferences explained by one reward draw: the combined model.

    theta ~ prior
    x_i ~ MaxEntTrajectory(theta, reward, normaliser)     (plate "demos")
    y_j ~ BradleyTerry / PlackettLuce on returns R_theta   (plate "comparisons")

The two likelihoods come from :class:`bayes_irl.models.DemonstrationModel` and
:class:`bayes_irl.models.PreferenceModel` (their ``observe`` methods); this module only
shares the reward draw and merges what the back-ends and ArviZ need.
"""

from __future__ import annotations

import numpy as np
import torch

from bayes_irl.models.demonstrations import DemonstrationModel
from bayes_irl.models.preferences import PreferenceModel

__all__ = ["CombinedModel"]


class CombinedModel:
    """Demonstrations and preferences explained by ONE reward draw.

        theta ~ prior
        x_i ~ MaxEntTrajectory(theta, reward, normaliser)    (plate "demos")
        y_j ~ BradleyTerry / PlackettLuce on returns R_theta  (plate "comparisons")

    Two observed sites, so ArviZ's log_likelihood group has two variables
    (``demonstrations`` over ``demo`` and ``preferences`` over ``comparison``).

    Args:
        demonstrations: a :class:`DemonstrationModel` (its normaliser and options are used).
        preferences: a :class:`PreferenceModel` with the SAME reward model object.

    Data: a dict ``{"demonstrations": ..., "preferences": ...}`` or a pair
    ``(demonstrations, preferences)`` of raw data for the two models.
    """

    def __init__(self, demonstrations: DemonstrationModel, preferences: PreferenceModel) -> None:
        if not isinstance(demonstrations, DemonstrationModel):
            raise ValueError(
                f"demonstrations must be a DemonstrationModel; got {type(demonstrations).__name__}"
            )
        if not isinstance(preferences, PreferenceModel):
            raise ValueError(
                f"preferences must be a PreferenceModel; got {type(preferences).__name__}"
            )
        if demonstrations.reward_model is not preferences.reward_model:
            raise ValueError(
                "demonstrations and preferences must share one reward_model object (one "
                "reward draw explains both)"
            )
        self.demonstrations = demonstrations
        self.preferences = preferences
        self.reward_model = preferences.reward_model
        self.normalizer = demonstrations.normalizer

    @property
    def observed_sites(self) -> dict[str, str]:
        """Both observed sites with their ArviZ dimensions."""
        return {**self.demonstrations.observed_sites, **self.preferences.observed_sites}

    @property
    def latent_dims(self) -> dict[str, tuple[str, list[str]]]:
        """Latent site name -> (dimension name, coordinate labels)."""
        return {**self.demonstrations.latent_dims, **self.preferences.latent_dims}

    def prepare_data(self, data) -> dict:
        """Validate both parts.

        Args:
            data: dict with keys ``"demonstrations"`` and ``"preferences"``, or a pair.

        Returns:
            Dict with the prepared demonstrations (n, T + 1, 2) and PreparedPreferences.
        """
        if isinstance(data, (tuple, list)) and len(data) == 2:
            data = {"demonstrations": data[0], "preferences": data[1]}
        if not isinstance(data, dict) or set(data) != {"demonstrations", "preferences"}:
            raise ValueError(
                "data must be a dict with keys 'demonstrations' and 'preferences' (or a pair)"
            )
        return {
            "demonstrations": self.demonstrations.prepare_data(data["demonstrations"]),
            "preferences": self.preferences.prepare_data(data["preferences"]),
        }

    def __call__(self, data: dict, *, subsample: bool = True):
        """Run the joint model on prepared data; returns (demonstrations, preferences)."""
        theta = self.reward_model()
        x = self.demonstrations.observe(theta, data["demonstrations"], subsample=subsample)
        y = self.preferences.observe(theta, data["preferences"], subsample=subsample)
        return x, y

    def replicate(
        self, theta: torch.Tensor, data: dict, *, generator: torch.Generator | None = None
    ) -> dict:
        """Draw replicated data of both parts given theta (posterior predictive checks).

        Args:
            theta: reward parameters, shape ``batch + (D,)``.
            data: the prepared data (see :meth:`prepare_data`).
            generator: private torch generator (default: the global RNG); demonstrations
                are drawn first, then preferences.

        Returns:
            Dict with ``"demonstrations"`` (see :meth:`DemonstrationModel.replicate`) and
            ``"preferences"`` (see :meth:`PreferenceModel.replicate`).
        """
        return {
            "demonstrations": self.demonstrations.replicate(
                theta, data["demonstrations"], generator=generator
            ),
            "preferences": self.preferences.replicate(
                theta, data["preferences"], generator=generator
            ),
        }

    def arviz_groups(self, data: dict) -> dict:
        """Merge the ArviZ groups of both parts."""
        a = self.demonstrations.arviz_groups(data["demonstrations"])
        b = self.preferences.arviz_groups(data["preferences"])
        b["coords"].pop("time")
        b["coords"]["item_time"] = np.arange(data["preferences"].items.shape[1])
        for name in ("item_states", "item_actions"):
            b["dims"][name] = ["item", "item_time"]
        return {
            key: {**a[key], **b[key]}
            for key in ("observed_data", "constant_data", "coords", "dims")
        }
