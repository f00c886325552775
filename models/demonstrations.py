"""The Bayesian demonstration model: prior -> theta -> plate over demonstrations.

    theta ~ reward_model.prior                     (plate over the D reward parameters)
    x_i ~ MaxEntTrajectory(theta, reward_model, normaliser)   i = 1..n   (plate "demos")

One model for every environment family (tabular MDPs, token sequences, linear-quadratic
control, simulators): the trajectory space of the normaliser validates the data
(``space.prepare``) and gives the ArviZ groups (``space.arviz_groups``).
``ContinuousDemonstrationModel`` (the former model of continuous trajectories) is this
class: a documented rename.

Every model in :mod:`bayes_irl.models` follows the small protocol
:class:`bayes_irl.protocols.Model`, which is all the inference back-ends and the ArviZ
converter rely on:

* ``model(data, *, subsample=True)`` runs the Pyro program on prepared data;
* ``model.prepare_data(data)`` validates user data once and returns what ``__call__``
  takes (the ``(n, *event_shape)`` trajectory tensor);
* ``model.observed_sites`` maps each observed site to its ArviZ dimension name;
* ``model.latent_dims`` maps each latent site to its dimension name and coordinates;
* ``model.arviz_groups(data)`` returns observed_data / constant_data dictionaries.

Rationality (Boltzmann confidence, Ramachandran & Amir 2007): with
``rationality_prior`` the demonstrator's inverse temperature beta > 0 is a latent as well,

    beta ~ rationality_prior                       (site "rationality", shape (1,))
    x_i ~ MaxEntTrajectory(beta * R_theta)

so data from a demonstrator more (beta > 1) or less (beta < 1) rational than the unit
temperature of the plain model no longer force the reward's scale. theta and beta are then
identified only jointly through the prior (beta * theta is what the data see).

It also offers :meth:`DemonstrationModel.sufficient_statistics_potential`
(:class:`bayes_irl.protocols.SufficientStatistics`) and :meth:`DemonstrationModel.simulate`
(replicated demonstrations for predictive checks).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pyro
import torch
from torch import Tensor
from torch.distributions import constraints

from bayes_irl.mdp import TabularMDP
from bayes_irl.models.maxent import MaxEntTrajectory
from bayes_irl.models.statistics_potential import DemonstrationPotential
from bayes_irl.rewards import LinearReward, RewardModel
from bayes_irl.soft_bellman import soft_values
from bayes_irl.trajectories import feature_counts
from bayes_irl.validation import positive_int, validate_prior

__all__ = ["DemonstrationModel", "RationalityScaledReward"]


class RationalityScaledReward:
    """The reward ``beta * R_theta`` with beta appended to theta: ``(theta, beta)`` (D + 1,).

    Used by :class:`DemonstrationModel` when the rationality beta is a latent: the
    normaliser and the maxent distribution see one parameter vector of size D + 1.

    Args:
        reward: the reward model R_theta (tabular ones also scale ``step_rewards``).
    """

    def __init__(self, reward: RewardModel) -> None:
        self.reward = reward
        self.num_params = reward.num_params + 1
        for name in ("state_dim", "action_dim", "features"):
            if hasattr(reward, name):
                setattr(self, name, getattr(reward, name))

    def returns(self, theta: Tensor, states: Tensor, actions: Tensor) -> Tensor:
        """``beta * R_theta(x)``; ``theta[..., :-1]`` is theta, ``theta[..., -1]`` is beta."""
        return theta[..., -1] * self.reward.returns(theta[..., :-1], states, actions)

    def step_rewards(self, theta: Tensor) -> Tensor:
        """``beta * r_theta[s, a]``, shape ``theta.shape[:-1] + (S, A)``."""
        return theta[..., -1, None, None] * self.reward.step_rewards(theta[..., :-1])


def _check_reward_features(reward_model: RewardModel, mdp: Any) -> None:
    """Compare a feature-based reward's features with the tabular MDP's.

    Raises for features over other states/actions (the rewards could not be indexed);
    warns when the feature counts K differ, the usual sign that the reward was built on
    other features than intended (``LinearReward(mdp.features, ...)`` is the recipe).
    """
    features = getattr(reward_model, "features", None)
    if not isinstance(mdp, TabularMDP) or not torch.is_tensor(features) or features.dim() != 3:
        return
    expected = (mdp.num_states, mdp.num_actions)
    if tuple(features.shape[:2]) != expected:
        raise ValueError(
            f"reward_model features have shape {tuple(features.shape)} but the MDP has "
            f"(S, A) = {expected}; build the reward on the MDP's states and actions, e.g. "
            "LinearReward(mdp.features, feature_names=mdp.feature_names)"
        )
    if features.shape[-1] != mdp.num_features:
        warnings.warn(
            f"reward_model has K = {features.shape[-1]} features but the MDP has "
            f"K = {mdp.num_features}; the fit uses the reward model's features. If that "
            "is not intended, build it as LinearReward(mdp.features, "
            "feature_names=mdp.feature_names)",
            UserWarning,
            stacklevel=3,
        )


class DemonstrationModel:
    """Pyro model of n demonstrations drawn from the maxent distribution of a shared reward.

    Args:
        reward_model: a :class:`bayes_irl.RewardModel` (its prior is the prior on theta).
        normalizer: the normaliser of the maxent distribution
            (:class:`bayes_irl.protocols.Normalizer`), e.g.
            :class:`bayes_irl.inference.ExactNormalizer`; its ``space`` is the trajectory
            space (base measure).
        given_initial_state: condition on each demonstration's s_0 (contexts) instead of
            modelling it.
        subsample_size: demonstrations per SVI step (minibatching; the log-likelihood is
            rescaled by n / subsample_size). ``None`` uses all of them.
        rationality_prior: optional prior (positive support, event_shape ``()``) of the
            demonstrator's rationality beta, a latent site ``"rationality"`` of shape (1,);
            ``None`` fixes beta = 1.

    Attributes:
        space: the trajectory space (``normalizer.space``).
        mdp: ``normalizer.mdp`` where the normaliser has one (tabular, LQ), else None.

    Raises:
        ValueError: for a reward that is not a RewardModel, a normaliser without
            ``space``/``log_normalizer``, mismatched dimensions or a bad subsample_size.

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
    rationality_site = "rationality"

    def __init__(
        self,
        reward_model: RewardModel,
        normalizer: Any,
        *,
        given_initial_state: bool = False,
        subsample_size: int | None = None,
        rationality_prior: Any = None,
    ) -> None:
        if not isinstance(reward_model, RewardModel):
            raise ValueError(
                f"reward_model must be a bayes_irl.RewardModel; got {type(reward_model).__name__}"
            )
        if not hasattr(normalizer, "space") or not hasattr(normalizer, "log_normalizer"):
            raise ValueError(
                "normalizer must provide .space and .log_normalizer(reward, theta) "
                f"(e.g. ExactNormalizer); got {type(normalizer).__name__}"
            )
        space = normalizer.space
        dims = ("state_dim", "action_dim")
        if all(hasattr(reward_model, d) and hasattr(space, d) for d in dims):
            ours = tuple(int(getattr(reward_model, d)) for d in dims)
            theirs = tuple(int(getattr(space, d)) for d in dims)
            if ours != theirs:
                raise ValueError(
                    f"reward_model has (state_dim, action_dim) = {ours} but the normaliser's "
                    f"trajectories have {theirs}"
                )
        _check_reward_features(reward_model, getattr(normalizer, "mdp", None))
        if subsample_size is not None:
            try:
                subsample_size = positive_int(subsample_size, "subsample_size")
            except ValueError:
                raise ValueError(
                    f"subsample_size must be a positive int or None; got {subsample_size!r}"
                ) from None
        if rationality_prior is not None:
            rationality_prior = validate_prior(rationality_prior, 1, "rationality_prior")
            support = rationality_prior.support
            negative = torch.tensor(-1e-3, dtype=torch.float64)
            if bool(support.check(negative)) or not bool(support.check(negative.new_ones(()))):
                raise ValueError(
                    "rationality_prior must have positive support (e.g. LogNormal or Gamma); "
                    f"got support {rationality_prior.support}"
                )
        self.rationality_prior = rationality_prior
        self.reward_model = reward_model
        self.normalizer = normalizer
        self.space = space
        self.mdp = getattr(normalizer, "mdp", None)
        self.given_initial_state = bool(given_initial_state)
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
        dims = {rm.site_name: (rm.dim_name, list(rm.param_names))}
        if self.rationality_prior is not None:
            dims[self.rationality_site] = ("rationality_dim", ["beta"])
        return dims

    def sample_latents(self) -> dict[str, Tensor]:
        """Sample every latent site from its prior (a Pyro program); site -> value.

        theta has shape ``batch + (D,)``; with ``rationality_prior`` beta has ``batch + (1,)``
        (sampled in its own plate of size 1, like theta, so vectorised traces stay aligned).
        """
        latents = {self.reward_model.site_name: self.reward_model()}
        if self.rationality_prior is not None:
            with pyro.plate("rationality_dim", 1, dim=-1):
                latents[self.rationality_site] = pyro.sample(
                    self.rationality_site, self.rationality_prior
                )
        return latents

    def prepare_data(self, data: Any) -> Tensor:
        """Validate demonstrations with the trajectory space (``space.prepare``).

        Args:
            data: tabular: a :class:`~bayes_irl.TrajectoryBatch` or an int tensor (n, T + 1,
                2); continuous: ``(states (n, T+1, dx), actions (n, T, du))`` or ``z (n, d)``.

        Returns:
            Tensor of shape ``(n, *event_shape)``.

        Raises:
            ValueError: if the data do not fit the space (shape, ranges, impossible moves).
        """
        return self.space.prepare(data)

    def trajectory_distribution(
        self, theta: Tensor, rationality: Tensor | None = None
    ) -> MaxEntTrajectory:
        """The likelihood of one demonstration given ``theta (..., D)`` (and beta ``(..., 1)``)."""
        reward: Any = self.reward_model
        if rationality is not None:
            reward = RationalityScaledReward(reward)
            theta = torch.cat([theta, rationality.to(theta.dtype)], -1)
        return MaxEntTrajectory(
            theta,
            reward,
            self.normalizer,
            given_initial_state=self.given_initial_state,
        )

    def __call__(
        self,
        data: Tensor | None = None,
        *,
        subsample: bool = True,
        num_demonstrations: int | None = None,
    ) -> Tensor:
        """Run the model.

        Args:
            data: prepared demonstrations ``(n, *event_shape)``, or None to simulate.
            subsample: use ``subsample_size`` (set False to score every demonstration).
            num_demonstrations: n when ``data`` is None.

        Returns:
            The demonstrations (observed or sampled), shape ``(n_or_subsample,
            *event_shape)``.
        """
        latents = self.sample_latents()  # theta: batch + (D,)
        return self.observe(
            latents[self.reward_model.site_name], data, subsample=subsample,
            num_demonstrations=num_demonstrations,
            rationality=latents.get(self.rationality_site),
        )

    def observe(
        self,
        theta: Tensor,
        data: Tensor | None,
        *,
        subsample: bool = True,
        num_demonstrations: int | None = None,
        rationality: Tensor | None = None,
    ) -> Tensor:
        """The likelihood part alone: the demos plate given reward parameters.

        Shared by models that draw one theta for several kinds of data (e.g.
        :class:`bayes_irl.models.CombinedModel`).

        Args:
            theta: reward parameters, shape ``batch + (D,)``.
            data: prepared demonstrations ``(n, *event_shape)``, or None to simulate.
            subsample: use ``subsample_size``.
            num_demonstrations: n when ``data`` is None.
            rationality: beta, shape ``batch + (1,)``, or None (beta = 1).

        Returns:
            The demonstrations (observed or sampled), shape ``(n_or_subsample,
            *event_shape)``.
        """
        n = data.shape[0] if data is not None else int(num_demonstrations or 1)
        size = self.subsample_size if subsample else None
        with pyro.plate("demos", n, subsample_size=size, dim=-1) as index:
            obs = None if data is None else data[index]
            # unsqueeze: theta's batch dims sit left of the demos plate (dim -1); the
            # normaliser then runs once per theta, not once per demonstration
            beta = None if rationality is None else rationality.unsqueeze(-2)
            trajectory = self.trajectory_distribution(theta.unsqueeze(-2), beta)
            return pyro.sample(self.observed_site, trajectory, obs=obs)

    def arviz_groups(self, data: Tensor) -> dict:
        """Return observed_data, constant_data, coords and dims for ArviZ.

        Args:
            data: prepared demonstrations ``(n, *event_shape)``.

        Returns:
            Dict with keys ``observed_data``, ``constant_data`` (name -> numpy array),
            ``coords`` and ``dims`` (ArviZ conventions), from ``space.arviz_groups``.
        """
        return self.space.arviz_groups(data)

    # ------------------------------------------------------------------ extras
    def simulate(
        self,
        theta: Tensor,
        num_demonstrations: int,
        *,
        initial_states: Tensor | None = None,
        generator: torch.Generator | None = None,
        rationality: Tensor | None = None,
    ) -> Tensor:
        """Draw replicated demonstrations given reward parameters (predictive checks).

        Args:
            theta: reward parameters, shape ``batch + (D,)`` (e.g. J posterior draws).
            num_demonstrations: n draws per theta.
            initial_states: with ``given_initial_state=True``, optional start states of
                shape ``(n,)`` (e.g. the observed ones) to condition on; drawn from p0
                otherwise. Needs a normaliser whose ``sample`` accepts them
                (``ExactNormalizer``).
            generator: torch random generator, passed to ``normalizer.sample`` when given
                (``ExactNormalizer`` accepts one); default the global RNG.
            rationality: beta, shape ``batch + (1,)`` (default 1): draws from
                ``MaxEnt(beta * R_theta)``.

        Returns:
            Trajectories of shape ``batch + (n,) + event_shape`` (full length).
        """
        n = positive_int(num_demonstrations, "num_demonstrations")
        options: dict[str, Any] = {"given_initial_state": self.given_initial_state}
        if generator is not None:
            options["generator"] = generator
        if initial_states is not None:
            if not self.given_initial_state:
                raise ValueError("initial_states needs a model with given_initial_state=True")
            options["initial_states"] = initial_states
        theta, reward = theta.detach(), self.reward_model
        if rationality is not None:
            reward = RationalityScaledReward(reward)
            theta = torch.cat([theta, rationality.detach().to(theta.dtype)], -1)
        draws = self.normalizer.sample(reward, theta, (n,), **options)
        return draws.movedim(0, theta.dim() - 1)  # batch + (n,) + event

    def replicate(
        self, theta: Tensor, data: Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw a replicate of the prepared data per theta (posterior predictive checks).

        As many demonstrations as observed, started from the observed initial states when
        the model conditions on them (``given_initial_state``). The draws are full length;
        a check that compares them with truncated observations cuts them to the observed
        lengths itself.

        Args:
            theta: reward parameters, shape ``batch + (D,)`` (e.g. J posterior draws).
            data: the prepared demonstrations, ``(n, *event_shape)``.
            generator: torch random generator (default: the global RNG).

        Returns:
            Trajectories of shape ``batch + (n,) + event_shape``.
        """
        initial = self.space.split(data)[0][:, 0] if self.given_initial_state else None
        return self.simulate(theta, data.shape[0], initial_states=initial, generator=generator)

    def sufficient_statistics_potential(
        self, data: Any
    ) -> Callable[[dict[str, Tensor]], Tensor] | None:
        r"""A potential energy whose cost does not grow with n, or None where it does not apply.

        With the soft values V_t of :func:`bayes_irl.soft_bellman.soft_values` (V_T = 0),
        Phi = sum_i sum_{t < L_i} phi(s_t, a_t) over the observed steps of demonstrations of
        lengths L_i <= T (-1 padding after them), both kinds' log-likelihoods take one form,

            sum_i log P(x_i | theta) = theta . Phi + sum_{t, s} W[t, s] V_t(s) - m log Z + const,

        with the data entering only through Phi, the (T + 1, S) value weights W and the
        count m (see ``_causal_value_weights``):

        * global model (:class:`bayes_irl.inference.ExactNormalizer` with ``kind="global"``):
          a prefix of length L ending in s_L has log P = R(prefix) + log b(prefix) +
          V_L(s_L) - log Z, and with ``given_initial_state`` log Z is replaced by V_0(s_0).
          So W[t, s] counts the demonstrations ending at (t, s) (only t < T matters) minus,
          given the initial states, those starting at s (t = 0); m = n, or 0 given the
          initial states. Full-length demonstrations with modelled s_0 reduce to
          theta . Phi - n log Z.
        * causal model: log pi_t = Q_t - V_t and Q_t(s, a) = r(s, a) + log beta(a | s) +
          sum_s' p(s' | s, a) V_{t+1}(s'), so W[t, s] = sum_{s_, a} N[t - 1, s_, a]
          p(s | s_, a) - sum_a N[t, s, a] with the visit counts N of the observed steps,
          and m = 0 (each step is normalised locally; ``given_initial_state`` only drops
          the constant log p0(s_0)).

        Either way ``-log p(theta) - loglik(theta)`` costs one soft-value recursion and its
        adjoint per gradient (:mod:`bayes_irl.soft_bellman_kernel`), whatever n is. Applies
        to a :class:`bayes_irl.LinearReward` whose prior has real support and an exact
        normaliser on a tabular MDP.

        Args:
            data: prepared demonstrations (n, T + 1, 2).

        Returns:
            ``potential({site_name: theta (K,)}) -> scalar`` equal to the negative log joint
            density up to a constant (``theta`` may carry leading batch dimensions; the
            result then has them), or None.
        """
        reward, norm = self.reward_model, self.normalizer
        if not isinstance(reward, LinearReward) or not isinstance(self.space, TabularMDP):
            return None
        kind = getattr(norm, "kind", None)
        if not getattr(norm, "is_exact", False) or kind not in ("global", "causal"):
            return None
        if not torch.is_tensor(data) or data.dim() != 3:
            return None
        if self.rationality_prior is not None:  # beta * theta: no linear statistics
            return None
        prior = reward.prior
        if prior.support is not constraints.real:
            return None
        mdp = self.space
        stats = feature_counts(reward.features, *mdp.split(data)).sum(0)  # Phi, shape (K,)
        value_weights = _causal_value_weights(
            mdp, data, reward.features.dtype, kind=kind,
            given_initial_state=self.given_initial_state)
        count = data.shape[0] if kind == "global" and not self.given_initial_state else 0
        site = reward.site_name
        log_p0 = mdp.initial.log().to(stats.dtype)

        def potential_fn(params: dict[str, Tensor]) -> Tensor:
            # a flow guide's draws are float32; the statistics are the MDP's dtype
            theta = params[site].to(stats.dtype)
            values = soft_values(mdp, reward.step_rewards(theta), kind=kind)
            log_lik = theta @ stats + (values * value_weights).sum((-2, -1))
            if count:
                log_lik = log_lik - count * torch.logsumexp(values[..., 0, :] + log_p0, -1)
            return -(prior.log_prob(theta).sum(-1) + log_lik)

        return DemonstrationPotential(mdp=mdp, features=reward.features, prior=prior, stats=stats,
                             kind=kind, reference=potential_fn, site=site, count=count,
                             value_weights=value_weights)


def _causal_value_weights(
    mdp: TabularMDP,
    data: Tensor,
    dtype: torch.dtype,
    *,
    kind: str = "causal",
    given_initial_state: bool = False,
) -> Tensor:
    """The value weights ``W[t, s]`` of the log-likelihood (``sufficient_statistics_potential``).

    Args:
        mdp: the tabular MDP.
        data: prepared demonstrations (n, T + 1, 2), -1 after each one's length.
        dtype: floating dtype of the result.
        kind: ``"causal"`` (expected next-state visits minus visits with an observed
            action) or ``"global"`` (demonstrations ending at (t, s), minus those starting
            at s when ``given_initial_state``).
        given_initial_state: the initial states are contexts (global kind: log Z is
            replaced by V_0(s_0)); the causal weights do not depend on it.

    Returns:
        Shape (T + 1, S).
    """
    states, actions = mdp.split(data.to(mdp.device))
    observed = actions >= 0  # (n, T)
    horizon, num_states, num_actions = mdp.horizon, mdp.num_states, mdp.num_actions
    weights = torch.zeros(horizon + 1, num_states, dtype=dtype, device=mdp.device)
    one = torch.ones((), dtype=dtype, device=mdp.device)
    if kind == "global":
        lengths = observed.sum(-1)  # L_i: the prefix ends in s_{L_i} at t = L_i
        last = states.gather(-1, lengths.unsqueeze(-1)).squeeze(-1)
        weights.index_put_((lengths, last), one, accumulate=True)
        if given_initial_state:
            weights.index_put_((torch.zeros_like(lengths), states[:, 0]), -one,
                               accumulate=True)
        return weights
    steps = torch.arange(horizon, device=mdp.device).expand_as(actions)
    counts = torch.zeros(horizon, num_states, num_actions, dtype=dtype, device=mdp.device)
    index = (steps[observed], states[:, :-1][observed], actions[observed])
    counts.index_put_(index, one, accumulate=True)
    probs = mdp.successor_log_probs.exp().to(dtype)  # (S, A, F)
    flow = (counts.unsqueeze(-1) * probs).reshape(horizon, -1)  # N[t, s, a] p(f | s, a)
    next_visits = torch.zeros(horizon, num_states, dtype=dtype, device=mdp.device)
    next_visits.index_add_(1, mdp.successors.reshape(-1), flow)
    weights[:horizon] -= counts.sum(-1)
    weights[1:] += next_visits
    return weights
