r"""Maximum-entropy IRL on continuous trajectories: distribution, reward models, Pyro model.

A demonstration is a fixed-horizon continuous trajectory, encoded as the flat vector

.. math::

    z = (x_0, u_0, x_1, u_1, \dots, x_{T-1}, u_{T-1}, x_T) \in \mathbb{R}^d,
    \qquad d = T (d_x + d_u) + d_x,

(the encoding of :meth:`bayes_irl.linear_quadratic.LinearQuadraticMDP.flatten`;
:class:`TrajectoryLayout` converts between ``z`` and ``(states[..., T+1, dx],
actions[..., T, du])``). The global maxent model with base measure
:math:`b(z) = p(x_0) \prod_t p(x_{t+1} \mid x_t, u_t)` (Lebesgue measure on the actions)
and return :math:`R_\theta(z) = \sum_{t<T} r_\theta(x_t, u_t)` is

.. math::

    \log P_\theta(z) = R_\theta(z) + \log b(z) - \log Z(\theta),
    \qquad Z(\theta) = \int b(z)\, e^{R_\theta(z)}\, dz.

:math:`\log Z` comes from a normaliser: the analytic
:class:`~bayes_irl.inference.normalizers.linear_quadratic.LinearQuadraticNormalizer` for the
quadratic reward on known LQ dynamics, or the importance estimate
:class:`~bayes_irl.inference.normalizers.simulator.SimulatorImportanceNormalizer` through a
black-box simulator. With a simulator :math:`\log b` is unknown; it does not depend on
:math:`\theta`, so it is dropped (``log_base=None``): the posterior is unchanged, and the
pointwise log-likelihoods are shifted by a per-demonstration constant that is the same
for every model sharing those dynamics (LOO differences between such models stay valid).

Reward models (``returns(theta, states, actions)`` with :math:`\theta` of shape
``(..., P)`` and any leading batch dims, broadcast right-aligned against the trajectories'):

* :class:`QuadraticReward`: :math:`r_\theta(x, u) = -\tfrac12 (\sum_i q_i x_i^2 +
  \sum_j r_j u_j^2)`, :math:`\theta = (q, r) > 0`, prior LogNormal(0, 1) per coordinate;
* :class:`NeuralStateReward`: :math:`r_w(x, u) = \sum_h w_{2,h} \tanh(W_1 x + b_1)_h -
  \tfrac12 \sum_j \rho_j u_j^2` with every MLP weight drawn from its prior (a Bayesian
  neural reward) and a fixed, known control cost :math:`\rho > 0`. The state part is
  bounded (:math:`|r| \le \sum_h |w_{2,h}|`), so :math:`Z < \infty` for every :math:`w`;
  the output bias is omitted because a constant step reward cancels in :math:`Z`.

Both draw :math:`\theta` inside ``pyro.plate(dim_name, P, dim=-1)`` (never ``.to_event``;
see :mod:`bayes_irl.rewards`).

Shapes of :class:`ContinuousMaxEntTrajectory`: ``batch_shape = theta.shape[:-1]``,
``event_shape = (d,)``; ``log_prob(value)`` returns ``broadcast(value.shape[:-1],
batch_shape)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import TorchDistribution
from pyro.nn import PyroModule
from torch import Tensor
from torch.distributions import constraints

from bayes_irl.linear_quadratic import LinearQuadraticMDP, check_trajectory_shapes
from bayes_irl.rewards.tabular import _validate_prior

__all__ = [
    "ContinuousDemonstrationModel",
    "ContinuousMaxEntTrajectory",
    "ContinuousReward",
    "ContinuousTrajectoryConstraint",
    "NeuralStateReward",
    "QuadraticReward",
    "TrajectoryLayout",
]


def _dim(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1; got {value!r}")
    return int(value)


@dataclass(frozen=True)
class TrajectoryLayout:
    """Shape bookkeeping of fixed-horizon continuous trajectories.

    Attributes:
        horizon: ``T`` (actions per trajectory; ``T + 1`` states).
        state_dim: ``dx``.
        action_dim: ``du``.
    """

    horizon: int
    state_dim: int
    action_dim: int

    def __post_init__(self) -> None:
        for name in ("horizon", "state_dim", "action_dim"):
            _dim(getattr(self, name), name)

    @classmethod
    def of(cls, obj: Any) -> TrajectoryLayout:
        """Layout of an object with ``horizon``, ``state_dim`` and ``action_dim`` attributes."""
        return cls(int(obj.horizon), int(obj.state_dim), int(obj.action_dim))

    @property
    def trajectory_dim(self) -> int:
        """``d = T (dx + du) + dx``."""
        return self.horizon * (self.state_dim + self.action_dim) + self.state_dim

    def check_pair(self, states: Any, actions: Any) -> tuple[Tensor, Tensor]:
        """Validate ``states (..., T+1, dx)`` and ``actions (..., T, du)`` (float, finite).

        Returns:
            Both as floating tensors (float64 unless already floating).

        Raises:
            ValueError: for wrong shapes, non-broadcasting batch dims or non-finite values.
        """
        states, actions = torch.as_tensor(states), torch.as_tensor(actions)
        if not states.is_floating_point():
            states = states.to(torch.float64)
        actions = actions.to(states.dtype)
        check_trajectory_shapes(
            states,
            actions,
            horizon=self.horizon,
            state_dim=self.state_dim,
            action_dim=self.action_dim,
        )
        return states, actions

    def flatten(self, states: Tensor, actions: Tensor) -> Tensor:
        """``(states (..., T+1, dx), actions (..., T, du))`` -> ``z (..., d)``."""
        states, actions = self.check_pair(states, actions)
        batch = torch.broadcast_shapes(states.shape[:-2], actions.shape[:-2])
        T = self.horizon
        states = states.expand(*batch, T + 1, self.state_dim)
        pairs = torch.cat([states[..., :-1, :], actions.expand(*batch, T, self.action_dim)], -1)
        return torch.cat([pairs.reshape(*batch, -1), states[..., -1, :]], dim=-1)

    def unflatten(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z (..., d)`` -> ``(states (..., T+1, dx), actions (..., T, du))`` (views)."""
        if z.ndim < 1 or z.shape[-1] != self.trajectory_dim:
            raise ValueError(
                f"`z` must have shape (..., d) = (..., {self.trajectory_dim}); got {tuple(z.shape)}"
            )
        T, dx, du = self.horizon, self.state_dim, self.action_dim
        batch = z.shape[:-1]
        pairs = z[..., : T * (dx + du)].reshape(*batch, T, dx + du)
        states = torch.cat([pairs[..., :dx], z[..., None, T * (dx + du) :]], dim=-2)
        return states, pairs[..., dx:]


