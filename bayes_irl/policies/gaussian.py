r"""Gaussian policies over continuous actions: the guide policies of continuous maxent IRL.

A time-dependent Gaussian policy

.. math::

    \pi_t(u \mid x) = \mathcal{N}\big(u;\ \mu_t(x),\ \operatorname{diag}\sigma_t(x)^2\big),
    \qquad x \in \mathbb{R}^{d_x},\ u \in \mathbb{R}^{d_u},\ t = 0..T-1,

is a proposal over trajectories when it is run through a simulator:
:math:`q(z) = p(x_0) \prod_t \pi_t(u_t \mid x_t)\, p(x_{t+1} \mid x_t, u_t)`. Only the
policy factor :math:`\sum_t \log \pi_t(u_t \mid x_t)` (:meth:`GaussianPolicy.log_prob`)
enters the importance weights; the dynamics cancel (see
:mod:`bayes_irl.inference.normalizers.simulator_proposal`). The interface is
:class:`bayes_irl.policies.base.Policy`.

Two parameterisations:

* :class:`LinearGaussianPolicy`: :math:`\mu_t(x) = K_t x + k_t`, :math:`\sigma_t` a free
  per-step vector (the family that contains the maxent policy of a linear-quadratic
  problem, whose conditional :math:`P(u_t \mid x_t)` is linear-Gaussian);
* :class:`GaussianMLPPolicy`: :math:`(\mu_t(x), \log\sigma_t(x)) = \mathrm{MLP}(t / T, x)`.

Shapes: ``x[..., dx]`` -> ``u[..., du]``; ``action_log_prob(t, x, u)`` returns
``x.shape[:-1]`` (summed over action coordinates); trajectories are ``states[..., T+1, dx]``,
``actions[..., T, du]``, and ``log_prob(states, actions)`` returns their batch shape.
All sampling takes an explicit ``torch.Generator``.

Examples:
    >>> import torch
    >>> policy = LinearGaussianPolicy(horizon=5, state_dim=2, action_dim=1)
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.zeros(4, 2, dtype=torch.float64)
    >>> u = policy.sample(0, x, generator=g)
    >>> u.shape, policy.action_log_prob(0, x, u).shape
    (torch.Size([4, 1]), torch.Size([4]))
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from bayes_irl.policies.base import Policy
from bayes_irl.validation import positive_int

__all__ = ["GaussianPolicy", "LinearGaussianPolicy", "GaussianMLPPolicy"]

_LOG_2PI = math.log(2.0 * math.pi)


class GaussianPolicy(Policy):
    """Base class: a time-dependent diagonal-Gaussian policy ``pi_t(u | x)``.

    Subclasses implement :meth:`mean_log_std`. Parameters are torch ``Parameter`` objects
    (train them with any torch optimiser).

    Args:
        horizon: ``T``, number of decision steps (``t = 0..T-1``).
        state_dim: ``dx``.
        action_dim: ``du``.
        dtype: floating dtype of the parameters.

    Raises:
        ValueError: if a dimension is not a positive integer or ``dtype`` is not floating.
    """

    def __init__(
        self, *, horizon: int, state_dim: int, action_dim: int, dtype: torch.dtype
    ) -> None:
        super().__init__()
        self.horizon = positive_int(horizon, "horizon")
        self.state_dim = positive_int(state_dim, "state_dim")
        self.action_dim = positive_int(action_dim, "action_dim")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"`dtype` must be a floating-point torch.dtype; got {dtype!r}")
        self.dtype = dtype

    # ------------------------------------------------------------------ to implement
    def mean_log_std(self, t: int, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log standard deviation of ``pi_t(. | x)``.

        Args:
            t: time step in ``0..T-1``.
            x: states, shape ``(..., dx)``.

        Returns:
            ``(mean, log_std)``, each of shape ``(..., du)``.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ checks
    def _check(self, t: int, x: Tensor) -> Tensor:
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < self.horizon:
            raise ValueError(f"`t` must be an integer in 0..{self.horizon - 1}; got {t!r}")
        x = torch.as_tensor(x, dtype=self.dtype)
        if x.ndim < 1 or x.shape[-1] != self.state_dim:
            raise ValueError(
                f"`x` must have shape (..., state_dim) = (..., {self.state_dim}); "
                f"got {tuple(x.shape)}"
            )
        if not bool(torch.isfinite(x).all()):
            raise ValueError("`x` must be finite (no NaN or inf)")
        return x

    # ------------------------------------------------------------------ API
    def action_log_prob(self, t: int, x: Tensor, u: Tensor) -> Tensor:
        """``log pi_t(u | x)`` summed over action coordinates.

        Args:
            t: time step.
            x: shape ``(..., dx)``.
            u: shape ``(..., du)``, batch dims broadcastable with ``x``'s.

        Returns:
            Shape ``broadcast(x.shape[:-1], u.shape[:-1])``; differentiable in the parameters.

        Raises:
            ValueError: for a bad ``t``, wrong shapes or non-finite values.
        """
        x = self._check(t, x)
        u = torch.as_tensor(u, dtype=self.dtype)
        if u.ndim < 1 or u.shape[-1] != self.action_dim:
            raise ValueError(
                f"`u` must have shape (..., action_dim) = (..., {self.action_dim}); "
                f"got {tuple(u.shape)}"
            )
        mean, log_std = self.mean_log_std(t, x)
        white = (u - mean) * torch.exp(-log_std)
        return (-0.5 * white.pow(2) - log_std - 0.5 * _LOG_2PI).sum(-1)

    def rsample(self, t: int, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Reparameterised draw ``u = mean + std * eps`` (differentiable in the parameters).

        Args:
            t: time step.
            x: shape ``(..., dx)``.
            generator: random-number generator for ``eps``.

        Returns:
            Shape ``(..., du)``.
        """
        x = self._check(t, x)
        mean, log_std = self.mean_log_std(t, x)
        eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + torch.exp(log_std) * eps

    def sample(self, t: int, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Draw ``u ~ pi_t(. | x)`` without gradient.

        Args:
            t: time step.
            x: shape ``(..., dx)``.
            generator: random-number generator.

        Returns:
            Shape ``(..., du)``.
        """
        with torch.no_grad():
            return self.rsample(t, x, generator=generator)

    def step_log_prob(self, states: Tensor, actions: Tensor) -> Tensor:
        """``log pi_t(u_t | x_t)`` per step (the policy part of ``log q(z)``).

        :meth:`log_prob` (inherited) sums it over t: ``sum_{t<T} log pi_t(u_t | x_t)``.

        Args:
            states: shape ``(..., T+1, dx)`` (``x_T`` is not used) or ``(..., T, dx)``.
            actions: shape ``(..., T, du)``.

        Returns:
            Shape ``broadcast(states.shape[:-2], actions.shape[:-2]) + (T,)``.

        Raises:
            ValueError: for wrong shapes.
        """
        T = self.horizon
        if states.ndim < 2 or states.shape[-2] not in (T, T + 1):
            raise ValueError(
                f"`states` must have shape (..., T+1, dx) = (..., {T + 1}, {self.state_dim}); "
                f"got {tuple(states.shape)}"
            )
        if actions.ndim < 2 or actions.shape[-2] != T:
            raise ValueError(
                f"`actions` must have shape (..., T, du) = (..., {T}, {self.action_dim}); "
                f"got {tuple(actions.shape)}"
            )
        return torch.stack(
            [self.action_log_prob(t, states[..., t, :], actions[..., t, :]) for t in range(T)],
            dim=-1,
        )


class LinearGaussianPolicy(GaussianPolicy):
    """``u_t ~ N(K_t x_t + k_t, diag(exp(2 log_std_t)))``, one set of parameters per step.

    Attributes:
        gain: ``K[t, j, i]``, shape ``(T, du, dx)`` (initialised to 0).
        offset: ``k[t, j]``, shape ``(T, du)`` (initialised to 0).
        log_std: ``log sigma[t, j]``, shape ``(T, du)`` (initialised to ``log(init_std)``).

    Args:
        horizon: ``T``.
        state_dim: ``dx``.
        action_dim: ``du``.
        init_std: initial action standard deviation (> 0); a broad start keeps the
            importance weights finite while the policy is untrained.
        dtype: parameter dtype (float64 default, as the LQ references).

    Raises:
        ValueError: for bad dimensions or ``init_std <= 0``.
    """

    def __init__(
        self,
        *,
        horizon: int,
        state_dim: int,
        action_dim: int,
        init_std: float = 1.0,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__(horizon=horizon, state_dim=state_dim, action_dim=action_dim, dtype=dtype)
        if not (math.isfinite(init_std) and init_std > 0):
            raise ValueError(f"`init_std` must be a finite positive number; got {init_std!r}")
        T, dx, du = self.horizon, self.state_dim, self.action_dim
        self.gain = nn.Parameter(torch.zeros(T, du, dx, dtype=dtype))
        self.offset = nn.Parameter(torch.zeros(T, du, dtype=dtype))
        self.log_std = nn.Parameter(torch.full((T, du), math.log(init_std), dtype=dtype))

    def mean_log_std(self, t: int, x: Tensor) -> tuple[Tensor, Tensor]:  # noqa: D102
        mean = x @ self.gain[t].mT + self.offset[t]
        return mean, self.log_std[t].expand(mean.shape)


class GaussianMLPPolicy(GaussianPolicy):
    """Mean and log-std from an MLP of ``(t / T, x)``.

    ``h = tanh(W_l ... tanh(W_1 [t/T, x] + b_1) ... )``, ``(mean, log_std) = W_out h + b_out``
    with ``log_std`` clamped to ``[min_log_std, max_log_std]`` (keeps the importance weights
    finite). The output layer starts at zero mean and ``log_std = log(init_std)``.

    Args:
        horizon: ``T``.
        state_dim: ``dx``.
        action_dim: ``du``.
        hidden: widths of the hidden layers.
        init_std: initial action standard deviation.
        min_log_std: lower clamp of ``log_std``.
        max_log_std: upper clamp of ``log_std``.
        dtype: parameter dtype.
        generator: generator for the weight initialisation (reproducible).

    Raises:
        ValueError: for bad dimensions, empty ``hidden`` or ``init_std <= 0``.
    """

    def __init__(
        self,
        *,
        horizon: int,
        state_dim: int,
        action_dim: int,
        hidden: tuple[int, ...] = (32, 32),
        init_std: float = 1.0,
        min_log_std: float = -5.0,
        max_log_std: float = 3.0,
        dtype: torch.dtype = torch.float64,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(horizon=horizon, state_dim=state_dim, action_dim=action_dim, dtype=dtype)
        if not (math.isfinite(init_std) and init_std > 0):
            raise ValueError(f"`init_std` must be a finite positive number; got {init_std!r}")
        widths = [positive_int(h, "hidden") for h in hidden]
        if not widths:
            raise ValueError("`hidden` must list at least one layer width")
        self.min_log_std, self.max_log_std = float(min_log_std), float(max_log_std)
        layers: list[nn.Module] = []
        fan_in = state_dim + 1
        for width in widths:
            linear = nn.Linear(fan_in, width, dtype=dtype)
            with torch.no_grad():
                bound = 1.0 / math.sqrt(fan_in)
                linear.weight.copy_(
                    (torch.rand(linear.weight.shape, generator=generator, dtype=dtype) * 2 - 1)
                    * bound
                )
                linear.bias.zero_()
            layers += [linear, nn.Tanh()]
            fan_in = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(fan_in, 2 * action_dim, dtype=dtype)
        with torch.no_grad():
            self.head.weight.zero_()
            self.head.bias.zero_()
            self.head.bias[action_dim:] = math.log(init_std)

    def mean_log_std(self, t: int, x: Tensor) -> tuple[Tensor, Tensor]:  # noqa: D102
        time = torch.full((*x.shape[:-1], 1), t / self.horizon, dtype=x.dtype, device=x.device)
        out = self.head(self.body(torch.cat([time, x], dim=-1)))
        mean, log_std = out[..., : self.action_dim], out[..., self.action_dim :]
        return mean, log_std.clamp(self.min_log_std, self.max_log_std)
