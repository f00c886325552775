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
:math:`u_{T-1}`).

Three modules: :mod:`~bayes_irl.linear_quadratic.environment` (:class:`LinearQuadraticMDP`,
a :class:`~bayes_irl.protocols.TrajectorySpace` whose base measure is the known dynamics),
:mod:`~bayes_irl.linear_quadratic.maxent_distribution` (:func:`log_partition` and exact
sampling, :func:`sample_demonstrations`) and :mod:`~bayes_irl.linear_quadratic.gaussian`
(the pure Gaussian algebra: quadratic form, :class:`TrajectoryGaussian`, the dense and the
recursive :math:`\log Z`). The normaliser interface is
``bayes_irl.inference.ExactNormalizer(mdp)``.

Examples:
    >>> import torch
    >>> mdp = LinearQuadraticMDP.default(dx=2, du=1, horizon=10)
    >>> theta = torch.tensor([1.0, 0.5, 0.1], dtype=torch.float64)
    >>> states, actions = sample_demonstrations(
    ...     mdp, theta, 4, generator=torch.Generator().manual_seed(0))
    >>> states.shape, actions.shape
    (torch.Size([4, 11, 2]), torch.Size([4, 10, 1]))
    >>> log_partition(mdp, theta).shape
    torch.Size([])
"""

from bayes_irl.linear_quadratic.environment import LinearQuadraticMDP
from bayes_irl.linear_quadratic.gaussian import QuadraticForm, TrajectoryGaussian
from bayes_irl.linear_quadratic.maxent_distribution import (
    LQ_METHODS,
    log_partition,
    sample_demonstrations,
)

__all__ = [
    "LQ_METHODS",
    "LinearQuadraticMDP",
    "QuadraticForm",
    "TrajectoryGaussian",
    "log_partition",
    "sample_demonstrations",
]
