"""The Bayesian demonstration model: prior -> reward -> plate over demonstrations.

    theta ~ prior                      (plate over the D reward parameters)
    r = reward_model.step_rewards(theta)          r[..., s, a]
    x_i ~ MaxEntTrajectory(r, normaliser)  i = 1..n   (plate "demos", optional subsampling)

Every model in :mod:`bayes_irl.models` follows the same small protocol, which is all the
inference back-ends and the ArviZ converter rely on:

* ``model(data, *, subsample=True)`` runs the Pyro program on prepared data;
* ``model.prepare_data(data)`` validates user data once and returns what ``__call__``
  takes (here the (n, T + 1, 2) trajectory tensor);
* ``model.observed_sites`` maps each observed site to its ArviZ dimension name;
* ``model.latent_dims`` maps each latent site to its dimension name and coordinates;
* ``model.arviz_groups(data)`` returns observed_data / constant_data dictionaries.
"""

from __future__ import annotations

import numpy as np
import pyro
import torch

from bayes_irl.models.maxent import MaxEntTrajectory
from bayes_irl.rewards import RewardModel
from bayes_irl.trajectories import TrajectoryBatch

__all__ = ["DemonstrationModel"]


class DemonstrationModel:
    """Pyro model of n demonstrations drawn from the maxent distribution of a shared reward.

    Args:
        reward_model: a :class:`bayes_irl.RewardModel` (its prior is the prior on theta).
        normalizer: the normaliser of the maxent distribution, e.g.
            :class:`bayes_irl.inference.ExactNormalizer` (its ``mdp`` is the base measure).
        given_initial_state: condition on each demonstration's s_0 (contexts) instead of
            modelling it.
        subsample_size: demonstrations per SVI step (minibatching; the log-likelihood is
            rescaled by n / subsample_size). ``None`` uses all of them.

    Example:
        >>> from bayes_irl import GridWorld
        >>> from bayes_irl.inference import ExactNormalizer
        >>> world = GridWorld.create(size=3, horizon=4, seed=0)
        >>> model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
        >>> data = model.prepare_data(world.sample_demonstrations(20))
        >>> data.shape
        torch.Size([20, 5, 2])
    """

    observed_site = "demonstrations"

    def __init__(
        self,
        reward_model: RewardModel,
        normalizer,
        *,
        given_initial_state: bool = False,
        subsample_size: int | None = None,
    ) -> None:
        if not isinstance(reward_model, RewardModel):
            raise ValueError(
                f"reward_model must be a bayes_irl.RewardModel; got {type(reward_model).__name__}"
            )
        if not hasattr(normalizer, "mdp") or not hasattr(normalizer, "log_normalizer"):
            raise ValueError(
                "normalizer must provide .mdp and .log_normalizer(step_rewards) "
                f"(e.g. ExactNormalizer); got {type(normalizer).__name__}"
            )
        if subsample_size is not None and int(subsample_size) < 1:
            raise ValueError(f"subsample_size must be a positive int or None; got {subsample_size}")
        self.reward_model = reward_model
        self.normalizer = normalizer
        self.mdp = normalizer.mdp
        self.given_initial_state = given_initial_state
        self.subsample_size = subsample_size

    # ------------------------------------------------------------------ protocol
    @property
    def observed_sites(self) -> dict[str, str]:
        """Observed site name -> ArviZ dimension of its per-item log-likelihood."""
        return {self.observed_site: "demo"}

    @property
    def latent_dims(self) -> dict[str, tuple[str, list[str]]]:
        """Latent site name -> (dimension name, coordinate labels)."""
        rm = self.reward_model
        return {rm.site_name: (rm.dim_name, list(rm.param_names))}

    def prepare_data(self, data) -> torch.Tensor:
        """Validate demonstrations against the MDP and return the (n, T + 1, 2) tensor.

        Args:
            data: a :class:`TrajectoryBatch` or an int tensor of shape (n, T + 1, 2).

        Returns:
            int64 tensor of shape (n, T + 1, 2) on the MDP's device.

        Raises:
            ValueError: if the data do not fit the MDP (shape, ranges, impossible moves).
        """
        if data is None:
            raise ValueError("data must hold demonstrations; got None")
        if isinstance(data, TrajectoryBatch):
            data.validate_against(self.mdp)
            return data.as_tensor(self.mdp.device)
        if torch.is_tensor(data) or isinstance(data, np.ndarray):
            value = torch.as_tensor(data)
            return TrajectoryBatch.from_tensor(value, mdp=self.mdp).as_tensor(self.mdp.device)
        raise ValueError(
            f"data must be a TrajectoryBatch or a (n, T + 1, 2) tensor; got {type(data).__name__}"
        )

    def __call__(
        self,
        data: torch.Tensor | None = None,
        *,
        subsample: bool = True,
        num_demonstrations: int | None = None,
    ) -> torch.Tensor:
        """Run the model.

        Args:
            data: prepared demonstrations (n, T + 1, 2), or None to simulate.
            subsample: use ``subsample_size`` (set False to score every demonstration).
            num_demonstrations: n when ``data`` is None.

        Returns:
            The demonstrations (observed or sampled), shape (n_or_subsample, T + 1, 2).
        """
        step_rewards = self.reward_model()  # batch + (S, A)
        return self.observe(
            step_rewards, data, subsample=subsample, num_demonstrations=num_demonstrations
        )

    def observe(
        self,
        step_rewards: torch.Tensor,
        data: torch.Tensor | None,
        *,
        subsample: bool = True,
        num_demonstrations: int | None = None,
    ) -> torch.Tensor:
        """The likelihood part alone: the demos plate given step rewards.

        Shared by models that draw one reward for several kinds of data (e.g.
        :class:`bayes_irl.models.CombinedModel`).

        Args:
            step_rewards: ``r[..., s, a]``, shape batch + (S, A).
            data: prepared demonstrations (n, T + 1, 2), or None to simulate.
            subsample: use ``subsample_size``.
            num_demonstrations: n when ``data`` is None.

        Returns:
            The demonstrations (observed or sampled), shape (n_or_subsample, T + 1, 2).
        """
        n = data.shape[0] if data is not None else int(num_demonstrations or 1)
        size = self.subsample_size if subsample else None
        with pyro.plate("demos", n, subsample_size=size, dim=-1) as index:
            obs = None if data is None else data[index]
            # unsqueeze: theta's batch dims sit left of the demos plate (dim -1)
            trajectory = MaxEntTrajectory(
                step_rewards.unsqueeze(-3),
                self.normalizer,
                given_initial_state=self.given_initial_state,
            )
            return pyro.sample(self.observed_site, trajectory, obs=obs)

    def arviz_groups(self, data: torch.Tensor) -> dict:
        """Return observed_data, constant_data, coords and dims for ArviZ.

        Args:
            data: prepared demonstrations (n, T + 1, 2).

        Returns:
            Dict with keys ``observed_data``, ``constant_data`` (name -> numpy array),
            ``coords`` and ``dims`` (ArviZ conventions).
        """
        batch = TrajectoryBatch.from_tensor(data.cpu())
        mdp = self.mdp
        features = mdp.features[:, 0, :] if mdp.state_features else mdp.features
        feature_dims = (
            ["mdp_state", "feature"]
            if mdp.state_features
            else ["mdp_state", "mdp_action", "feature"]
        )
        return {
            "observed_data": {
                "states": batch.states.numpy(),
                "actions": batch.actions.numpy(),
                "lengths": batch.lengths.numpy(),
            },
            "constant_data": {
                "features": features.cpu().numpy(),
                "initial": mdp.initial.cpu().numpy(),
                "horizon": np.asarray(mdp.horizon),
            },
            "coords": {
                "demo": np.arange(len(batch)),
                "time": np.arange(mdp.horizon + 1),
                "step": np.arange(mdp.horizon),
                "mdp_state": np.arange(mdp.num_states),
                "mdp_action": np.arange(mdp.num_actions),
                "feature": list(mdp.feature_names),
            },
            "dims": {
                "states": ["demo", "time"],
                "actions": ["demo", "step"],
                "lengths": ["demo"],
                "features": feature_dims,
                "initial": ["mdp_state"],
            },
        }