# ---------------------------------------------------------------------------- rewards
class ContinuousReward(PyroModule):
    """Base class of rewards on continuous trajectories, with a prior over ``theta (P,)``.

    Subclasses set ``num_params`` and ``param_names`` and implement :meth:`step_rewards`.
    ``forward()`` samples ``theta`` inside ``pyro.plate(dim_name, P, dim=-1)`` and returns
    it (shape ``(P,)``, or ``batch + (P,)`` under outer plates).

    Args:
        prior: univariate prior, batch_shape ``()`` or ``(P,)``.
        num_params: ``P``.
        state_dim: ``dx``.
        action_dim: ``du``.
    """

    site_name = "theta"
    dim_name = "param"

    def __init__(
        self, *, prior: dist.Distribution, num_params: int, state_dim: int, action_dim: int
    ) -> None:
        super().__init__()
        self.num_params = _dim(num_params, "num_params")
        self.state_dim = _dim(state_dim, "state_dim")
        self.action_dim = _dim(action_dim, "action_dim")
        self.prior = _validate_prior(prior, self.num_params, "prior")

    @property
    def param_names(self) -> list[str]:
        """Names of the ``P`` parameters (ArviZ coordinates)."""
        return [f"{self.site_name}_{i}" for i in range(self.num_params)]

    def check_theta(self, theta: Any) -> Tensor:
        """Validate ``theta (..., P)``: shape and finiteness (subclasses add range checks).

        Raises:
            ValueError: for a wrong last dimension or NaN/inf values.
        """
        theta = torch.as_tensor(theta)
        if not theta.is_floating_point():
            theta = theta.to(torch.float64)
        if theta.ndim < 1 or theta.shape[-1] != self.num_params:
            raise ValueError(
                f"`theta` must have shape (..., {self.num_params}) (names "
                f"{self.param_names}); got shape {tuple(theta.shape)}"
            )
        if not bool(torch.isfinite(theta).all()):
            raise ValueError(f"`theta` must be finite (no NaN or inf); got {theta.detach()}")
        return theta

    def step_rewards(self, theta: Tensor, states: Tensor, actions: Tensor) -> Tensor:
        """``r_theta(x_t, u_t)`` for ``t < T``.

        Args:
            theta: shape ``theta_batch + (P,)``.
            states: shape ``traj_batch + (T+1, dx)`` (``x_T`` is unused).
            actions: shape ``traj_batch + (T, du)``.

        Returns:
            Shape ``broadcast(theta_batch, traj_batch) + (T,)``.
        """
        raise NotImplementedError

    def returns(self, theta: Tensor, states: Tensor, actions: Tensor) -> Tensor:
        """``R_theta(z) = sum_{t<T} r_theta(x_t, u_t)``; shape ``broadcast(theta_b, traj_b)``."""
        return self.step_rewards(theta, states, actions).sum(-1)

    def forward(self) -> Tensor:
        """Sample ``theta`` from the prior in plate ``dim_name``; returns shape ``(..., P)``."""
        with pyro.plate(self.dim_name, self.num_params, dim=-1):
            return pyro.sample(self.site_name, self.prior)


