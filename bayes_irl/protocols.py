r"""The protocols of bayes_irl: one per concept, shared by every environment family.

A demonstration x is a draw from the maximum-entropy trajectory distribution

    log P(x | theta) = R_theta(x) + log b(x) - log Z(theta),   Z(theta) = sum_x b(x) exp R_theta(x)

and the library splits that formula into four concepts, each a :class:`typing.Protocol`
below. Tabular MDPs, token sequences, linear-quadratic control and black-box simulators
implement the *same* protocols; a new environment family implements them, it does not
copy the stack.

* :class:`TrajectorySpace`: the event encoding of one trajectory, its support, ``split``
  into (states, actions), ``is_truncated``, the base measure ``log b(x)``, validation of
  user data and the ArviZ groups. Implemented by ``TabularMDP``, ``LinearQuadraticMDP``,
  ``TrajectoryLayout``.
* :class:`RewardModel`: a prior over theta (D,), sampled in a plate, and the return
  ``R_theta(x)`` of trajectories (``LinearReward``, ``MLPReward``, ``QuadraticReward``, ...).
* :class:`Normalizer`: ``log Z(theta)`` (differentiable), trajectory sampling (exact, or
  sampling-importance-resampling) and diagnostics: exact (tabular recursion, LQ algebra),
  importance, SMC. Exact ones may add :class:`ExactLikelihood`.
* :class:`GuidePolicy`: the importance proposal q over trajectories: draws a bank with
  ``log b(x) - log q(x)`` and gives a differentiable ``log q`` for training.
* :class:`Model`: the Pyro program and what back-ends and the ArviZ converter need;
  optionally :class:`SufficientStatistics`.
* :class:`Potential`: what every inference method runs on, U(z) = -log p(theta(z), data)
  in the flat unconstrained space of a :class:`~bayes_irl.parameter_layout.ParameterLayout`,
  with its gradient in NumPy and one torch adapter. Every model yields one: the generic
  potential traced from its Pyro program, or an exact fast one it offers.

Shapes. ``theta`` has shape ``theta_batch + (D,)`` with any leading batch dimensions (draws,
chains, plates); a trajectory tensor has shape ``traj_batch + event_shape``; results of
``returns``, ``log_base``, ``log_normalizer`` broadcast ``theta_batch`` against
``traj_batch`` right-aligned. Back-ends and diagnostics use only these protocols: they never
read a model's internals.

These are structural types (``typing.Protocol``): nothing needs to inherit from them, and
``isinstance`` checks (``runtime_checkable``) test only that the methods exist.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor
from torch.distributions import constraints

if TYPE_CHECKING:
    from bayes_irl.parameter_layout import ParameterLayout

__all__ = [
    "ExactLikelihood",
    "Potential",
    "GuidePolicy",
    "Model",
    "Normalizer",
    "RewardModel",
    "SufficientStatistics",
    "TrajectorySpace",
]


@runtime_checkable
class TrajectorySpace(Protocol):
    """Where trajectories live: their tensor encoding, support and base measure.

    Tabular: ``value[..., t, 0] = s_t``, ``value[..., t, 1] = a_t``, ``event_shape = (T + 1,
    2)`` with ``-1`` padding after a trajectory's length. Continuous: the flat vector
    ``z = (x_0, u_0, ..., x_T)``, ``event_shape = (d,)``.
    """

    @property
    def event_shape(self) -> torch.Size:
        """Shape of one encoded trajectory."""
        ...

    @property
    def support(self) -> constraints.Constraint:
        """Constraint with ``event_dim = len(event_shape)`` that valid encodings satisfy."""
        ...

    def split(self, value: Tensor) -> tuple[Tensor, Tensor]:
        """Decode ``value (..., *event_shape)`` into ``(states, actions)``.

        Tabular: int ``(..., T + 1)`` and ``(..., T)``, ``-1`` where unobserved. Continuous:
        float ``(..., T + 1, dx)`` and ``(..., T, du)``.
        """
        ...

    def is_truncated(self, value: Tensor) -> bool:
        """Whether any trajectory in ``value`` is observed only in part (tabular padding).

        The likelihood of a truncated trajectory marginalises its unobserved remainder,
        which needs an exact normaliser (:class:`ExactLikelihood`).
        """
        ...

    def log_base(self, value: Tensor, *, given_initial_state: bool = False) -> Tensor:
        """``log b(x)`` of shape ``value.shape[:-len(event_shape)]``.

        ``given_initial_state`` leaves out ``log p0(s_0)`` (s_0 is a context). A space whose
        dynamics are unknown (a simulator) returns zeros: ``log b`` does not depend on
        theta, so the posterior is unchanged.
        """
        ...

    def prepare(self, data: Any) -> Tensor:
        """Validate user data (batch objects, arrays, pairs) and return ``(n, *event_shape)``.

        Raises:
            ValueError: naming the argument and the expected shape or range.
        """
        ...

    def arviz_groups(self, data: Tensor) -> dict:
        """``observed_data``, ``constant_data``, ``coords`` and ``dims`` for ArviZ."""
        ...


@runtime_checkable
class RewardModel(Protocol):
    """A prior over ``theta (D,)`` and the return ``R_theta(x) = sum_{t<T} r_theta(s_t, a_t)``.

    Calling the model samples ``theta`` from its prior inside ``pyro.plate(dim_name, D,
    dim=-1)`` (never ``.to_event``: see :mod:`bayes_irl.rewards`) and returns it.
    """

    site_name: str
    dim_name: str
    num_params: int

    @property
    def param_names(self) -> list[str]:
        """The D coordinate names (ArviZ coordinates of ``dim_name``)."""
        ...

    def __call__(self) -> Tensor:
        """Sample ``theta`` (shape ``batch + (D,)``) at site ``site_name``."""
        ...

    def returns(self, theta: Tensor, states: Tensor, actions: Tensor) -> Tensor:
        """``R_theta`` of trajectories split by :meth:`TrajectorySpace.split`.

        Returns:
            Shape ``broadcast(theta.shape[:-1], traj_batch)``; unobserved steps (``-1``
            actions of tabular trajectories) contribute zero.
        """
        ...


@runtime_checkable
class Normalizer(Protocol):
    """``log Z(theta)`` of the maxent distribution of a reward on a trajectory space."""

    is_exact: bool
    """True for exact normalisers (recursion, analytic); False for estimators."""

    @property
    def space(self) -> TrajectorySpace:
        """The trajectory space (base measure) the normaliser integrates over."""
        ...

    @property
    def diagnostics(self) -> Any:
        """Diagnostics of the last estimate (``ImportanceDiagnostics``), None if exact."""
        ...

    def log_normalizer(self, reward: RewardModel, theta: Tensor) -> Tensor:
        """Differentiable ``log Z`` (or its estimate), shape ``theta.shape[:-1]``."""
        ...

    def sample(
        self,
        reward: RewardModel,
        theta: Tensor,
        sample_shape: tuple[int, ...] = (),
        *,
        given_initial_state: bool = False,
    ) -> Tensor:
        """Trajectories of shape ``sample_shape + theta.shape[:-1] + event_shape``.

        Exact where the normaliser is exact, sampling-importance-resampling otherwise.
        """
        ...


@runtime_checkable
class ExactLikelihood(Protocol):
    """Optional capability of exact normalisers: the likelihood beyond ``R + log b - log Z``.

    Truncated trajectories (their unobserved tails marginalised), a conditioned initial
    state and the maximum-causal-entropy model need soft values, not only ``log Z``; a
    normaliser that offers this method computes the whole log-likelihood.
    """

    def log_likelihood(
        self,
        reward: RewardModel,
        theta: Tensor,
        value: Tensor,
        *,
        given_initial_state: bool = False,
    ) -> Tensor:
        """``log P(x | theta)``, shape ``broadcast(theta.shape[:-1], traj_batch)``."""
        ...


@runtime_checkable
class GuidePolicy(Protocol):
    """The guide policy: the importance proposal q over trajectories (not the Pyro guide).

    A bank drawn from q does not depend on theta; importance normalisers reweight it for
    every theta with ``log w = R_theta(x) + log b(x) - log q(x)``.
    """

    def draw(
        self, num_samples: int, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draw a bank: ``(value (K, *event_shape), log_ratio (K,))``.

        ``log_ratio = log b(x) - log q(x)`` (detached); with a simulator or known dynamics
        under a policy proposal the dynamics cancel in it.
        """
        ...

    def log_prob(self, value: Tensor) -> Tensor:
        """Differentiable ``log q(x)`` up to theta- and parameter-free terms, shape (K,)."""
        ...

    def parameters(self) -> Any:
        """Trainable parameters (an ``nn.Module``'s), optimised by the guide trainer."""
        ...


