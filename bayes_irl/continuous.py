r"""Fixed-horizon continuous trajectories: their flat encoding, shape checks and support.

A trajectory with ``T`` actions is the flat vector

.. math::

    z = (x_0, u_0, x_1, u_1, \dots, x_{T-1}, u_{T-1}, x_T) \in \mathbb{R}^d,
    \qquad d = T (d_x + d_u) + d_x,

with ``states[..., t, :] = x_t`` (``t = 0..T``) and ``actions[..., t, :] = u_t`` (``t =
0..T-1``), the action taken in ``x_t`` that leads to ``x_{t+1}``.

:class:`TrajectoryLayout` is the one place that converts between ``z`` and ``(states
(..., T+1, dx), actions (..., T, du))`` and checks their shapes; it implements
:class:`bayes_irl.protocols.TrajectorySpace` for black-box simulators, whose dynamics are
unknown: their base measure ``log b`` does not depend on theta, so :meth:`TrajectoryLayout.
log_base` returns zeros (the posterior is unchanged; pointwise log-likelihoods are shifted
by a per-demonstration constant that is the same for every model sharing those dynamics,
so LOO differences between such models stay valid). The linear-quadratic environment
(:class:`bayes_irl.linear_quadratic.LinearQuadraticMDP`) delegates its encoding to a layout
and adds the known dynamics' density.

Examples:
    >>> import torch
    >>> layout = TrajectoryLayout(horizon=3, state_dim=2, action_dim=1)
    >>> z = layout.flatten(torch.zeros(5, 4, 2), torch.ones(5, 3, 1))
    >>> z.shape, layout.event_shape
    (torch.Size([5, 11]), torch.Size([11]))
    >>> states, actions = layout.split(z)
    >>> states.shape, actions.shape
    (torch.Size([5, 4, 2]), torch.Size([5, 3, 1]))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.distributions import constraints

from bayes_irl.validation import positive_int

__all__ = ["ContinuousTrajectoryConstraint", "TrajectoryLayout", "quadratic_features"]


def quadratic_features(states: Tensor, actions: Tensor) -> Tensor:
    """Summed quadratic feature counts ``-1/2 [sum_{t<T} x_t**2, sum_{t<T} u_t**2]``.

    The features of the quadratic reward ``theta . phi`` (``x_T`` carries no reward).

    Args:
        states: shape ``(..., T+1, dx)``.
        actions: shape ``(..., T, du)``; batch dims broadcastable with those of ``states``.

    Returns:
        ``F[..., k]`` of shape ``broadcast(batch) + (dx + du,)``:
        ``F[..., i] = -1/2 sum_{t<T} x_t[i]**2`` for ``i < dx`` and
        ``F[..., dx + j] = -1/2 sum_{t<T} u_t[j]**2``.
    """
    batch = torch.broadcast_shapes(states.shape[:-2], actions.shape[:-2])
    fx = -0.5 * states[..., :-1, :].pow(2).sum(-2)
    fu = -0.5 * actions.pow(2).sum(-2)
    return torch.cat(
        [fx.expand(*batch, states.shape[-1]), fu.expand(*batch, actions.shape[-1])], dim=-1
    )


class ContinuousTrajectoryConstraint(constraints.Constraint):
    """Support of flat continuous trajectories: finite real vectors of length ``d``.

    ``check(value)`` has shape ``value.shape[:-1]`` (False everywhere for a wrong ``d``).

    Args:
        trajectory_dim: ``d``.
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