class QuadraticReward(ContinuousReward):
    """``r(x, u) = -1/2 (sum_i q_i x_i^2 + sum_j r_j u_j^2)`` with ``theta = (q, r) > 0``.

    The reward of :mod:`bayes_irl.linear_quadratic` (same parameter order and names), so
    the analytic normaliser applies to it on LQ dynamics.

    Args:
        state_dim: ``dx``.
        action_dim: ``du``.
        prior: univariate prior with positive support; default LogNormal(0, 1).
        dtype: dtype of the default prior.

    Raises:
        ValueError: for bad dimensions or a prior whose support is not positive.

    Examples:
        >>> import torch
        >>> reward = QuadraticReward(2, 1)
        >>> states, actions = torch.ones(4, 11, 2), torch.ones(4, 10, 1)
        >>> reward.returns(torch.ones(3, 1, 3), states, actions).shape
        torch.Size([3, 4])
    """

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        *,
        prior: dist.Distribution | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        if prior is None:
            prior = dist.LogNormal(torch.tensor(0.0, dtype=dtype), torch.tensor(1.0, dtype=dtype))
        support = getattr(prior, "support", None)
        if support not in (constraints.positive, constraints.nonnegative) and not isinstance(
            support, (constraints.greater_than, constraints.greater_than_eq)
        ):
            raise ValueError(
                f"`prior` must have positive support (theta > 0), e.g. LogNormal or "
                f"HalfNormal; got {prior!r} with support {support}"
            )
        d = _dim(state_dim, "state_dim") + _dim(action_dim, "action_dim")
        super().__init__(prior=prior, num_params=d, state_dim=state_dim, action_dim=action_dim)

    @property
    def param_names(self) -> list[str]:  # noqa: D102
        return [f"q_{i}" for i in range(self.state_dim)] + [
            f"r_{j}" for j in range(self.action_dim)
        ]

    def check_theta(self, theta: Any) -> Tensor:
        """As :meth:`ContinuousReward.check_theta`, and every ``theta`` must be > 0.

        Raises:
            ValueError: for a wrong shape, NaN/inf, or a non-positive weight.
        """
        theta = super().check_theta(theta)
        if not bool((theta > 0).all()):
            raise ValueError(
                f"`theta` (the quadratic costs q, r) must be > 0; got {theta.detach()}"
            )
        return theta

    def features(self, states: Tensor, actions: Tensor) -> Tensor:
        """``-1/2 [sum_{t<T} x_t^2, sum_{t<T} u_t^2]``, shape ``traj_batch + (D,)``."""
        batch = torch.broadcast_shapes(states.shape[:-2], actions.shape[:-2])
        fx = -0.5 * states[..., :-1, :].pow(2).sum(-2)
        fu = -0.5 * actions.pow(2).sum(-2)
        return torch.cat(
            [fx.expand(*batch, self.state_dim), fu.expand(*batch, self.action_dim)], -1
        )

    def step_rewards(self, theta: Tensor, states: Tensor, actions: Tensor) -> Tensor:  # noqa: D102
        theta = self.check_theta(theta).to(states.dtype)
        q, r = theta[..., None, : self.state_dim], theta[..., None, self.state_dim :]
        return -0.5 * ((states[..., :-1, :].pow(2) * q).sum(-1) + (actions.pow(2) * r).sum(-1))

    def returns(self, theta: Tensor, states: Tensor, actions: Tensor) -> Tensor:  # noqa: D102
        theta = self.check_theta(theta).to(states.dtype)
        return (theta * self.features(states, actions)).sum(-1)


