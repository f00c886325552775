"""The maxent trajectory distribution of a linear-quadratic environment, exactly.

:func:`log_partition` is ``log Z(theta)`` (the backward recursion or the dense Cholesky of
:mod:`bayes_irl.linear_quadratic.gaussian`) and :func:`sample_demonstrations` draws exact
samples of ``P_theta = N(Lambda^{-1} eta, Lambda^{-1})`` over the trajectory vector ``z``
of a :class:`~bayes_irl.linear_quadratic.environment.LinearQuadraticMDP` (see
:mod:`bayes_irl.linear_quadratic` for the maths).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from bayes_irl.linear_quadratic.environment import LinearQuadraticMDP
from bayes_irl.linear_quadratic.gaussian import dense_log_normalizer, recursion_log_normalizer

__all__ = ["LQ_METHODS", "log_partition", "sample_demonstrations"]

LQ_METHODS = ("recursion", "dense")
"""The two implementations of the LQ ``log Z`` (see :mod:`bayes_irl.linear_quadratic.gaussian`)."""


def log_partition(
    mdp: LinearQuadraticMDP,
    theta: Any,
    *,
    method: Literal["recursion", "dense"] = "recursion",
) -> Tensor:
    """``log Z(theta) = log int b(z) exp(theta . sum_t phi(x_t, u_t)) dz``, exactly.

    Args:
        mdp: the environment.
        theta: reward parameters, shape ``batch_shape + (D,)`` with ``D = dx + du``
            (``[q_0..q_{dx-1}, r_0..r_{du-1}]``); any leading ``batch_shape``.
        method: ``"recursion"`` (``O(T)`` backward Riccati-style recursion) or ``"dense"``
            (Cholesky of the dense ``(d, d)`` trajectory precision, ``O(d^3)``, a reference).

    Returns:
        Tensor of shape ``batch_shape``, differentiable with respect to ``theta``.

    Raises:
        ValueError: if ``method`` is unknown, ``theta`` has the wrong last dimension, is not
            finite, has a non-positive control weight, or makes ``Lambda(theta)`` not
            positive definite (``Z(theta) = inf``).

    Examples:
        >>> import torch
        >>> mdp = LinearQuadraticMDP.default(dx=2, du=1, horizon=30)
        >>> theta = torch.tensor([[1.0, 0.5, 0.1], [2.0, 1.0, 0.3]], dtype=torch.float64)
        >>> log_z = log_partition(mdp, theta)
        >>> log_z.shape
        torch.Size([2])
        >>> bool(torch.allclose(log_z, log_partition(mdp, theta, method="dense")))
        True
    """
    if method not in LQ_METHODS:
        raise ValueError(f"`method` must be one of {LQ_METHODS}; got {method!r}")
    theta = mdp.check_theta(theta)
    mdp.check_control_weights(theta)
    if method == "dense":
        return dense_log_normalizer(mdp.quadratic_form(theta), theta, mdp.state_dim)
    return recursion_log_normalizer(mdp, theta)


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
    return mdp.split(z)
