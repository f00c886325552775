r"""Gaussian algebra of the linear-quadratic maxent trajectory model: pure functions.

For linear-Gaussian dynamics (see :mod:`bayes_irl.linear_quadratic`) and the quadratic
reward ``R_theta(z) = -1/2 sum_{t<T} (x_t^T Q x_t + u_t^T R u_t)``, ``Q = diag(theta[:dx])``,
``R = diag(theta[dx:])``, ``log b(z) + R_theta(z)`` is a quadratic form in the flat
trajectory ``z``, so the maxent distribution is Gaussian and

.. math::

    Z(\theta) = \int b(z) \exp R_\theta(z) \, dz

is a Gaussian integral. The functions here take the dynamics as tensors (any object with
the attributes of :class:`LinearGaussianDynamics`, e.g. a ``LinearQuadraticMDP``) and
``theta``; they hold no state. Two implementations of :math:`\log Z`, equal to rounding
error:

**(a) Dense** (:func:`dense_log_normalizer`, reference, :math:`O((T (d_x+d_u))^3)`). With
:math:`\log b + R_\theta = -\tfrac12 z^T \Lambda z + \eta^T z + c` (:func:`quadratic_form`)
and :math:`\Lambda = L L^T`, :math:`d = \dim z`::

    log Z = c + 1/2 |L^{-1} eta|^2 + d/2 log(2 pi) - sum_i log L_ii.

**(b) Backward recursion** (:func:`recursion_log_normalizer`, :math:`O(T)`). Integrate
the pairs :math:`(u_{T-1}, x_T), (u_{T-2}, x_{T-1}), \dots` and finally :math:`x_0` in turn
(Gaussian message passing; the recursion for :math:`P_t` is the Riccati equation of the
maxent/LQR problem). The message from the future is a centred quadratic
:math:`\exp(-\tfrac12 x_t^T P_t x_t)` (the dynamics have no offset) with :math:`P_T = 0`
(no reward on :math:`x_T`). Write the transition with whitened noise,
:math:`x_{t+1} = A x_t + B u_t + L_W \epsilon_t`, :math:`W = L_W L_W^T`,
:math:`\epsilon_t \sim N(0, I)` (the Jacobian :math:`|L_W|` cancels the density's
normaliser). Given :math:`x_t`, the exponent in :math:`v = (u_t, \epsilon_t)` is
:math:`-\tfrac12 v^T J_t v - v^T F_t x_t - \tfrac12 x_t^T A^T P_{t+1} A x_t` with::

    N = [B, L_W]   (dx, du + dx),
    J_t = blockdiag(R, I) + N^T P_{t+1} N,      F_t = N^T P_{t+1} A,

so integrating :math:`v` gives, for :math:`t = T-1, \dots, 0`::

    P_t    = Q + A^T P_{t+1} A - F_t^T J_t^{-1} F_t,
    log Z += du/2 log(2 pi) - 1/2 log det J_t.

Finally, with :math:`x_0 = m_0 + L_0 \epsilon`, :math:`S_0 = L_0 L_0^T`,
:math:`M = L_0^T P_0 L_0`, :math:`K = I + M`, :math:`v_0 = L_0^{-1} m_0`::

    log Z += -1/2 log det K - 1/2 v_0^T K^{-1} M v_0
    (= log int N(x; m_0, S_0) exp(-1/2 x^T P_0 x) dx).

No :math:`W^{-1}` or :math:`S_0^{-1}` appears, so the recursion stays accurate for nearly
deterministic dynamics (small :math:`W`), where the dense :math:`\Lambda` is ill-conditioned;
in float32 it agrees with the float64 result to about 1e-7 relative for noise standard
deviations from 1e-5 to 1e3 on the default system. The change of variables
:math:`z \mapsto (x_0, u_0, \epsilon_0, \dots)` is linear and invertible, and :math:`J_t`
and :math:`K` are the block pivots of the transformed precision in the elimination order
above, so all the Cholesky factorisations succeed iff :math:`\Lambda(\theta)` is positive
definite, i.e. iff :math:`Z(\theta) < \infty`; both functions raise a ``ValueError``
otherwise. The control weights must be positive (:math:`J_{T-1} = \mathrm{blockdiag}(R,
I)`; :func:`check_control_weights` gives the clearer message). For small ``dx, du`` the
cost is the number of torch operations per step (one Cholesky, one triangular solve, a few
products), not flops, so for one ``theta`` and short horizons the dense method can be
faster; the recursion wins for long horizons and for batches of ``theta``.

Both accept ``theta`` with arbitrary leading batch dimensions (batched Cholesky) and are
differentiable by torch autograd; :math:`\nabla_\theta \log Z = E_{P_\theta}[\sum_t
\phi(x_t, u_t)]`, the expected feature counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch
from torch import Tensor

__all__ = [
    "LinearGaussianDynamics",
    "QuadraticForm",
    "TrajectoryGaussian",
    "check_control_weights",
    "conditional_gaussian",
    "conditional_log_normalizer",
    "dense_log_normalizer",
    "gaussian_from_form",
    "mvn_log_density",
    "quadratic_form",
    "recursion_log_normalizer",
    "theta_free_form",
]

LOG_2PI = math.log(2.0 * math.pi)


class LinearGaussianDynamics(Protocol):
    """What the algebra reads of the environment (``LinearQuadraticMDP`` has all of it).

    Attributes:
        dynamics: ``A (dx, dx)``.
        control: ``B (dx, du)``.
        noise_tril: lower Cholesky factor ``L_W (dx, dx)`` of the noise covariance ``W``.
        initial_mean: ``m_0 (dx,)``.
        initial_tril: lower Cholesky factor ``L_0 (dx, dx)`` of ``S_0``.
        horizon: ``T``.
        state_dim: ``dx``.
        action_dim: ``du``.
    """

    dynamics: Tensor
    control: Tensor
    noise_tril: Tensor
    initial_mean: Tensor
    initial_tril: Tensor
    horizon: int
    state_dim: int
    action_dim: int


def mvn_log_density(residual: Tensor, tril: Tensor) -> Tensor:
    """``log N(residual; 0, tril tril^T)`` for ``residual[..., k]``; returns shape ``(...)``."""
    k = tril.shape[-1]
    white = torch.linalg.solve_triangular(
        tril.expand(*residual.shape[:-1], k, k), residual.unsqueeze(-1), upper=False
    ).squeeze(-1)
    half_logdet = tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return -0.5 * white.pow(2).sum(-1) - half_logdet - 0.5 * k * LOG_2PI


def _sym(matrix: Tensor) -> Tensor:
    """Symmetric part of ``matrix[..., i, j]``."""
    return 0.5 * (matrix + matrix.mT)


def _half_logdet(tril: Tensor) -> Tensor:
    """``1/2 log det(tril tril^T)`` for ``tril[..., k, k]``; shape ``(...)``."""
    return tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)


def _not_integrable(theta: Tensor, state_dim: int) -> ValueError:
    return ValueError(
        "`theta` gives a trajectory precision Lambda(theta) that is not positive definite, "
        "so exp(R_theta) b is not integrable (Z = inf); increase the state costs "
        f"q = theta[..., :{state_dim}]; got theta={theta.detach()}"
    )


def check_control_weights(theta: Tensor, state_dim: int) -> None:
    """Raise unless every control weight ``theta[..., dx:]`` is positive.

    Args:
        theta: shape ``(..., dx + du)``.
        state_dim: ``dx``.

    Raises:
        ValueError: if some ``r_j <= 0``: with Lebesgue measure on the actions the last
            action ``u_{T-1}`` is then not integrable.
    """
    if not bool((theta[..., state_dim:] > 0).all()):
        raise ValueError(
            f"`theta` control weights r = theta[..., {state_dim}:] must be > 0 (the actions "
            f"have no prior, so Z(theta) is infinite otherwise); got theta={theta.detach()}"
        )


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

    Use ``LinearQuadraticMDP.split`` to turn samples into ``(states, actions)``.

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
        return (
            -0.5 * white.squeeze(-1).pow(2).sum(-1)
            + _half_logdet(self.precision_tril)
            - 0.5 * d * LOG_2PI
        )

    def entropy(self) -> Tensor:
        """Differential entropy ``d/2 (1 + log 2 pi) - 1/2 log det Lambda``.

        Returns:
            Tensor of shape ``batch_shape``.
        """
        return 0.5 * self.event_dim * (1.0 + LOG_2PI) - _half_logdet(self.precision_tril)

    def to_distribution(self) -> torch.distributions.MultivariateNormal:
        """The same Gaussian as a ``torch.distributions.MultivariateNormal`` (event dim ``d``)."""
        return torch.distributions.MultivariateNormal(self.mean, precision_matrix=self.precision)


def theta_free_form(dyn: LinearGaussianDynamics) -> tuple[QuadraticForm, Tensor]:
    r"""The theta-independent part of the quadratic form and the cost embedding ``E``.

    Args:
        dyn: the dynamics.

    Returns:
        ``(QuadraticForm(Lambda_0 (d, d), eta (d,), c ()), E (d, dx + du))`` with
        :math:`\Lambda(\theta) = \Lambda_0 + \mathrm{diag}(E \theta)`; ``E`` places
        ``q`` on the coordinates of ``x_0..x_{T-1}``, ``r`` on those of ``u_0..u_{T-1}``.
    """
    T, dx, du = dyn.horizon, dyn.state_dim, dyn.action_dim
    n = dx + du
    d = T * n + dx
    m0 = dyn.initial_mean
    kw = {"dtype": m0.dtype, "device": m0.device}
    s0_inv = torch.cholesky_inverse(dyn.initial_tril)
    w_inv = torch.cholesky_inverse(dyn.noise_tril)
    # M v = x_{t+1} - A x_t - B u_t for v = (x_t, u_t, x_{t+1}) (contiguous in z).
    m = torch.cat([-dyn.dynamics, -dyn.control, torch.eye(dx, **kw)], dim=-1)
    block = m.mT @ w_inv @ m
    precision = torch.zeros(d, d, **kw)
    precision[:dx, :dx] += s0_inv
    for t in range(T):
        o = t * n
        precision[o : o + n + dx, o : o + n + dx] += block
    precision = _sym(precision)
    shift = torch.zeros(d, **kw)
    shift[:dx] = s0_inv @ m0
    logdet_s0 = 2.0 * dyn.initial_tril.diagonal().log().sum()
    logdet_w = 2.0 * dyn.noise_tril.diagonal().log().sum()
    constant = (
        -0.5 * m0 @ s0_inv @ m0
        - 0.5 * (dx * LOG_2PI + logdet_s0)
        - 0.5 * T * (dx * LOG_2PI + logdet_w)
    )
    select = torch.zeros(d, n, **kw)
    for t in range(T):
        select[t * n : (t + 1) * n, :] = torch.eye(n, **kw)
    return QuadraticForm(precision, shift, constant), select


def quadratic_form(base: QuadraticForm, select: Tensor, theta: Tensor) -> QuadraticForm:
    """Coefficients of ``log b(z) + R_theta(z) = -1/2 z^T Lambda z + eta^T z + c``.

    Args:
        base: the theta-free form of :func:`theta_free_form`.
        select: its ``E (d, D)``.
        theta: shape ``(..., D)``.

    Returns:
        :class:`QuadraticForm` with ``precision (..., d, d)``, ``shift (..., d)`` and
        ``constant ()``; differentiable in ``theta``. ``Lambda`` is not checked for positive
        definiteness here (see :func:`gaussian_from_form`).
    """
    precision = base.precision + torch.diag_embed(theta @ select.mT)
    return QuadraticForm(precision, base.shift.expand(*theta.shape[:-1], -1), base.constant)


def gaussian_from_form(form: QuadraticForm, theta: Tensor, state_dim: int) -> TrajectoryGaussian:
    """The maxent trajectory distribution ``N(Lambda^{-1} eta, Lambda^{-1})`` of a form.

    Args:
        form: the quadratic form at ``theta`` (batch shape ``theta.shape[:-1]``).
        theta: shape ``(..., D)`` (for the error message).
        state_dim: ``dx`` (for the error message).

    Returns:
        :class:`TrajectoryGaussian` with batch shape ``theta.shape[:-1]``, event ``(d,)``.

    Raises:
        ValueError: if ``Lambda(theta)`` is not positive definite.
    """
    tril, info = torch.linalg.cholesky_ex(form.precision)
    if bool((info != 0).any()):
        raise _not_integrable(theta, state_dim)
    mean = torch.cholesky_solve(form.shift.unsqueeze(-1), tril).squeeze(-1)
    return TrajectoryGaussian(mean=mean, precision=form.precision, precision_tril=tril)


def dense_log_normalizer(form: QuadraticForm, theta: Tensor, state_dim: int) -> Tensor:
    """Dense reference ``log Z``: method (a) of the module docstring.

    Args:
        form: the quadratic form at ``theta`` (batch shape ``theta.shape[:-1]``).
        theta: shape ``(..., D)`` (for the error message).
        state_dim: ``dx`` (for the error message).

    Returns:
        ``log Z`` of shape ``theta.shape[:-1]``, differentiable.

    Raises:
        ValueError: if ``Lambda(theta)`` is not positive definite.
    """
    tril, info = torch.linalg.cholesky_ex(form.precision)
    if bool((info != 0).any()):
        raise _not_integrable(theta, state_dim)
    white = torch.linalg.solve_triangular(tril, form.shift.unsqueeze(-1), upper=False)
    d = form.precision.shape[-1]
    return (
        form.constant
        + 0.5 * white.squeeze(-1).pow(2).sum(-1)
        + 0.5 * d * LOG_2PI
        - _half_logdet(tril)
    )


def _backward(dyn: LinearGaussianDynamics, theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The backward pass of method (b) down to ``t = 0``.

    One product ``S = N'^T P_{t+1} N'`` with ``N' = [B, L_W, A]`` gives the blocks
    ``N^T P N``, ``N^T P A`` and ``A^T P A``. Log-determinants and Cholesky status flags
    are collected and reduced once after the loop.

    Returns:
        ``(log_c, P_0, failed)``: ``log Z(theta | x_0) = log_c - 1/2 x_0^T P_0 x_0`` with
        ``log_c`` of shape ``theta.shape[:-1]``, ``P_0`` of shape ``theta.shape[:-1] + (dx,
        dx)``, and ``failed`` a bool tensor (some pivot was not positive definite).
    """
    dx, du = dyn.state_dim, dyn.action_dim
    n = du + dx
    batch = theta.shape[:-1]
    kw = {"dtype": theta.dtype, "device": theta.device}
    stacked = torch.cat([dyn.control, dyn.noise_tril, dyn.dynamics], dim=-1)  # (dx, n + dx)
    # blockdiag(R, I), (..., n, n)
    prior = torch.diag_embed(torch.cat([theta[..., dx:], theta.new_ones(*batch, dx)], -1))
    q = torch.diag_embed(theta[..., :dx])

    precision = torch.zeros(*batch, dx, dx, **kw)  # P_T = 0: no reward on x_T
    diagonals: list[Tensor] = []  # diagonals of the Cholesky factors of J_t
    infos: list[Tensor] = []
    for _ in range(dyn.horizon):
        s = stacked.mT @ precision @ stacked
        j_tril, info = torch.linalg.cholesky_ex(prior + s[..., :n, :n])
        white = torch.linalg.solve_triangular(j_tril, s[..., :n, n:], upper=False)
        precision = _sym(q + s[..., n:, n:] - white.mT @ white)
        diagonals.append(j_tril.diagonal(dim1=-2, dim2=-1))
        infos.append(info)
    log_c = 0.5 * dyn.horizon * du * LOG_2PI - torch.cat(diagonals, dim=-1).log().sum(-1)
    return log_c, precision, torch.stack(infos).any()