class NeuralStateReward(ContinuousReward):
    """Bayesian MLP state reward plus a known quadratic control cost.

    ``r_w(x, u) = w2 . tanh(x W1 + b1) - 1/2 sum_j rho_j u_j^2``; ``theta`` packs
    ``W1 (dx, H)``, ``b1 (H,)``, ``w2 (H,)`` (``P = dx H + 2 H``), each with the prior.

    Args:
        state_dim: ``dx``.
        action_dim: ``du``.
        control_cost: ``rho``, a positive float or ``(du,)`` values (known, not inferred).
        hidden: ``H``.
        prior: univariate prior of every weight; default Normal(0, 1).
        dtype: dtype of the default prior and of ``rho``.

    Raises:
        ValueError: for bad dimensions or ``rho <= 0``.
    """

    site_name = "mlp_weights"
    dim_name = "mlp_param"

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        *,
        control_cost: float | Any,
        hidden: int = 8,
        prior: dist.Distribution | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        dx, du, h = (
            _dim(state_dim, "state_dim"),
            _dim(action_dim, "action_dim"),
            _dim(hidden, "hidden"),
        )
        if prior is None:
            prior = dist.Normal(torch.tensor(0.0, dtype=dtype), torch.tensor(1.0, dtype=dtype))
        super().__init__(prior=prior, num_params=dx * h + 2 * h, state_dim=dx, action_dim=du)
        rho = torch.as_tensor(control_cost, dtype=dtype).expand(du).clone()
        if not bool(torch.isfinite(rho).all()) or not bool((rho > 0).all()):
            raise ValueError(
                f"`control_cost` rho must be finite and > 0 (it makes Z finite); got {rho}"
            )
        self.control_cost, self.hidden = rho, h

    @property
    def param_names(self) -> list[str]:  # noqa: D102
        dx, h = self.state_dim, self.hidden
        return (
            [f"w1[{i},{j}]" for i in range(dx) for j in range(h)]
            + [f"b1[{j}]" for j in range(h)]
            + [f"w2[{j}]" for j in range(h)]
        )

    def state_reward(self, theta: Tensor, x: Tensor) -> Tensor:
        """The MLP part ``w2 . tanh(x W1 + b1)``.

        Args:
            theta: shape ``theta_batch + (P,)``.
            x: states, shape ``x_batch + (N, dx)`` (``N`` points per batch element).

        Returns:
            Shape ``broadcast(theta_batch, x_batch) + (N,)``.
        """
        theta = self.check_theta(theta).to(x.dtype)
        dx, h = self.state_dim, self.hidden
        batch = theta.shape[:-1]
        w1 = theta[..., : dx * h].reshape(*batch, dx, h)
        b1 = theta[..., dx * h : dx * h + h].reshape(*batch, 1, h)
        w2 = theta[..., dx * h + h :].reshape(*batch, h, 1)
        return (torch.tanh(x @ w1 + b1) @ w2).squeeze(-1)

    def step_rewards(self, theta: Tensor, states: Tensor, actions: Tensor) -> Tensor:  # noqa: D102
        state_part = self.state_reward(theta, states[..., :-1, :])
        control = -0.5 * (actions.pow(2) * self.control_cost.to(actions.dtype)).sum(-1)
        return state_part + control


