r"""Continuous linear-quadratic (LQ) maximum-entropy environment.

A trajectory is the flat vector

.. math::

    z = (x_0, u_0, x_1, u_1, \dots, x_{T-1}, u_{T-1}, x_T),
    \qquad x_t \in \mathbb{R}^{d_x},\; u_t \in \mathbb{R}^{d_u},

of length :math:`d = T (d_x + d_u) + d_x`; ``states[..., t, :]`` is :math:`x_t`
(``t = 0..T``) and ``actions[..., t, :]`` is :math:`u_t` (``t = 0..T-1``), the action taken
in :math:`x_t` that leads to :math:`x_{t+1}`.

Base measure (the known dynamics; Lebesgue measure on the actions, i.e. no action prior)::

    b(z) = N(x_0; m_0, S_0) prod_{t=0}^{T-1} N(x_{t+1}; A x_t + B u_t, W).

Reward, linear in the parameters :math:`\theta = (q_1..q_{d_x}, r_1..r_{d_u})`, i.e. the
diagonals of the state cost :math:`Q` and of the control cost :math:`R`::

    R_theta(z) = sum_{t=0}^{T-1} theta . phi(x_t, u_t),
    phi(x, u)  = -1/2 [x_1^2, ..., x_{d_x}^2, u_1^2, ..., u_{d_u}^2].

**Time-indexing convention.** The reward is collected at the pairs
:math:`(x_t, u_t)` for ``t = 0..T-1``; the final state :math:`x_T` carries no reward (no
terminal cost). The summed feature counts are therefore
``features = -1/2 [sum_{t<T} x_t**2, sum_{t<T} u_t**2]``.

The maximum-entropy trajectory distribution
:math:`P_\theta(z) = b(z) \exp R_\theta(z) / Z(\theta)` is Gaussian in :math:`z` because
:math:`\log b + R_\theta` is a quadratic form::

    log b(z) + R_theta(z) = -1/2 z^T Lambda(theta) z + eta^T z + c,
    Lambda(theta) = Lambda_0 + diag(E theta),
    Lambda_0 = blockdiag-embed(S_0^{-1}) + sum_t M_t^T W^{-1} M_t,
    M_t z = x_{t+1} - A x_t - B u_t,
    eta = (S_0^{-1} m_0, 0, ..., 0),
    c = -1/2 m_0^T S_0^{-1} m_0 - 1/2 log det(2 pi S_0) - T/2 log det(2 pi W),

where ``E`` (shape ``(d, D)``) places :math:`q` on the coordinates of
:math:`x_0..x_{T-1}`, :math:`r` on those of :math:`u_0..u_{T-1}` and nothing on
:math:`x_T`. Hence :math:`P_\theta = \mathcal{N}(\Lambda^{-1}\eta, \Lambda^{-1})`, which
exists iff :math:`\Lambda(\theta)` is positive definite; the control part :math:`r` must be
positive because the actions have no prior (at ``t = T-1`` nothing but :math:`R` bounds
:math:`u_{T-1}`). The normaliser :math:`\log Z(\theta)` is computed in
:mod:`bayes_irl.inference.normalizers.linear_quadratic`; this module provides the
environment, the quadratic form, the Gaussian over trajectories and exact sampling.

Examples:
    >>> import torch
    >>> mdp = LinearQuadraticMDP.default(dx=2, du=1, horizon=10)
    >>> theta = torch.tensor([1.0, 0.5, 0.1], dtype=torch.float64)
    >>> states, actions = sample_demonstrations(
    ...     mdp, theta, 4, generator=torch.Generator().manual_seed(0))
    >>> states.shape, actions.shape
    (torch.Size([4, 11, 2]), torch.Size([4, 10, 1]))
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

__all__ = [
    "LinearQuadraticMDP",
    "QuadraticForm",
    "TrajectoryGaussian",
    "check_trajectory_shapes",
    "sample_demonstrations",
]

_LOG_2PI = math.log(2.0 * math.pi)


def _to_tensor(value: Any, name: str, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``torch.as_tensor`` that raises a ValueError naming the argument."""
    try:
        return torch.as_tensor(value, dtype=dtype, device=device)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"`{name}` must be array-like (a tensor); got {value!r}") from error