@runtime_checkable
class Model(Protocol):
    """A bayes_irl model: the Pyro program plus what back-ends and ArviZ need.

    Back-ends call ``prepare_data`` once, then the model with the prepared data; the
    converter reads ``observed_sites``, ``latent_dims`` and ``arviz_groups``.
    """

    @property
    def observed_sites(self) -> dict[str, str]:
        """Observed site name -> ArviZ dimension of its per-item log-likelihood."""
        ...

    @property
    def latent_dims(self) -> dict[str, tuple[str, list[str]]]:
        """Latent site name -> (dimension name, coordinate labels)."""
        ...

    def prepare_data(self, data: Any) -> Any:
        """Validate user data once; return what ``__call__`` takes."""
        ...

    def __call__(self, data: Any = None, *, subsample: bool = True) -> Any:
        """Run the Pyro program on prepared data (``None`` simulates)."""
        ...

    def arviz_groups(self, data: Any) -> dict:
        """``observed_data``, ``constant_data``, ``coords`` and ``dims`` for ArviZ."""
        ...


@runtime_checkable
class SufficientStatistics(Protocol):
    """Optional capability of a model: a log-joint whose cost does not grow with n.

    NUTS/HMC ask for it (and use the model's trace otherwise); the model decides whether
    it applies (e.g. a linear reward with an exact global normaliser: the data enter only
    through the summed feature counts).
    """

    def sufficient_statistics_potential(
        self, data: Any
    ) -> Callable[[dict[str, Tensor]], Tensor] | None:
        """Return ``potential(params) = -log p(theta, data)`` or None where it does not apply.

        ``params`` maps each latent site to its (unconstrained = constrained, real-valued)
        value of shape ``(D,)``.
        """
        ...


