"""The one base class of reward models: a prior over theta (D,) and the return of trajectories.

Every reward model of bayes_irl (tabular: :class:`~bayes_irl.rewards.LinearReward`,
:class:`~bayes_irl.rewards.TabularReward`, :class:`~bayes_irl.rewards.MLPReward`; continuous:
:class:`~bayes_irl.rewards.QuadraticReward`, :class:`~bayes_irl.rewards.NeuralStateReward`)
subclasses :class:`RewardModel` and so implements :class:`bayes_irl.protocols.RewardModel`:

* calling the model samples ``theta`` from its prior inside ``pyro.plate(dim_name, D,
  dim=-1)`` and returns it, shape ``batch + (D,)``;
* ``returns(theta, states, actions)`` is ``R_theta(x) = sum_{t<T} r_theta(s_t, a_t)`` for
  trajectories split by the trajectory space, of shape ``broadcast(theta.shape[:-1],
  traj_batch)`` (right-aligned; put a singleton dimension into theta, ``theta[..., None,
  :]``, to score every theta against every trajectory).

Why a plate and not ``.to_event(1)``: with theta's D coordinates in a plate, Pyro's
vectorised ``Predictive`` (and ArviZ's log-likelihood computation) place posterior draws in
a batch dimension to the left of that plate, and every downstream tensor broadcasts
cleanly; with ``to_event`` the vectorised trace mis-shapes the demonstrations plate and the
log_likelihood group is silently lost (measured on a prototype; ``tests/test_arviz.py``
checks that the group is present).

``ContinuousReward`` (the former base class of the continuous rewards) is this class:
a documented rename.
"""

from __future__ import annotations

from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import Tensor

from bayes_irl.validation import validate_prior

__all__ = ["RewardModel", "standard_normal_prior"]


def standard_normal_prior(
    dtype: torch.dtype = torch.float64, device: str | torch.device | None = None
) -> dist.Normal:
    """The default prior: Normal(0, 1) per parameter, on the reward's dtype and device."""
    return dist.Normal(
        torch.tensor(0.0, dtype=dtype, device=device), torch.tensor(1.0, dtype=dtype, device=device)
    )


class RewardModel(PyroModule):
    """Base class: a prior over ``theta (D,)`` and the return ``R_theta`` of trajectories.

    Subclasses pass ``prior`` and ``num_params`` to ``__init__``, may override
    ``param_names`` (and the class attributes ``site_name``/``dim_name``) and implement
    :meth:`returns` (tabular rewards also :meth:`step_rewards`, continuous ones
    ``rewards_per_step``).

    Args:
        prior: univariate prior (``event_shape ()``), batch_shape ``()`` or ``(D,)``;
            ``None``: Normal(0, 1) in the default dtype.
        num_params: ``D >= 1``.
        name: PyroModule name.

    Attributes:
        site_name: name of the Pyro sample site of theta.
        dim_name: name of theta's plate (and of its ArviZ dimension).
        num_params: ``D``.
        prior: the prior, expanded to batch_shape ``(D,)``.

    Raises:
        ValueError: for a non-distribution, multivariate or mis-shaped prior.
    """

    site_name = "theta"
    dim_name = "param"

    def __init__(
        self, *, prior: dist.Distribution | None, num_params: int, name: str = ""
    ) -> None:
        super().__init__(name)
        self.num_params = int(num_params)
        if prior is None:
            prior = standard_normal_prior(torch.get_default_dtype())
        self.prior = validate_prior(prior, self.num_params, "prior")

    @property
    def param_names(self) -> list[str]:
        """Names of the D parameters (ArviZ coordinates of ``dim_name``)."""
        return [f"{self.site_name}_{i}" for i in range(self.num_params)]

    def _check_shape(self, theta: Tensor) -> None:
        """Raise unless ``theta`` is a tensor of shape ``(..., D)`` (no sync, hot path)."""
        if not torch.is_tensor(theta) or theta.dim() < 1 or theta.shape[-1] != self.num_params:
            shape = tuple(theta.shape) if torch.is_tensor(theta) else theta
            raise ValueError(
                f"theta must have shape (..., {self.num_params}) (names "
                f"{self._short_names()}); got shape {shape}"
            )

    def _short_names(self) -> str:
        names = self.param_names
        return str(names) if len(names) <= 8 else f"[{names[0]!r}, ..., {names[-1]!r}]"

    def check_theta(self, theta: Any) -> Tensor:
        """Validate reward parameters: shape ``(..., D)`` and finite values.

        Subclasses add range checks (e.g. positive quadratic costs).

        Args:
            theta: array-like of shape ``(..., D)``.

        Returns:
            ``theta`` as a floating tensor (float64 unless already floating).

        Raises:
            ValueError: for a wrong last dimension or NaN/inf values.
        """
        theta = torch.as_tensor(theta)
        if not theta.is_floating_point():
            theta = theta.to(torch.float64)
        self._check_shape(theta)
        if not bool(torch.isfinite(theta).all()):
            raise ValueError(f"theta must be finite (no NaN or inf); got {theta.detach()}")
        return theta

    def returns(self, theta: Tensor, states: Tensor, actions: Tensor) -> Tensor:
        """``R_theta(x) = sum_{t<T} r_theta(s_t, a_t)`` of split trajectories.

        Args:
            theta: shape ``theta_batch + (D,)``.
            states: ``traj_batch + (T + 1,)`` (tabular, int, -1 padding) or ``traj_batch +
                (T + 1, dx)`` (continuous).
            actions: ``traj_batch + (T,)`` or ``traj_batch + (T, du)``.

        Returns:
            Shape ``broadcast(theta_batch, traj_batch)``; unobserved steps (-1 actions)
            contribute zero.
        """
        raise NotImplementedError

    def forward(self) -> Tensor:
        """Sample theta from the prior in plate ``dim_name``; returns shape ``batch + (D,)``."""
        with pyro.plate(self.dim_name, self.num_params, dim=-1):
            return pyro.sample(self.site_name, self.prior)
