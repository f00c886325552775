"""The exact normaliser of tabular MDPs: log Z from the soft-Bellman backward recursion.

The recursion itself is a pure function of the MDP and the step rewards
(:mod:`bayes_irl.soft_bellman`); this class is its normaliser interface.
"""

from __future__ import annotations

import torch

from bayes_irl.mdp import TabularMDP
from bayes_irl.soft_bellman import MaxEntKind, check_kind, soft_values

__all__ = ["ExactNormalizer"]


class ExactNormalizer:
    """Exact log-partition of the maxent trajectory distribution on a tabular MDP.

    The normaliser interface shared with the estimators: ``log_normalizer(step_rewards)``
    returns a differentiable log Z of shape ``batch_shape``; ``diagnostics`` describes the
    last evaluation (``None`` here: nothing is estimated). Exact normalisers also expose
    :meth:`soft_values`, which the distribution uses for truncated trajectories, for
    conditioning on the initial state and for the causal likelihood.

    Args:
        mdp: the tabular MDP (base measure).
        kind: ``"global"`` (default; the design's P ∝ b exp R) or ``"causal"`` (maximum
            causal entropy). See the module docstring for the difference.

    Example:
        >>> from bayes_irl import GridWorld
        >>> world = GridWorld.create(size=3, horizon=4, seed=0)
        >>> norm = ExactNormalizer(world.mdp)
        >>> r = world.reward_model.step_rewards(world.true_weights)
        >>> norm.log_normalizer(r).shape
        torch.Size([])
    """

    is_exact = True

    def __init__(self, mdp: TabularMDP, *, kind: MaxEntKind = "global") -> None:
        check_kind(kind)
        self.mdp = mdp
        self.kind = kind
        self.diagnostics = None

    def soft_values(self, step_rewards: torch.Tensor) -> torch.Tensor:
        """Return ``V[..., t, s]``, shape (..., T + 1, S); see :func:`soft_values`."""
        return soft_values(self.mdp, step_rewards, kind=self.kind)

    def log_normalizer(self, step_rewards: torch.Tensor) -> torch.Tensor:
        """Return log Z of the global distribution, shape ``step_rewards.shape[:-2]``.

        For ``kind="causal"`` this is the log-partition of the *global* model evaluated at
        the same rewards only if the dynamics are deterministic; there is no single Z, so
        a ValueError is raised instead.
        """
        if self.kind != "global":
            raise ValueError(
                "log_normalizer is defined for kind='global' only: the causal model "
                "normalises each step; use soft_values"
            )
        v0 = self.soft_values(step_rewards)[..., 0, :]
        return torch.logsumexp(v0 + self.mdp.initial.log(), dim=-1)

    def __repr__(self) -> str:
        return f"ExactNormalizer(kind={self.kind!r}, mdp={self.mdp!r})"
