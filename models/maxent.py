r"""The maximum-entropy trajectory distribution as a Pyro ``TorchDistribution``.

For reward parameters theta, a reward model R_theta and a normaliser on a trajectory space
(base measure b), the global maxent model (Ziebart et al. 2008) is

    log P(x | theta) = R_theta(x) + log b(x) - log Z(theta),   Z(theta) = sum_x b(x) exp R_theta(x).

One distribution serves every environment family (tabular MDPs, token sequences,
linear-quadratic control, simulators): the space (``normalizer.space``) gives the event
shape, the support, ``split`` and ``log b``; the reward gives ``returns``; the normaliser
gives ``log Z`` and the sampler. A normaliser that offers the exact likelihood
(:class:`bayes_irl.protocols.ExactLikelihood`: truncated trajectories, a conditioned
initial state, the maximum-causal-entropy model; see
:mod:`bayes_irl.inference.normalizers.exact`) computes the whole ``log_prob``.

Shapes: ``batch_shape = theta.shape[:-1]``; ``event_shape = normalizer.space.event_shape``
(tabular: ``(T + 1, 2)``, continuous: ``(d,)``); a value has shape ``sample_shape +
batch_shape + event_shape``; ``log_prob`` returns ``broadcast(value batch, batch_shape)``.

``ContinuousMaxEntTrajectory`` (the former distribution of continuous trajectories) is this
class: a documented rename.
"""

from __future__ import annotations

from typing import Any

import torch
from pyro.distributions import TorchDistribution
from torch import Tensor
from torch.distributions import constraints

from bayes_irl.protocols import ExactLikelihood
from bayes_irl.shapes import broadcast_shapes
from bayes_irl.trajectories import TrajectoryConstraint

__all__ = ["MaxEntTrajectory", "TrajectoryConstraint"]


class MaxEntTrajectory(TorchDistribution):
    """Maxent distribution over the trajectories of a space, given reward parameters.

    Args:
        theta: reward parameters, shape ``batch_shape + (D,)``.
        reward: the reward model (:class:`bayes_irl.RewardModel`): ``returns(theta, states,
            actions)`` and, for tabular spaces, ``step_rewards(theta)``.
        normalizer: a normaliser (:class:`bayes_irl.protocols.Normalizer`) whose
            ``space`` is the trajectory space; exact ones (``ExactNormalizer``) also give
            the likelihood of truncated trajectories, contexts and the causal model.
        given_initial_state: condition on s_0 instead of modelling it (contexts).
        validate_args: check the value against the support in ``log_prob``.

    Raises:
        ValueError: if ``theta`` has the wrong last dimension or contains NaN.

    Example:
        >>> from bayes_irl import GridWorld
        >>> from bayes_irl.inference import ExactNormalizer
        >>> world = GridWorld.create(size=3, horizon=4, seed=0)
        >>> d = MaxEntTrajectory(world.true_weights, world.reward_model, ExactNormalizer(world.mdp))
        >>> x = d.sample((7,))
        >>> x.shape, d.log_prob(x).shape
        (torch.Size([7, 5, 2]), torch.Size([7]))
    """

    arg_constraints = {"theta": constraints.real_vector}
    has_rsample = False

    def __init__(
        self,
        theta: Tensor,
        reward: Any,
        normalizer: Any,
        *,
        given_initial_state: bool = False,
        validate_args: bool | None = None,
    ) -> None:
        num_params = reward.num_params
        if not torch.is_tensor(theta) or theta.dim() < 1 or theta.shape[-1] != num_params:
            shape = tuple(theta.shape) if torch.is_tensor(theta) else theta
            raise ValueError(
                f"theta must be a tensor of shape (..., D) = (..., {num_params}); got {shape}"
            )
        if validate_args is not False and bool(torch.isnan(theta).any()):
            raise ValueError("theta contains NaN; check the reward model's parameters")
        self.theta = theta
        # The normaliser runs on the unexpanded theta: inside a plate of n demonstrations
        # the distribution is expanded to batch (..., n), and recomputing log Z (a
        # recursion, an importance estimate) for n identical copies would cost n times
        # as much.
        self._unexpanded_theta = theta
        self.reward = reward
        self.normalizer = normalizer
        self.space = normalizer.space
        self._exact = isinstance(normalizer, ExactLikelihood)
        self.given_initial_state = bool(given_initial_state)
        super().__init__(
            batch_shape=theta.shape[:-1],
            event_shape=self.space.event_shape,
            validate_args=validate_args,
        )

    @constraints.dependent_property
    def support(self):  # noqa: D102
        return self.space.support

    @property
    def kind(self) -> str:
        """The model: ``"global"`` or ``"causal"`` (from the normaliser)."""
        return getattr(self.normalizer, "kind", "global")

    def expand(self, batch_shape, _instance=None):  # noqa: D102
        new = self._get_checked_instance(MaxEntTrajectory, _instance)
        batch_shape = torch.Size(batch_shape)
        new.theta = self.theta.expand(batch_shape + self.theta.shape[-1:])
        new._unexpanded_theta = self._unexpanded_theta
        new.reward, new.normalizer, new.space = self.reward, self.normalizer, self.space
        new._exact = self._exact
        new.given_initial_state = self.given_initial_state
        super(MaxEntTrajectory, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value: Tensor) -> Tensor:
        """Return ``log P(x | theta)`` of shape ``broadcast(value batch, batch_shape)``."""
        if self._validate_args:
            self._validate_sample(value)
        theta = self._unexpanded_theta
        event_dim = len(self.event_shape)
        shape = broadcast_shapes(value.shape[: value.dim() - event_dim], self.batch_shape)
        if self._exact:
            out = self.normalizer.log_likelihood(
                self.reward, theta, value, given_initial_state=self.given_initial_state
            )
            return out.expand(shape)
        if self.given_initial_state or self.kind != "global" or self.space.is_truncated(value):
            raise ValueError(
                "truncated trajectories, given_initial_state=True and the causal model need "
                f"an exact normaliser (ExactNormalizer); {type(self.normalizer).__name__} "
                "only estimates log Z"
            )
        if value.is_floating_point():
            value = value.to(theta.dtype)
        out = self.reward.returns(theta, *self.space.split(value)) + self.space.log_base(value)
        out = out - self.normalizer.log_normalizer(self.reward, theta)
        return out.expand(shape)

    def sample(self, sample_shape=()) -> Tensor:
        """Draw trajectories, shape ``sample_shape + batch_shape + event_shape``.

        Exact where the normaliser is exact, sampling-importance-resampling otherwise
        (``normalizer.sample``); uses the global torch RNG (seed it with
        ``pyro.set_rng_seed``).
        """
        return self.normalizer.sample(
            self.reward,
            self.theta.detach(),
            torch.Size(sample_shape),
            given_initial_state=self.given_initial_state,
        )