@dataclass(frozen=True)
class TrajectoryLayout:
    """The flat encoding of fixed-horizon continuous trajectories; a simulator's space.

    Implements :class:`bayes_irl.protocols.TrajectorySpace` with ``event_shape = (d,)``
    and ``log b = 0`` (unknown dynamics).

    Attributes:
        horizon: ``T`` (actions per trajectory; ``T + 1`` states).
        state_dim: ``dx``.
        action_dim: ``du``.

    Raises:
        ValueError: if a dimension is not an integer >= 1.
    """

    horizon: int
    state_dim: int
    action_dim: int

    def __post_init__(self) -> None:
        for name in ("horizon", "state_dim", "action_dim"):
            object.__setattr__(self, name, positive_int(getattr(self, name), f"`{name}`"))

    @classmethod
    def of(cls, obj: Any) -> TrajectoryLayout:
        """Layout of an object with ``horizon``, ``state_dim`` and ``action_dim`` attributes."""
        return cls(int(obj.horizon), int(obj.state_dim), int(obj.action_dim))

    # ------------------------------------------------------------------ encoding
    @property
    def trajectory_dim(self) -> int:
        """``d = T (dx + du) + dx``."""
        return self.horizon * (self.state_dim + self.action_dim) + self.state_dim

    @property
    def event_shape(self) -> torch.Size:
        """``(d,)``: one flat trajectory."""
        return torch.Size((self.trajectory_dim,))

    @property
    def support(self) -> constraints.Constraint:
        """Finite real vectors of length ``d`` (``event_dim = 1``)."""
        return ContinuousTrajectoryConstraint(self.trajectory_dim)

    def check_pair(
        self,
        states: Any,
        actions: Any,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Validate ``states (..., T+1, dx)`` and ``actions (..., T, du)``.

        Args:
            states: array-like, shape ``(..., T+1, dx)``.
            actions: array-like, shape ``(..., T, du)``; batch dims broadcastable with
                those of ``states``.
            dtype: convert both to this dtype; ``None``: ``states``' dtype if floating,
                else float64.
            device: convert both to this device (``None``: keep ``states``' device).

        Returns:
            ``(states, actions)`` as floating tensors of one dtype and device.

        Raises:
            ValueError: for wrong trailing shapes, non-broadcasting batch dims or NaN/inf.
        """
        states, actions = torch.as_tensor(states), torch.as_tensor(actions)
        if dtype is None:
            dtype = states.dtype if states.is_floating_point() else torch.float64
        states = states.to(dtype=dtype, device=device)
        actions = actions.to(dtype=dtype, device=states.device)
        T, dx, du = self.horizon, self.state_dim, self.action_dim
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
        return states, actions

    def flatten(self, states: Any, actions: Any) -> Tensor:
        """Interleave ``(states, actions)`` into ``z = (x_0, u_0, ..., u_{T-1}, x_T)``.

        Args:
            states: shape ``(..., T+1, dx)``.
            actions: shape ``(..., T, du)``.

        Returns:
            Shape ``broadcast(batch) + (d,)``.

        Raises:
            ValueError: as :meth:`check_pair`.
        """
        states, actions = self.check_pair(states, actions)
        batch = torch.broadcast_shapes(states.shape[:-2], actions.shape[:-2])
        T = self.horizon
        states = states.expand(*batch, T + 1, self.state_dim)
        pairs = torch.cat([states[..., :-1, :], actions.expand(*batch, T, self.action_dim)], -1)
        return torch.cat([pairs.reshape(*batch, -1), states[..., -1, :]], dim=-1)

    def unflatten(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Inverse of :meth:`flatten`: ``z (..., d)`` -> ``(states, actions)``.

        Args:
            z: shape ``(..., d)``.

        Returns:
            ``states`` of shape ``(..., T+1, dx)`` and ``actions`` of shape ``(..., T, du)``.

        Raises:
            ValueError: if ``z.shape[-1] != d``.
        """
        if z.ndim < 1 or z.shape[-1] != self.trajectory_dim:
            raise ValueError(
                f"`z` must have shape (..., d) = (..., {self.trajectory_dim}); got {tuple(z.shape)}"
            )
        T, dx, du = self.horizon, self.state_dim, self.action_dim
        batch = z.shape[:-1]
        pairs = z[..., : T * (dx + du)].reshape(*batch, T, dx + du)
        states = torch.cat([pairs[..., :dx], z[..., None, T * (dx + du) :]], dim=-2)
        return states, pairs[..., dx:]

    def is_truncated(self, value: Tensor) -> bool:
        """Always False: continuous trajectories are observed for the whole horizon."""
        return False

    def split(self, value: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`unflatten` (the :class:`~bayes_irl.protocols.TrajectorySpace` name)."""
        return self.unflatten(value)

    # ------------------------------------------------------------------ base measure
    def log_base(self, value: Tensor, *, given_initial_state: bool = False) -> Tensor:
        """Zeros of shape ``value.shape[:-1]``: a simulator's dynamics are unknown.

        Args:
            value: flat trajectories, shape ``(..., d)``.
            given_initial_state: ignored (``log b`` is dropped either way).
        """
        self.unflatten(value)  # shape check
        return value.new_zeros(value.shape[:-1])

    # ------------------------------------------------------------------ data
    def prepare(
        self,
        data: Any,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> Tensor:
        """Validate demonstrations and return flat trajectories ``z`` of shape ``(n, d)``.

        Args:
            data: a pair ``(states (n, T+1, dx), actions (n, T, du))`` or a tensor/array
                ``z (n, d)`` in the layout of the module docstring.
            dtype: dtype of the result.
            device: device of the result (``None``: the data's).

        Returns:
            Tensor of shape ``(n, d)``.

        Raises:
            ValueError: for ``None``, wrong shapes or non-finite values.
        """
        if data is None:
            raise ValueError("`data` must hold demonstrations; got None")
        if isinstance(data, (tuple, list)) and len(data) == 2:
            states, actions = self.check_pair(*data, dtype=dtype, device=device)
            if states.ndim != 3 or actions.ndim != 3:
                raise ValueError(
                    f"`data` must be (states (n, T+1, dx), actions (n, T, du)); got shapes "
                    f"{tuple(states.shape)} and {tuple(actions.shape)}"
                )
            return self.flatten(states, actions)
        if torch.is_tensor(data) or isinstance(data, np.ndarray):
            z = torch.as_tensor(data).to(dtype=dtype, device=device)
            if z.ndim != 2 or z.shape[-1] != self.trajectory_dim:
                raise ValueError(
                    f"`data` as a tensor must have shape (n, d) = (n, {self.trajectory_dim}); "
                    f"got {tuple(z.shape)}"
                )
            if not bool(torch.isfinite(z).all()):
                raise ValueError("`data` must be finite (no NaN or inf)")
            return z
        raise ValueError(
            f"`data` must be (states, actions) or a (n, d) tensor; got {type(data).__name__}"
        )

    def arviz_groups(self, data: Tensor) -> dict:
        """``observed_data`` (states, actions), ``constant_data``, ``coords``, ``dims``.

        Args:
            data: prepared trajectories, shape ``(n, d)``.

        Returns:
            A dict of the four groups; ``states`` has dims ``(demo, time, state_coord)``,
            ``actions`` ``(demo, step, action_coord)``.
        """
        states, actions = self.unflatten(data.detach().cpu())
        return {
            "observed_data": {"states": states.numpy(), "actions": actions.numpy()},
            "constant_data": {"horizon": np.asarray(self.horizon)},
            "coords": {
                "demo": np.arange(states.shape[0]),
                "time": np.arange(self.horizon + 1),
                "step": np.arange(self.horizon),
                "state_coord": np.arange(self.state_dim),
                "state_coord_2": np.arange(self.state_dim),
                "action_coord": np.arange(self.action_dim),
            },
            "dims": {
                "states": ["demo", "time", "state_coord"],
                "actions": ["demo", "step", "action_coord"],
            },
        }