@runtime_checkable
class Potential(Protocol):
    r"""The negative log joint density in unconstrained coordinates: what every method runs on.

    With the latent sites laid out in one vector z (D,) by ``layout`` and theta(z) their
    constrained values,

        U(z) = -log p(theta(z), data) - log |det d theta / d z| + const,

    so exp(-U) is the posterior density of z up to its normaliser. NUTS, HMC, Gaussian VI,
    the MAP search and the Laplace approximation all take a Potential; a model yields one
    (:func:`bayes_irl.models.model_potential`): the generic potential traced from its Pyro
    program, or an exact fast one (sufficient statistics, visit counts, Bradley-Terry
    differences) that the tests prove equal to the traced one.

    ``deterministic`` is False for an estimate (an importance normaliser that draws a fresh
    trajectory bank per evaluation): such a potential is only for stochastic-gradient
    methods (SVI); the MAP, the Laplace approximation and NUTS refuse it.
    """

    layout: ParameterLayout
    deterministic: bool
    exact: bool
    """False where U uses an estimated normaliser (an importance bank): deterministic for a
    fixed bank, but an estimate of the posterior's potential, so checks against it (ELBO
    stationarity) do not apply."""
    kind: str
    """A short name of the evaluator (``"traced"``, ``"sufficient_statistics"``, ...)."""
    start: Tensor
    """A point z (D,) where U is finite, e.g. the prior draw of a trace (searches start there
    when z = 0 is outside the support)."""

    def value_and_grad(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        """``(U(z), dU/dz)`` for z of shape (D,) in float64 NumPy (``inf`` outside the support)."""
        ...

    def torch(self, z: Tensor) -> Tensor:
        """``U(z)`` in torch, differentiable twice; ``z`` (..., D) gives shape ``z.shape[:-1]``."""
        ...

    def hessian(self, z: np.ndarray) -> np.ndarray:
        """The Hessian of U at z, shape (D, D)."""
        ...