# ---------------------------------------------------------------------------- distribution
class ContinuousTrajectoryConstraint(constraints.Constraint):
    """Support of :class:`ContinuousMaxEntTrajectory`: finite real vectors of length ``d``.

    ``check(value)`` has shape ``value.shape[:-1]`` (False everywhere for a wrong ``d``).
    """

    is_discrete = False
    event_dim = 1

    def __init__(self, trajectory_dim: int) -> None:
        self.trajectory_dim = trajectory_dim
        super().__init__()

    def check(self, value: Tensor) -> Tensor:  # noqa: D102
        if value.shape[-1:] != (self.trajectory_dim,):
            return torch.zeros(value.shape[:-1], dtype=torch.bool, device=value.device)
        return torch.isfinite(value).all(-1)


class ContinuousMaxEntTrajectory(TorchDistribution):
    """Maxent distribution over flattened continuous trajectories ``z``.

    ``log_prob(z) = R_theta(z) + log b(z) - log Z_hat(theta)``.

    Args:
        theta: reward parameters, shape ``batch_shape + (P,)``.
        reward: a :class:`ContinuousReward` (``returns(theta, states, actions)``).
        normalizer: has ``log_normalizer(theta) -> theta.shape[:-1]`` (analytic or
            importance).
        layout: the :class:`TrajectoryLayout` of ``z``.
        log_base: ``log_base(states, actions) -> traj_batch`` (the known dynamics'
            density), or ``None`` to drop this theta-independent term (simulators).
        validate_args: check values against the support in ``log_prob``.

    Raises:
        ValueError: if ``theta`` has the wrong last dimension or contains NaN.

    Examples:
        >>> import torch
        >>> from bayes_irl.linear_quadratic import LinearQuadraticMDP
        >>> from bayes_irl.inference.normalizers.linear_quadratic import LinearQuadraticNormalizer
        >>> mdp = LinearQuadraticMDP.default(dx=2, du=1, horizon=5)
        >>> d = ContinuousMaxEntTrajectory(
        ...     torch.tensor([1.0, 0.5, 0.1], dtype=torch.float64), QuadraticReward(2, 1),
        ...     LinearQuadraticNormalizer(mdp), layout=TrajectoryLayout(5, 2, 1),
        ...     log_base=mdp.log_base)
        >>> z = d.sample((7,))
        >>> z.shape, d.log_prob(z).shape
        (torch.Size([7, 17]), torch.Size([7]))
    """

    arg_constraints = {"theta": constraints.real_vector}
    has_rsample = False

    def __init__(
        self,
        theta: Tensor,
        reward: ContinuousReward,
        normalizer: Any,
        *,
        layout: TrajectoryLayout,
        log_base: Callable[[Tensor, Tensor], Tensor] | None = None,
        validate_args: bool | None = None,
    ) -> None:
        if not torch.is_tensor(theta) or theta.ndim < 1 or theta.shape[-1] != reward.num_params:
            shape = tuple(theta.shape) if torch.is_tensor(theta) else theta
            raise ValueError(
                f"`theta` must be a tensor of shape (..., P) = (..., {reward.num_params}); "
                f"got {shape}"
            )
        if validate_args is not False and bool(torch.isnan(theta).any()):
            raise ValueError("`theta` contains NaN; check the reward model's parameters")
        self.theta = theta
        self._unexpanded_theta = theta  # the normaliser runs once per theta, not per demo
        self.reward, self.normalizer, self.layout, self.log_base = (
            reward,
            normalizer,
            layout,
            log_base,
        )
        super().__init__(
            batch_shape=theta.shape[:-1],
            event_shape=(layout.trajectory_dim,),
            validate_args=validate_args,
        )

    @constraints.dependent_property(is_discrete=False, event_dim=1)
    def support(self):  # noqa: D102
        return ContinuousTrajectoryConstraint(self.layout.trajectory_dim)

    def expand(self, batch_shape, _instance=None):  # noqa: D102
        new = self._get_checked_instance(ContinuousMaxEntTrajectory, _instance)
        batch_shape = torch.Size(batch_shape)
        new.theta = self.theta.expand(batch_shape + self.theta.shape[-1:])
        new._unexpanded_theta = self._unexpanded_theta
        new.reward, new.normalizer = self.reward, self.normalizer
        new.layout, new.log_base = self.layout, self.log_base
        super(ContinuousMaxEntTrajectory, new).__init__(
            batch_shape, self.event_shape, validate_args=False
        )
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value: Tensor) -> Tensor:
        """``log P(z)``, shape ``broadcast(value.shape[:-1], batch_shape)``."""
        if self._validate_args:
            self._validate_sample(value)
        theta = self._unexpanded_theta
        states, actions = self.layout.unflatten(value.to(theta.dtype))
        out = self.reward.returns(theta, states, actions)
        if self.log_base is not None:
            out = out + self.log_base(states, actions)
        out = out - self.normalizer.log_normalizer(theta)
        shape = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        return out.expand(shape)

    def sample(self, sample_shape=()) -> Tensor:
        """Draw ``z``, shape ``sample_shape + batch_shape + (d,)`` (global torch RNG).

        Exact for the quadratic reward with the analytic LQ normaliser (joint Gaussian);
        otherwise sampling-importance-resampling through ``normalizer.resample``.

        Raises:
            NotImplementedError: if the normaliser offers neither.
        """
        sample_shape = torch.Size(sample_shape)
        theta = self.theta.detach()
        with torch.no_grad():
            if hasattr(self.normalizer, "trajectory_distribution") and isinstance(
                self.reward, QuadraticReward
            ):
                return self.normalizer.trajectory_distribution(theta).sample(sample_shape)
            if hasattr(self.normalizer, "resample"):
                num = max(sample_shape.numel(), 1)
                z = self.normalizer.resample(theta, num)  # (num, *batch, d)
                return z.reshape(sample_shape + self.batch_shape + self.event_shape)
        raise NotImplementedError(
            f"{type(self.normalizer).__name__} provides neither exact sampling nor resample()"
        )


