"""The linear-quadratic environment: known linear-Gaussian dynamics as a trajectory space.

See :mod:`bayes_irl.linear_quadratic` for the maths; the Gaussian algebra (quadratic form,
``log Z``) is in :mod:`bayes_irl.linear_quadratic.gaussian`, the exact ``log Z`` and
samples of the maxent distribution in :mod:`bayes_irl.linear_quadratic.maxent_distribution`.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.distributions import constraints

from bayes_irl.continuous import TrajectoryLayout, quadratic_features
from bayes_irl.linear_quadratic.gaussian import (
    QuadraticForm,
    TrajectoryGaussian,
    check_control_weights,
    gaussian_from_form,
    mvn_log_density,
    quadratic_form,
    theta_free_form,
)

__all__ = ["LinearQuadraticMDP"]



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
        self._base_form: tuple[QuadraticForm, Tensor] | None = None
        self._layout = TrajectoryLayout(horizon, dx, du)

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

    def check_control_weights(self, theta: Tensor) -> None:
        """Raise unless every control weight ``theta[..., dx:]`` is positive.

        Args:
            theta: shape ``(..., D)``, already validated by :meth:`check_theta`.

        Raises:
            ValueError: if some ``r_j <= 0``: with Lebesgue measure on the actions the last
                action ``u_{T-1}`` is then not integrable.
        """
        check_control_weights(theta, self._dx)

    def check_trajectories(self, states: Any, actions: Any) -> tuple[Tensor, Tensor]:
        """Validate a batch of trajectories (:meth:`TrajectoryLayout.check_pair`).

        Args:
            states: shape ``(..., T+1, dx)``.
            actions: shape ``(..., T, du)``; batch dims broadcastable with those of ``states``.

        Returns:
            ``(states, actions)`` as tensors of the environment's dtype and device.

        Raises:
            ValueError: if a shape does not match or a value is NaN or infinite.
        """
        return self._layout.check_pair(states, actions, dtype=self._dtype, device=self._device)

    # ------------------------------------------------------------------ trajectory space
    @property
    def layout(self) -> TrajectoryLayout:
        """The flat encoding ``z = (x_0, u_0, ..., x_T)`` of the trajectories."""
        return self._layout

    @property
    def event_shape(self) -> torch.Size:
        """``(d,)``: one flat trajectory."""
        return self._layout.event_shape

    @property
    def support(self) -> constraints.Constraint:
        """Finite real vectors of length ``d`` (``event_dim = 1``)."""
        return self._layout.support

    def flatten(self, states: Any, actions: Any) -> Tensor:
        """Interleave ``(states, actions)`` into ``z = (x_0, u_0, ..., u_{T-1}, x_T)``.

        Args:
            states: shape ``(..., T+1, dx)``.
            actions: shape ``(..., T, du)``.

        Returns:
            Shape ``broadcast(batch) + (d,)`` with ``d = trajectory_dim``, the environment's
            dtype and device.

        Raises:
            ValueError: as :meth:`check_trajectories`.
        """
        return self._layout.flatten(*self.check_trajectories(states, actions))

    def unflatten(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Inverse of :meth:`flatten` (:meth:`TrajectoryLayout.unflatten`).

        Args:
            z: shape ``(..., d)``.

        Returns:
            ``states`` of shape ``(..., T+1, dx)`` and ``actions`` of shape ``(..., T, du)``.

        Raises:
            ValueError: if ``z.shape[-1] != trajectory_dim``.
        """
        return self._layout.unflatten(z)

    def is_truncated(self, value: Tensor) -> bool:
        """Always False: continuous trajectories are observed for the whole horizon."""
        return False

    def split(self, value: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`unflatten` (the :class:`~bayes_irl.protocols.TrajectorySpace` name)."""
        return self._layout.unflatten(value)

    def log_base(self, value: Tensor, *, given_initial_state: bool = False) -> Tensor:
        """Log base density ``log b(z) = log N(x_0; m_0, S_0) + sum_t log N(x_{t+1}; ...)``.

        The density is with respect to Lebesgue measure on states and actions (no action
        prior), so ``b`` is not normalised in ``z``.

        Args:
            value: flat trajectories ``z``, shape ``(..., d)``.
            given_initial_state: leave out ``log N(x_0; m_0, S_0)`` (``x_0`` is a context).

        Returns:
            Shape ``value.shape[:-1]``.

        Raises:
            ValueError: for a wrong last dimension or non-finite values.
        """
        states, actions = self.check_trajectories(*self._layout.unflatten(value))
        predicted = states[..., :-1, :] @ self.dynamics.mT + actions @ self.control.mT
        out = mvn_log_density(states[..., 1:, :] - predicted, self._noise_tril).sum(-1)
        if not given_initial_state:
            out = out + mvn_log_density(states[..., 0, :] - self.initial_mean, self._initial_tril)
        return out

    def prepare(self, data: Any) -> Tensor:
        """Validate demonstrations; return flat trajectories ``z (n, d)`` (environment dtype).

        Args:
            data: a pair ``(states (n, T+1, dx), actions (n, T, du))`` or a tensor ``z (n, d)``.

        Raises:
            ValueError: for ``None``, wrong shapes or non-finite values.
        """
        return self._layout.prepare(data, dtype=self._dtype, device=self._device)

    def arviz_groups(self, data: Tensor) -> dict:
        """The layout's ArviZ groups plus the dynamics as ``constant_data``.

        Args:
            data: prepared trajectories, shape ``(n, d)``.

        Returns:
            ``observed_data`` (states, actions), ``constant_data`` (horizon, dynamics,
            control, noise_cov, initial_mean, initial_cov), ``coords`` and ``dims``.
        """
        groups = self._layout.arviz_groups(data)
        groups["constant_data"].update(
            dynamics=self.dynamics.cpu().numpy(),
            control=self.control.cpu().numpy(),
            noise_cov=self.noise_cov.cpu().numpy(),
            initial_mean=self.initial_mean.cpu().numpy(),
            initial_cov=self.initial_cov.cpu().numpy(),
        )
        groups["dims"].update(
            dynamics=["state_coord", "state_coord_2"],
            control=["state_coord", "action_coord"],
            noise_cov=["state_coord", "state_coord_2"],
            initial_mean=["state_coord"],
            initial_cov=["state_coord", "state_coord_2"],
        )
        return groups

    # ------------------------------------------------------------------ trajectories
    def features(self, states: Any, actions: Any) -> Tensor:
        """Summed feature counts ``sum_{t<T} phi(x_t, u_t)`` of the quadratic reward.

        Args:
            states: shape ``(..., T+1, dx)``.
            actions: shape ``(..., T, du)``.

        Returns:
            ``F[..., k]`` of shape ``broadcast(batch) + (D,)``
            (:func:`bayes_irl.continuous.quadratic_features`). ``x_T`` is not counted.
        """
        return quadratic_features(*self.check_trajectories(states, actions))

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
        if self._base_form is None:  # theta-free, computed once
            self._base_form = theta_free_form(self)
        return quadratic_form(*self._base_form, theta)

    def trajectory_gaussian(self, theta: Any) -> TrajectoryGaussian:
        """The maxent trajectory distribution ``P_theta`` as a joint Gaussian over ``z``.

        Args:
            theta: shape ``(..., D)``.

        Returns:
            :class:`TrajectoryGaussian` with batch shape ``theta.shape[:-1]``, event ``(d,)``;
            :meth:`split` turns its samples into ``(states, actions)``.

        Raises:
            ValueError: if ``theta`` is invalid, a control weight is not positive, or
                ``Lambda(theta)`` is not positive definite (``P_theta`` not normalisable).
        """
        theta = self.check_theta(theta)
        self.check_control_weights(theta)
        return gaussian_from_form(self.quadratic_form(theta), theta, self._dx)