def _as_matrix(
    value: Any, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
) -> Tensor:
    """Convert ``value`` to a finite tensor of exactly ``shape``; raise a named ValueError."""
    tensor = _to_tensor(value, name, dtype, device)
    if tuple(tensor.shape) != shape:
        raise ValueError(f"`{name}` must have shape {shape}; got shape {tuple(tensor.shape)}")
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"`{name}` must be finite (no NaN or inf); got {tensor}")
    return tensor


def _check_spd(matrix: Tensor, name: str) -> Tensor:
    """Check that ``matrix`` is symmetric positive definite; return its lower Cholesky factor."""
    scale = float(matrix.abs().max()) if matrix.numel() else 0.0
    tol = 1e-6 * max(scale, 1e-300)
    if not torch.allclose(matrix, matrix.mT, rtol=0.0, atol=tol):
        raise ValueError(f"`{name}` must be symmetric; got {matrix}")
    tril, info = torch.linalg.cholesky_ex(0.5 * (matrix + matrix.mT))
    if int(info) != 0:
        raise ValueError(
            f"`{name}` must be positive definite (its Cholesky factorisation failed); got {matrix}"
        )
    return tril


def _mvn_log_density(residual: Tensor, tril: Tensor) -> Tensor:
    """``log N(residual; 0, tril tril^T)`` for ``residual[..., k]``; returns shape ``(...)``."""
    k = tril.shape[-1]
    white = torch.linalg.solve_triangular(
        tril.expand(*residual.shape[:-1], k, k), residual.unsqueeze(-1), upper=False
    ).squeeze(-1)
    half_logdet = tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return -0.5 * white.pow(2).sum(-1) - half_logdet - 0.5 * k * _LOG_2PI


class QuadraticForm(NamedTuple):
    r"""``log b(z) + R_theta(z) = -1/2 z^T precision z + shift^T z + constant``.

    Attributes:
        precision: :math:`\Lambda(\theta)`, shape ``batch_shape + (d, d)`` where
            ``batch_shape = theta.shape[:-1]`` and ``d`` is the trajectory dimension.
        shift: :math:`\eta`, shape ``batch_shape + (d,)`` (independent of ``theta``).
        constant: :math:`c`, shape ``()`` (independent of ``theta``).
    """

    precision: Tensor
    shift: Tensor
    constant: Tensor