# ---------------------------------------------------------------------------- model
class ContinuousDemonstrationModel:
    """Pyro model of ``n`` continuous demonstrations from the maxent distribution of a reward.

    ::

        theta ~ reward_model.prior          (plate over the P parameters)
        z_i ~ ContinuousMaxEntTrajectory(theta, normaliser),  i = 1..n  (plate "demos")

    Follows the model protocol of :mod:`bayes_irl.models.demonstrations`, so
    :func:`bayes_irl.inference.fit` and ``Posterior.to_inference_data()`` work unchanged.

    Args:
        reward_model: a :class:`ContinuousReward` (its prior is the prior on theta).
        normalizer: ``LinearQuadraticNormalizer`` (its ``mdp`` gives the layout and
            ``log b``) or an estimator with ``horizon``, ``state_dim``, ``action_dim`` and
            ``log_normalizer(theta)`` (e.g. ``SimulatorImportanceNormalizer``).
        log_base: ``"auto"`` (``mdp.log_base`` when the normaliser has an LQ ``mdp``,
            else dropped), ``None`` (drop) or a callable ``(states, actions) -> batch``.
        subsample_size: demonstrations per SVI step (``None``: all).

    Raises:
        ValueError: for mismatched dimensions or a normaliser without ``log_normalizer``.

    Examples:
        >>> import torch
        >>> from bayes_irl.linear_quadratic import LinearQuadraticMDP, sample_demonstrations
        >>> from bayes_irl.inference.normalizers.linear_quadratic import LinearQuadraticNormalizer
        >>> mdp = LinearQuadraticMDP.default(dx=2, du=1, horizon=5)
        >>> model = ContinuousDemonstrationModel(
        ...     QuadraticReward(2, 1), LinearQuadraticNormalizer(mdp))
        >>> demos = sample_demonstrations(mdp, [1.0, 0.5, 0.1], 20)
        >>> model.prepare_data(demos).shape
        torch.Size([20, 17])
    """

    observed_site = "demonstrations"

    def __init__(
        self,
        reward_model: ContinuousReward,
        normalizer: Any,
        *,
        log_base: str | Callable[[Tensor, Tensor], Tensor] | None = "auto",
        subsample_size: int | None = None,
    ) -> None:
        if not isinstance(reward_model, ContinuousReward):
            raise ValueError(
                "`reward_model` must be a ContinuousReward (QuadraticReward, "
                f"NeuralStateReward); got {type(reward_model).__name__}"
            )
        if not hasattr(normalizer, "log_normalizer"):
            raise ValueError(
                f"`normalizer` must provide log_normalizer(theta); got {type(normalizer).__name__}"
            )
        mdp = getattr(normalizer, "mdp", None)
        if isinstance(mdp, LinearQuadraticMDP):
            layout = TrajectoryLayout(mdp.horizon, mdp.state_dim, mdp.action_dim)
        elif all(hasattr(normalizer, a) for a in ("horizon", "state_dim", "action_dim")):
            layout = TrajectoryLayout.of(normalizer)
        else:
            raise ValueError(
                "`normalizer` must have an LQ `mdp` or `horizon`, `state_dim`, `action_dim` "
                f"attributes; got {type(normalizer).__name__}"
            )
        if (reward_model.state_dim, reward_model.action_dim) != (
            layout.state_dim,
            layout.action_dim,
        ):
            raise ValueError(
                f"reward_model has (state_dim, action_dim) = ({reward_model.state_dim}, "
                f"{reward_model.action_dim}) but the normaliser's trajectories have "
                f"({layout.state_dim}, {layout.action_dim})"
            )
        if log_base == "auto":
            log_base = mdp.log_base if isinstance(mdp, LinearQuadraticMDP) else None
        elif log_base is not None and not callable(log_base):
            raise ValueError(f"`log_base` must be 'auto', None or a callable; got {log_base!r}")
        if subsample_size is not None and (
            isinstance(subsample_size, bool) or int(subsample_size) < 1
        ):
            raise ValueError(
                f"`subsample_size` must be a positive int or None; got {subsample_size}"
            )
        self.reward_model, self.normalizer, self.mdp = reward_model, normalizer, mdp
        self.layout, self.log_base, self.subsample_size = layout, log_base, subsample_size

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

    def prepare_data(self, data: Any) -> Tensor:
        """Validate demonstrations and return flattened trajectories ``z`` of shape ``(n, d)``.

        Args:
            data: a pair ``(states (n, T+1, dx), actions (n, T, du))`` or a tensor
                ``z (n, d)`` in the layout of the module docstring.

        Returns:
            float64 tensor of shape ``(n, d)``.

        Raises:
            ValueError: for ``None``, wrong shapes or non-finite values.
        """
        layout = self.layout
        if data is None:
            raise ValueError("`data` must hold demonstrations; got None")
        if isinstance(data, (tuple, list)) and len(data) == 2:
            states, actions = layout.check_pair(*data)
            if states.ndim != 3 or actions.ndim != 3:
                raise ValueError(
                    f"`data` must be (states (n, T+1, dx), actions (n, T, du)); got shapes "
                    f"{tuple(states.shape)} and {tuple(actions.shape)}"
                )
            return layout.flatten(states, actions).to(torch.float64)
        if torch.is_tensor(data) or isinstance(data, np.ndarray):
            z = torch.as_tensor(data, dtype=torch.float64)
            if z.ndim != 2 or z.shape[-1] != layout.trajectory_dim:
                raise ValueError(
                    f"`data` as a tensor must have shape (n, d) = (n, {layout.trajectory_dim}); "
                    f"got {tuple(z.shape)}"
                )
            if not bool(torch.isfinite(z).all()):
                raise ValueError("`data` must be finite (no NaN or inf)")
            return z
        raise ValueError(
            f"`data` must be (states, actions) or a (n, d) tensor; got {type(data).__name__}"
        )

    def trajectory_distribution(self, theta: Tensor) -> ContinuousMaxEntTrajectory:
        """The likelihood of one demonstration given ``theta (..., P)``."""
        return ContinuousMaxEntTrajectory(
            theta, self.reward_model, self.normalizer, layout=self.layout, log_base=self.log_base
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
            data: prepared demonstrations ``(n, d)``, or ``None`` to simulate.
            subsample: use ``subsample_size`` (False scores every demonstration).
            num_demonstrations: ``n`` when ``data`` is None.

        Returns:
            The demonstrations (observed or sampled), shape ``(n_or_subsample, d)``.
        """
        theta = self.reward_model()  # (..., P)
        n = data.shape[0] if data is not None else int(num_demonstrations or 1)
        size = self.subsample_size if subsample else None
        with pyro.plate("demos", n, subsample_size=size, dim=-1) as index:
            obs = None if data is None else data[index]
            # unsqueeze: theta's batch dims sit left of the demos plate (dim -1)
            return pyro.sample(
                self.observed_site, self.trajectory_distribution(theta.unsqueeze(-2)), obs=obs
            )

    def arviz_groups(self, data: Tensor) -> dict:
        """observed_data (states, actions), constant_data, coords and dims for ArviZ."""
        layout = self.layout
        states, actions = layout.unflatten(data.detach().cpu())
        constant: dict[str, Any] = {"horizon": np.asarray(layout.horizon)}
        dims: dict[str, list[str]] = {
            "states": ["demo", "time", "state_coord"],
            "actions": ["demo", "step", "action_coord"],
        }
        if isinstance(self.mdp, LinearQuadraticMDP):
            m = self.mdp
            constant.update(
                dynamics=m.dynamics.cpu().numpy(),
                control=m.control.cpu().numpy(),
                noise_cov=m.noise_cov.cpu().numpy(),
                initial_mean=m.initial_mean.cpu().numpy(),
                initial_cov=m.initial_cov.cpu().numpy(),
            )
            dims.update(
                dynamics=["state_coord", "state_coord_2"],
                control=["state_coord", "action_coord"],
                noise_cov=["state_coord", "state_coord_2"],
                initial_mean=["state_coord"],
                initial_cov=["state_coord", "state_coord_2"],
            )
        return {
            "observed_data": {"states": states.numpy(), "actions": actions.numpy()},
            "constant_data": constant,
            "coords": {
                "demo": np.arange(states.shape[0]),
                "time": np.arange(layout.horizon + 1),
                "step": np.arange(layout.horizon),
                "state_coord": np.arange(layout.state_dim),
                "state_coord_2": np.arange(layout.state_dim),
                "action_coord": np.arange(layout.action_dim),
            },
            "dims": dims,
        }