def recursion_log_normalizer(dyn: LinearGaussianDynamics, theta: Tensor) -> Tensor:
    """Backward-recursion ``log Z``: method (b) of the module docstring.

    Args:
        dyn: the dynamics.
        theta: shape ``(..., dx + du)``, validated, control weights positive.

    Returns:
        ``log Z`` of shape ``theta.shape[:-1]``, differentiable.

    Raises:
        ValueError: if ``Lambda(theta)`` is not positive definite (a pivot fails).
    """
    dx = dyn.state_dim
    log_c, precision, failed = _backward(dyn, theta)
    l_0 = dyn.initial_tril
    m_0 = l_0.mT @ precision @ l_0
    eye = torch.eye(dx, dtype=theta.dtype, device=theta.device)
    k_tril, k_info = torch.linalg.cholesky_ex(eye + m_0)
    if bool(failed) or bool(k_info.any()):
        raise _not_integrable(theta, dx)
    v = torch.linalg.solve_triangular(l_0, dyn.initial_mean.unsqueeze(-1), upper=False)
    quad = (v.mT @ torch.cholesky_solve(m_0, k_tril) @ v).squeeze(-1).squeeze(-1)
    return log_c - _half_logdet(k_tril) - 0.5 * quad


def conditional_log_normalizer(
    dyn: LinearGaussianDynamics, theta: Tensor, initial_state: Tensor
) -> Tensor:
    """``log Z(theta | x_0) = log int b(z | x_0) exp R_theta(z) d(u_0, x_1, ..., x_T)``.

    The normaliser of the maxent distribution conditioned on the initial state (a context):
    ``log_c - 1/2 x_0^T P_0 x_0`` from the backward recursion (it includes ``x_0``'s own
    reward).

    Args:
        dyn: the dynamics.
        theta: shape ``theta_batch + (dx + du,)``, validated, control weights positive.
        initial_state: ``x_0``, shape ``x_batch + (dx,)``.

    Returns:
        Shape ``broadcast(theta_batch, x_batch)``, differentiable.

    Raises:
        ValueError: if a pivot ``J_t`` is not positive definite.
    """
    log_c, precision, failed = _backward(dyn, theta)
    if bool(failed):
        raise _not_integrable(theta, dyn.state_dim)
    x = initial_state.unsqueeze(-2)  # x_batch + (1, dx)
    quad = (x @ precision @ x.mT).squeeze(-1).squeeze(-1)
    return log_c - 0.5 * quad