@dataclass(frozen=True)
class TrajectoryGaussian:
    r"""Joint Gaussian :math:`\mathcal{N}(\mu, \Lambda^{-1})` over flattened trajectories ``z``.

    Use :meth:`LinearQuadraticMDP.unflatten` to turn samples into ``(states, actions)``.

    Attributes:
        mean: :math:`\mu = \Lambda^{-1}\eta`, shape ``batch_shape + (d,)``.
        precision: :math:`\Lambda`, shape ``batch_shape + (d, d)``.
        precision_tril: lower Cholesky factor ``L`` with ``Lambda = L L^T``, shape
            ``batch_shape + (d, d)``.
    """

    mean: Tensor
    precision: Tensor
    precision_tril: Tensor

    @property
    def batch_shape(self) -> torch.Size:
        """``theta.shape[:-1]``: the batch shape of the parameters."""
        return self.mean.shape[:-1]

    @property
    def event_dim(self) -> int:
        """The trajectory dimension ``d = T (dx + du) + dx``."""
        return self.mean.shape[-1]

    @property
    def covariance(self) -> Tensor:
        r""":math:`\Lambda^{-1}`, shape ``batch_shape + (d, d)``."""
        return torch.cholesky_inverse(self.precision_tril)

    def sample(
        self, sample_shape: Sequence[int] = (), *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw exact samples ``z = mean + L^{-T} eps`` with ``eps ~ N(0, I)``.

        Args:
            sample_shape: leading shape of the draws.
            generator: the random-number generator (explicit, for reproducibility).

        Returns:
            Tensor of shape ``sample_shape + batch_shape + (d,)``.
        """
        shape = torch.Size(sample_shape) + self.mean.shape
        eps = torch.randn(
            shape, generator=generator, dtype=self.mean.dtype, device=self.mean.device
        )
        d = self.event_dim
        upper = self.precision_tril.mT.expand(*shape[:-1], d, d)
        noise = torch.linalg.solve_triangular(upper, eps.unsqueeze(-1), upper=True).squeeze(-1)
        return self.mean + noise

    def log_prob(self, z: Tensor) -> Tensor:
        """Log density of flattened trajectories.

        Args:
            z: shape ``(..., d)``, batch dims broadcastable with ``batch_shape``.

        Returns:
            Tensor of shape ``broadcast(z.shape[:-1], batch_shape)``.
        """
        diff = z - self.mean
        d = self.event_dim
        batch = torch.broadcast_shapes(diff.shape[:-1], self.batch_shape)
        white = self.precision_tril.mT.expand(*batch, d, d) @ diff.expand(*batch, d).unsqueeze(-1)
        half_logdet = self.precision_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        return -0.5 * white.squeeze(-1).pow(2).sum(-1) + half_logdet - 0.5 * d * _LOG_2PI

    def entropy(self) -> Tensor:
        """Differential entropy ``d/2 (1 + log 2 pi) - 1/2 log det Lambda``.

        Returns:
            Tensor of shape ``batch_shape``.
        """
        half_logdet = self.precision_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        return 0.5 * self.event_dim * (1.0 + _LOG_2PI) - half_logdet

    def to_distribution(self) -> torch.distributions.MultivariateNormal:
        """The same Gaussian as a ``torch.distributions.MultivariateNormal`` (event dim ``d``)."""
        return torch.distributions.MultivariateNormal(self.mean, precision_matrix=self.precision)


class LinearQuadraticMDP:
    r"""Linear-Gaussian dynamics with a quadratic reward linear in ``theta``.

    ``x_0 ~ N(initial_mean, initial_cov)``,
    ``x_{t+1} ~ N(dynamics @ x_t + control @ u_t, noise_cov)`` for ``t = 0..horizon-1``;
    reward ``theta . features`` with ``features = -1/2 [sum_{t<T} x_t**2, sum_{t<T} u_t**2]``
    (no reward on ``x_T``; see the module docstring for the maths).

    Args:
        dynamics: ``A``, shape ``(dx, dx)``.
        control: ``B``, shape ``(dx, du)``.
        noise_cov: ``W``, shape ``(dx, dx)``, symmetric positive definite.
        initial_mean: ``m_0``, shape ``(dx,)``.
        initial_cov: ``S_0``, shape ``(dx, dx)``, symmetric positive definite.
        horizon: ``T >= 1``, the number of actions per trajectory.
        dtype: floating dtype of every tensor (float64 recommended for exact references).
        device: device of every tensor (``None``: torch's default device).

    Raises:
        ValueError: if an argument has the wrong shape, is not finite, a covariance is not
            symmetric positive definite, ``horizon < 1`` or ``dtype`` is not floating point.

    Examples:
        >>> import torch
        >>> mdp = LinearQuadraticMDP(
        ...     dynamics=[[1.0]], control=[[1.0]], noise_cov=[[0.1]],
        ...     initial_mean=[0.0], initial_cov=[[1.0]], horizon=3)
        >>> mdp.param_names
        ['q_0', 'r_0']
    """

    def __init__(
        self,
        *,
        dynamics: Any,
        control: Any,
        noise_cov: Any,
        initial_mean: Any,
        initial_cov: Any,
        horizon: int,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> None:
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"`dtype` must be a floating-point torch.dtype; got {dtype!r}")
        if isinstance(horizon, bool):
            raise ValueError(f"`horizon` must be an integer >= 1; got {horizon!r}")
        try:
            horizon = operator.index(horizon)
        except TypeError as error:
            raise ValueError(f"`horizon` must be an integer >= 1; got {horizon!r}") from error
        if horizon < 1:
            raise ValueError(f"`horizon` must be an integer >= 1; got {horizon}")
        device = torch.device(device) if device is not None else torch.empty(0).device

        a = _to_tensor(dynamics, "dynamics", dtype, device)
        if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 1:
            raise ValueError(
                f"`dynamics` must be a square matrix of shape (dx, dx); got {tuple(a.shape)}"
            )
        dx = a.shape[0]
        a = _as_matrix(a, "dynamics", (dx, dx), dtype, device)
        b = _to_tensor(control, "control", dtype, device)
        if b.ndim != 2 or b.shape[0] != dx or b.shape[1] < 1:
            raise ValueError(
                f"`control` must have shape (dx, du) = ({dx}, du) with du >= 1; "
                f"got {tuple(b.shape)}"
            )
        du = b.shape[1]
        b = _as_matrix(b, "control", (dx, du), dtype, device)
        w = _as_matrix(noise_cov, "noise_cov", (dx, dx), dtype, device)
        m0 = _as_matrix(initial_mean, "initial_mean", (dx,), dtype, device)
        s0 = _as_matrix(initial_cov, "initial_cov", (dx, dx), dtype, device)
        self._noise_tril = _check_spd(w, "noise_cov")
        self._initial_tril = _check_spd(s0, "initial_cov")

        self._dx, self._du, self._horizon = dx, du, horizon
        self._dtype, self._device = dtype, device
        self._dynamics, self._control = a, b
        self._noise_cov = 0.5 * (w + w.mT)
        self._initial_mean, self._initial_cov = m0, 0.5 * (s0 + s0.mT)
        self._base_form: tuple[Tensor, Tensor, Tensor, Tensor] | None = None

    # ------------------------------------------------------------------ constructors
    @classmethod
    def default(
        cls,
        dx: int = 2,
        du: int = 1,
        horizon: int = 10,
        *,
        dt: float = 0.1,
        damping: float = 0.1,
        noise_std: float = 0.05,
        initial_std: float = 0.1,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> LinearQuadraticMDP:
        """A small stable, controllable system: a damped chain of integrators.

        ``A = I + dt (N - damping I)`` with ``N`` the upper shift (``x_i`` is driven by
        ``x_{i+1}``), ``B = dt [0; I_du]`` (the controls drive the last ``du`` coordinates),
        ``W = noise_std**2 I``, ``x_0 ~ N(e_0, initial_std**2 I)``. With ``dx = 2, du = 1``
        this is a discretised, lightly damped double integrator (position, velocity) whose
        eigenvalues are ``1 - dt * damping`` (stable for ``0 < dt * damping < 2``); the
        chain is controllable for every ``1 <= du <= dx``.

        Args:
            dx: state dimension, ``>= 1``.
            du: action dimension, ``1 <= du <= dx``.
            horizon: number of actions ``T``.
            dt: time step.
            damping: velocity damping rate.
            noise_std: standard deviation of the process noise per coordinate.
            initial_std: standard deviation of the initial state per coordinate.
            dtype: tensor dtype.
            device: tensor device.

        Returns:
            The environment.

        Raises:
            ValueError: if ``du`` is not in ``1..dx`` or a scale is not positive.
        """
        if isinstance(dx, bool) or not isinstance(dx, int) or dx < 1:
            raise ValueError(f"`dx` must be an integer >= 1; got {dx!r}")
        if isinstance(du, bool) or not isinstance(du, int) or not 1 <= du <= dx:
            raise ValueError(f"`du` must be an integer with 1 <= du <= dx = {dx}; got {du!r}")
        for name, value in [("dt", dt), ("noise_std", noise_std), ("initial_std", initial_std)]:
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"`{name}` must be a finite positive number; got {value!r}")
        if not math.isfinite(damping):
            raise ValueError(f"`damping` must be finite; got {damping!r}")
        eye = torch.eye(dx, dtype=dtype)
        shift = torch.diag(torch.ones(dx - 1, dtype=dtype), 1)
        a = eye + dt * (shift - damping * eye)
        b = torch.zeros(dx, du, dtype=dtype)
        b[dx - du :, :] = dt * torch.eye(du, dtype=dtype)
        m0 = torch.zeros(dx, dtype=dtype)
        m0[0] = 1.0
        return cls(
            dynamics=a,
            control=b,
            noise_cov=noise_std**2 * eye,
            initial_mean=m0,
            initial_cov=initial_std**2 * eye,
            horizon=horizon,
            dtype=dtype,
            device=device,
        )

    # ------------------------------------------------------------------ properties
    @property
    def state_dim(self) -> int:
        """``dx``."""
        return self._dx

    @property
    def action_dim(self) -> int:
        """``du``."""
        return self._du

    @property
    def horizon(self) -> int:
        """``T``: number of actions; a trajectory has ``T + 1`` states."""
        return self._horizon

    @property
    def num_params(self) -> int:
        """``D = dx + du``: the length of ``theta``."""
        return self._dx + self._du

    @property
    def param_names(self) -> list[str]:
        """``["q_0", ..., "q_{dx-1}", "r_0", ..., "r_{du-1}"]`` (state then control costs)."""
        return [f"q_{i}" for i in range(self._dx)] + [f"r_{j}" for j in range(self._du)]

    @property
    def trajectory_dim(self) -> int:
        """``d = T (dx + du) + dx``: the length of the flattened trajectory ``z``."""
        return self._horizon * (self._dx + self._du) + self._dx

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the environment's tensors."""
        return self._dtype

    @property
    def device(self) -> torch.device:
        """Device of the environment's tensors."""
        return self._device

    @property
    def dynamics(self) -> Tensor:
        """``A``, shape ``(dx, dx)`` (read-only: derived quantities are cached)."""
        return self._dynamics

    @property
    def control(self) -> Tensor:
        """``B``, shape ``(dx, du)``."""
        return self._control

    @property
    def noise_cov(self) -> Tensor:
        """``W``, shape ``(dx, dx)``, symmetric positive definite."""
        return self._noise_cov

    @property
    def initial_mean(self) -> Tensor:
        """``m_0``, shape ``(dx,)``."""
        return self._initial_mean

    @property
    def initial_cov(self) -> Tensor:
        """``S_0``, shape ``(dx, dx)``, symmetric positive definite."""
        return self._initial_cov

    @property
    def noise_tril(self) -> Tensor:
        """Lower Cholesky factor of ``noise_cov``, shape ``(dx, dx)``."""
        return self._noise_tril

    @property
    def initial_tril(self) -> Tensor:
        """Lower Cholesky factor of ``initial_cov``, shape ``(dx, dx)``."""
        return self._initial_tril

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(state_dim={self._dx}, action_dim={self._du}, "
            f"horizon={self._horizon}, dtype={self._dtype}, device={self._device})"
        )

    # ------------------------------------------------------------------ validation
    def check_theta(self, theta: Any) -> Tensor:
        """Validate reward parameters and convert them to the environment's dtype and device.

        Args:
            theta: shape ``(..., D)`` with ``D = num_params``; any leading batch shape.

        Returns:
            ``theta`` as a tensor (differentiable conversion), shape ``(..., D)``.

        Raises:
            ValueError: if the last dimension is not ``D`` or a value is NaN or infinite.
        """
        if not isinstance(theta, Tensor):
            theta = torch.as_tensor(theta, dtype=self._dtype, device=self._device)
        theta = theta.to(dtype=self._dtype, device=self._device)
        if theta.ndim < 1 or theta.shape[-1] != self.num_params:
            raise ValueError(
                f"`theta` must have shape (..., {self.num_params}) "
                f"(names {self.param_names}); got shape {tuple(theta.shape)}"
            )
        if not bool(torch.isfinite(theta).all()):
            raise ValueError(f"`theta` must be finite (no NaN or inf); got {theta.detach()}")
        return theta

    def check_trajectories(self, states: Any, actions: Any) -> tuple[Tensor, Tensor]:
        """Validate a batch of trajectories.

        Args:
            states: shape ``(..., T+1, dx)``.
            actions: shape ``(..., T, du)``; batch dims broadcastable with those of ``states``.

        Returns:
            ``(states, actions)`` as tensors of the environment's dtype and device.

        Raises:
            ValueError: if a shape does not match or a value is NaN or infinite.
        """
        states = torch.as_tensor(states).to(dtype=self._dtype, device=self._device)
        actions = torch.as_tensor(actions).to(dtype=self._dtype, device=self._device)
        check_trajectory_shapes(
            states, actions, horizon=self._horizon, state_dim=self._dx, action_dim=self._du
        )
        return states, actions

    # ------------------------------------------------------------------ trajectories
    def features(self, states: Any, actions: Any) -> Tensor:
        """Summed feature counts ``sum_{t<T} phi(x_t, u_t)``.

        Args:
            states: shape ``(..., T+1, dx)``.
            actions: shape ``(..., T, du)``.

        Returns:
            ``F[..., k]`` of shape ``broadcast(batch) + (D,)``:
            ``F[..., i] = -1/2 sum_{t<T} x_t[i]**2`` for ``i < dx`` and
            ``F[..., dx + j] = -1/2 sum_{t<T} u_t[j]**2``. ``x_T`` is not counted.
        """
        states, actions = self.check_trajectories(states, actions)
        batch = torch.broadcast_shapes(states.shape[:-2], actions.shape[:-2])
        fx = -0.5 * states[..., :-1, :].pow(2).sum(-2)
        fu = -0.5 * actions.pow(2).sum(-2)
        return torch.cat([fx.expand(*batch, self._dx), fu.expand(*batch, self._du)], dim=-1)

    def returns(self, theta: Any, states: Any, actions: Any) -> Tensor:
        """Rewards ``R_theta(z) = theta . features(states, actions)``.

        Args:
            theta: shape ``(..., D)``.
            states: shape ``(..., T+1, dx)``.
            actions: shape ``(..., T, du)``.

        Returns:
            Shape ``broadcast(theta.shape[:-1], states.shape[:-2], actions.shape[:-2])``.
        """
        theta = self.check_theta(theta)
        return (theta * self.features(states, actions)).sum(-1)

    def log_base(self, states: Any, actions: Any) -> Tensor:
        """Log base density ``log b(z) = log N(x_0; m_0, S_0) + sum_t log N(x_{t+1}; ...)``.

        The density is with respect to Lebesgue measure on states and actions (no action
        prior), so ``b`` is not normalised in ``z``.

        Args:
            states: shape ``(..., T+1, dx)``.
            actions: shape ``(..., T, du)``.

        Returns:
            Shape ``broadcast(states.shape[:-2], actions.shape[:-2])``.
        """
        states, actions = self.check_trajectories(states, actions)
        initial = _mvn_log_density(states[..., 0, :] - self.initial_mean, self._initial_tril)
        predicted = states[..., :-1, :] @ self.dynamics.mT + actions @ self.control.mT
        transitions = _mvn_log_density(states[..., 1:, :] - predicted, self._noise_tril)
        return initial + transitions.sum(-1)

    def flatten(self, states: Any, actions: Any) -> Tensor:
        """Interleave ``(states, actions)`` into ``z = (x_0, u_0, ..., u_{T-1}, x_T)``.

        Args:
            states: shape ``(..., T+1, dx)``.
            actions: shape ``(..., T, du)``.

        Returns:
            Shape ``broadcast(batch) + (d,)`` with ``d = trajectory_dim``.
        """
        states, actions = self.check_trajectories(states, actions)
        batch = torch.broadcast_shapes(states.shape[:-2], actions.shape[:-2])
        T = self._horizon
        states = states.expand(*batch, T + 1, self._dx)
        pairs = torch.cat([states[..., :-1, :], actions.expand(*batch, T, self._du)], dim=-1)
        return torch.cat([pairs.reshape(*batch, -1), states[..., -1, :]], dim=-1)

    def unflatten(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Inverse of :meth:`flatten`.

        Args:
            z: shape ``(..., d)``.

        Returns:
            ``states`` of shape ``(..., T+1, dx)`` and ``actions`` of shape ``(..., T, du)``.

        Raises:
            ValueError: if ``z.shape[-1] != trajectory_dim``.
        """
        if z.ndim < 1 or z.shape[-1] != self.trajectory_dim:
            raise ValueError(
                f"`z` must have shape (..., {self.trajectory_dim}); got {tuple(z.shape)}"
            )
        T, dx, du = self._horizon, self._dx, self._du
        batch = z.shape[:-1]
        pairs = z[..., : T * (dx + du)].reshape(*batch, T, dx + du)
        states = torch.cat([pairs[..., :dx], z[..., None, T * (dx + du) :]], dim=-2)
        return states, pairs[..., dx:]

    def simulate(
        self,
        policy_fn: Callable[[int, Tensor], Tensor],
        num: int,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Run the dynamics forward with an action function.

        Args:
            policy_fn: ``policy_fn(t, x_t) -> u_t`` with ``x_t`` of shape ``(num, dx)`` and
                ``u_t`` of shape ``(num, du)``. A stochastic policy should draw from its own
                explicit ``torch.Generator``.
            num: number of trajectories.
            generator: generator for the initial-state and process noise.

        Returns:
            ``states`` of shape ``(num, T+1, dx)`` and ``actions`` of shape ``(num, T, du)``.

        Raises:
            ValueError: if ``num < 1`` or ``policy_fn`` returns the wrong shape or non-finite
                actions.
        """
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise ValueError(f"`num` must be an integer >= 1; got {num!r}")
        dx, du = self._dx, self._du
        kw = {"generator": generator, "dtype": self._dtype, "device": self._device}
        x = self.initial_mean + torch.randn(num, dx, **kw) @ self._initial_tril.mT
        states, actions = [x], []
        for t in range(self._horizon):
            u = torch.as_tensor(policy_fn(t, x)).to(dtype=self._dtype, device=self._device)
            if tuple(u.shape) != (num, du):
                raise ValueError(
                    f"`policy_fn` must return actions of shape (num, du) = ({num}, {du}) "
                    f"at t={t}; got {tuple(u.shape)}"
                )
            if not bool(torch.isfinite(u).all()):
                raise ValueError(f"`policy_fn` returned non-finite actions at t={t}")
            noise = torch.randn(num, dx, **kw) @ self._noise_tril.mT
            x = x @ self.dynamics.mT + u @ self.control.mT + noise
            states.append(x)
            actions.append(u)
        return torch.stack(states, dim=-2), torch.stack(actions, dim=-2)

    # ------------------------------------------------------------------ Gaussian form
    def _theta_independent_form(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(Lambda_0 (d, d), eta (d,), c (), E (d, D))``, cached."""
        if self._base_form is not None:
            return self._base_form
        T, dx, du = self._horizon, self._dx, self._du
        d, n = self.trajectory_dim, dx + du
        kw = {"dtype": self._dtype, "device": self._device}
        s0_inv = torch.cholesky_inverse(self._initial_tril)
        w_inv = torch.cholesky_inverse(self._noise_tril)
        # M v = x_{t+1} - A x_t - B u_t for v = (x_t, u_t, x_{t+1}) (contiguous in z).
        m = torch.cat([-self.dynamics, -self.control, torch.eye(dx, **kw)], dim=-1)
        block = m.mT @ w_inv @ m
        precision = torch.zeros(d, d, **kw)
        precision[:dx, :dx] += s0_inv
        for t in range(T):
            o = t * n
            precision[o : o + n + dx, o : o + n + dx] += block
        precision = 0.5 * (precision + precision.mT)
        shift = torch.zeros(d, **kw)
        shift[:dx] = s0_inv @ self.initial_mean
        logdet_s0 = 2.0 * self._initial_tril.diagonal().log().sum()
        logdet_w = 2.0 * self._noise_tril.diagonal().log().sum()
        constant = (
            -0.5 * self.initial_mean @ s0_inv @ self.initial_mean
            - 0.5 * (dx * _LOG_2PI + logdet_s0)
            - 0.5 * T * (dx * _LOG_2PI + logdet_w)
        )
        select = torch.zeros(d, self.num_params, **kw)
        for t in range(T):
            o = t * n
            select[o : o + n, :] = torch.eye(n, **kw)
        self._base_form = (precision, shift, constant, select)
        return self._base_form

    def quadratic_form(self, theta: Any) -> QuadraticForm:
        """Coefficients of ``log b(z) + R_theta(z) = -1/2 z^T Lambda z + eta^T z + c``.

        Args:
            theta: shape ``(..., D)``.

        Returns:
            :class:`QuadraticForm` with ``precision`` ``(..., d, d)``, ``shift`` ``(..., d)``
            and ``constant`` ``()``; differentiable in ``theta``. ``Lambda`` is not checked
            for positive definiteness here (see :meth:`trajectory_gaussian`).
        """
        theta = self.check_theta(theta)
        precision0, shift, constant, select = self._theta_independent_form()
        precision = precision0 + torch.diag_embed(theta @ select.mT)
        return QuadraticForm(precision, shift.expand(*theta.shape[:-1], -1), constant)

    def trajectory_gaussian(self, theta: Any) -> TrajectoryGaussian:
        """The maxent trajectory distribution ``P_theta`` as a joint Gaussian over ``z``.

        Args:
            theta: shape ``(..., D)``.

        Returns:
            :class:`TrajectoryGaussian` with batch shape ``theta.shape[:-1]``, event ``(d,)``.

        Raises:
            ValueError: if ``theta`` is invalid, a control weight is not positive, or
                ``Lambda(theta)`` is not positive definite (``P_theta`` not normalisable).
        """
        theta = self.check_theta(theta)
        self.check_control_weights(theta)
        form = self.quadratic_form(theta)
        tril, info = torch.linalg.cholesky_ex(form.precision)
        if bool((info != 0).any()):
            raise ValueError(
                "`theta` gives a trajectory precision Lambda(theta) that is not positive "
                "definite, so exp(R_theta) b is not integrable; increase the state costs "
                f"q = theta[..., :{self._dx}]; got theta={theta.detach()}"
            )
        mean = torch.cholesky_solve(form.shift.unsqueeze(-1), tril).squeeze(-1)
        return TrajectoryGaussian(mean=mean, precision=form.precision, precision_tril=tril)

    def check_control_weights(self, theta: Tensor) -> None:
        """Raise unless every control weight ``theta[..., dx:]`` is positive.

        Args:
            theta: shape ``(..., D)``, already validated by :meth:`check_theta`.

        Raises:
            ValueError: if some ``r_j <= 0``: with Lebesgue measure on the actions the last
                action ``u_{T-1}`` is then not integrable.
        """
        if not bool((theta[..., self._dx :] > 0).all()):
            raise ValueError(
                f"`theta` control weights r = theta[..., {self._dx}:] must be > 0 (the actions "
                f"have no prior, so Z(theta) is infinite otherwise); got theta={theta.detach()}"
            )


def sample_demonstrations(
    mdp: LinearQuadraticMDP,
    theta: Any,
    num: int,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Draw exact samples from the maxent trajectory distribution ``P_theta``.

    Uses the joint Gaussian ``N(Lambda^{-1} eta, Lambda^{-1})`` over ``z`` (dense
    ``O((T (dx+du))^3)`` Cholesky, once per call).

    Args:
        mdp: the environment.
        theta: reward parameters, shape ``(D,)`` (or ``(..., D)`` for a batch of rewards).
        num: number of demonstrations.
        generator: random-number generator.

    Returns:
        ``states`` of shape ``(num, ..., T+1, dx)`` and ``actions`` of shape
        ``(num, ..., T, du)`` (``(num, T+1, dx)`` and ``(num, T, du)`` for ``theta`` of shape
        ``(D,)``).

    Raises:
        ValueError: if ``num < 1`` or ``theta`` is invalid (see
            :meth:`LinearQuadraticMDP.trajectory_gaussian`).
    """
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"`num` must be an integer >= 1; got {num!r}")
    with torch.no_grad():
        gaussian = mdp.trajectory_gaussian(theta)
        z = gaussian.sample((num,), generator=generator)
    return mdp.unflatten(z)


def check_trajectory_shapes(
    states: Tensor, actions: Tensor, *, horizon: int, state_dim: int, action_dim: int
) -> None:
    """Check ``states (..., T+1, dx)`` and ``actions (..., T, du)``: shapes and finiteness.

    Raises:
        ValueError: for wrong trailing shapes, non-broadcasting batch dims or NaN/inf.
    """
    T, dx, du = horizon, state_dim, action_dim
    if states.ndim < 2 or tuple(states.shape[-2:]) != (T + 1, dx):
        raise ValueError(
            f"`states` must have shape (..., T+1, dx) = (..., {T + 1}, {dx}); "
            f"got {tuple(states.shape)}"
        )
    if actions.ndim < 2 or tuple(actions.shape[-2:]) != (T, du):
        raise ValueError(
            f"`actions` must have shape (..., T, du) = (..., {T}, {du}); "
            f"got {tuple(actions.shape)}"
        )
    try:
        torch.broadcast_shapes(states.shape[:-2], actions.shape[:-2])
    except RuntimeError as error:
        raise ValueError(
            f"batch shapes of `states` {tuple(states.shape[:-2])} and `actions` "
            f"{tuple(actions.shape[:-2])} do not broadcast"
        ) from error
    if not (bool(torch.isfinite(states).all()) and bool(torch.isfinite(actions).all())):
        raise ValueError("`states` and `actions` must be finite (no NaN or inf)")
