r"""The one policy interface: time-dependent stochastic policies ``pi_t(a | s)``, t = 0..T-1.

A policy is the guide policy (importance proposal) of a maxent normaliser when it is run
through the dynamics or a simulator, q(x) = p0(s_0) prod_t pi_t(a_t | s_t) p(s_{t+1} | s_t,
a_t): only its factor sum_t log pi_t(a_t | s_t) (:meth:`Policy.log_prob`) enters the
importance weights, the dynamics cancel.

Trajectories are split as by :meth:`bayes_irl.protocols.TrajectorySpace.split`:
``states (..., T + 1, *state_shape)`` (``s_T`` is not used; ``(..., T, *state_shape)``
is accepted too) and ``actions (..., T, *action_shape)``; tabular states and actions are
int with empty state/action shapes and ``-1`` where unobserved, continuous ones are float
vectors of sizes ``dx`` and ``du``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

__all__ = ["Policy"]


class Policy(nn.Module, ABC):
    """A trainable time-dependent policy ``pi_t(a | s)`` (tabular or Gaussian).

    Implemented by :class:`~bayes_irl.policies.TabularPolicy` and
    :class:`~bayes_irl.policies.GaussianPolicy`. Subclasses set ``horizon`` (T, an
    attribute or a property) and implement :meth:`step_log_prob` and :meth:`sample`;
    :meth:`log_prob` sums the steps.
    Parameters are ``nn.Parameter`` objects, trained by any torch optimiser.
    """

    horizon: int
    """T, the number of decision steps."""

    @abstractmethod
    def step_log_prob(self, states: Tensor, actions: Tensor) -> Tensor:
        """Per-step ``log pi_t(a_t | s_t)``, shape ``batch + (T,)`` (differentiable).

        Args:
            states: ``(..., T + 1, *state_shape)`` or ``(..., T, *state_shape)``.
            actions: ``(..., T, *action_shape)``.

        Returns:
            ``log_pi[..., t]``; unobserved steps (tabular ``-1`` actions) are 0.
        """

    def log_prob(self, states: Tensor, actions: Tensor) -> Tensor:
        """``sum_t log pi_t(a_t | s_t)``, shape ``batch`` (see :meth:`step_log_prob`)."""
        return self.step_log_prob(states, actions).sum(-1)

    @abstractmethod
    def sample(
        self, t: int, states: Tensor, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw ``a ~ pi_t(. | s)`` without gradient for states ``(n, *state_shape)``.

        Returns:
            Actions of shape ``(n, *action_shape)``.
        """