def conditional_gaussian(
    form: QuadraticForm, initial_state: Tensor, theta: Tensor, state_dim: int
) -> TrajectoryGaussian:
    """The maxent distribution of ``(u_0, x_1, ..., x_T)`` given ``x_0``: a Gaussian.

    With ``Lambda = [[L_00, L_0r], [L_r0, L_rr]]`` split at ``dx`` (``x_0`` first), the
    conditional has precision ``L_rr`` and mean ``L_rr^{-1} (eta_r - L_r0 x_0)``.

    Args:
        form: the quadratic form at ``theta`` (batch shape ``theta.shape[:-1]``).
        initial_state: ``x_0``, shape ``x_batch + (dx,)``.
        theta: shape ``(..., D)`` (for the error message).
        state_dim: ``dx``.

    Returns:
        :class:`TrajectoryGaussian` over the ``d - dx`` remaining coordinates, batch shape
        ``broadcast(theta_batch, x_batch)``.

    Raises:
        ValueError: if ``L_rr`` is not positive definite.
    """
    dx = state_dim
    precision = form.precision[..., dx:, dx:]
    tril, info = torch.linalg.cholesky_ex(precision)
    if bool((info != 0).any()):
        raise _not_integrable(theta, dx)
    rhs = form.shift[..., dx:] - (
        form.precision[..., dx:, :dx] @ initial_state.unsqueeze(-1)
    ).squeeze(-1)
    batch = rhs.shape[:-1]
    k = precision.shape[-1]
    tril = tril.expand(*batch, k, k)
    mean = torch.cholesky_solve(rhs.unsqueeze(-1), tril).squeeze(-1)
    return TrajectoryGaussian(
        mean=mean, precision=precision.expand(*batch, k, k), precision_tril=tril
    )
