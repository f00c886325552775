r"""Policies over tabular MDPs: the guide policies of the importance normaliser.

A time-dependent tabular softmax policy has one logit per (t, s, a):

    pi_t(a | s) = exp(logits[t, s, a]) / sum_{a'} exp(logits[t, s, a'])    t = 0..T-1.

It is the proposal q(x) = p0(s_0) prod_t pi_t(a_t | s_t) p(s_{t+1} | s_t, a_t) of the
importance-sampling estimate of Z (see :mod:`bayes_irl.inference.normalizers.importance`); its log
density over a trajectory is the sum of the per-step log-probabilities, and its entropy
per (t, s) is H_t(s) = -sum_a pi_t(a | s) log pi_t(a | s).

Trajectory tensors follow :mod:`bayes_irl.trajectories`: states (..., T + 1) (or the
first T, (..., T)) and actions (..., T), ``-1`` marks an unobserved step (it contributes
zero). The interface is :class:`bayes_irl.policies.base.Policy`.
"""

from __future__ import annotations

import torch
from torch import nn

from bayes_irl.policies.base import Policy
from bayes_irl.validation import positive_int

__all__ = ["TabularPolicy"]


class TabularPolicy(Policy):
    """Time-dependent tabular softmax policy ``pi_t(a | s)`` with logits of shape (T, S, A).

    Args:
        num_states: S >= 1.
        num_actions: A >= 1.
        horizon: T >= 1 (number of decision steps).
        logits: optional initial logits of shape (T, S, A); default zeros (uniform).
        dtype: floating dtype of the logits (float64 by default, like the tabular math).
        device: torch device.

    Raises:
        ValueError: for non-positive sizes or logits of the wrong shape / non-finite.

    Example:
        >>> policy = TabularPolicy(4, 3, 5)
        >>> g = torch.Generator().manual_seed(0)
        >>> a = policy.sample(2, torch.tensor([0, 3, 3]), generator=g)
        >>> a.shape, policy.log_prob(torch.zeros(7, 5, dtype=torch.long),
        ...                          torch.zeros(7, 5, dtype=torch.long)).shape
        (torch.Size([3]), torch.Size([7]))
    """

    def __init__(
        self,
        num_states: int,
        num_actions: int,
        horizon: int,
        *,
        logits: torch.Tensor | None = None,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        shape = (
            positive_int(horizon, "horizon"),
            positive_int(num_states, "num_states"),
            positive_int(num_actions, "num_actions"),
        )
        if logits is None:
            init = torch.zeros(shape, dtype=dtype, device=device)
        else:
            init = torch.as_tensor(logits).detach().to(dtype=dtype, device=device).clone()
            if init.shape != shape:
                raise ValueError(
                    f"logits must have shape (T, S, A) = {shape}; got {tuple(init.shape)}"
                )
            if torch.isnan(init).any() or (init == torch.inf).any():
                raise ValueError("logits must not contain NaN or +inf")
        self.logits = nn.Parameter(init)

    @classmethod
    def for_mdp(cls, mdp, *, logits: torch.Tensor | None = None) -> TabularPolicy:
        """Return a policy sized for ``mdp`` (a ``TabularMDP``), uniform by default."""
        return cls(
            mdp.num_states, mdp.num_actions, mdp.horizon, logits=logits, dtype=mdp.dtype,
            device=mdp.device,
        )

    @property
    def horizon(self) -> int:
        """T."""
        return self.logits.shape[0]

    @property
    def num_states(self) -> int:
        """S."""
        return self.logits.shape[1]

    @property
    def num_actions(self) -> int:
        """A."""
        return self.logits.shape[2]

    def log_probs(self) -> torch.Tensor:
        """Return ``log pi_t(a | s)``, shape (T, S, A) (differentiable)."""
        return torch.log_softmax(self.logits, dim=-1)

    def step_log_prob(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Return ``log pi_t(a_t | s_t)`` per step, shape (..., T); 0 where ``actions < 0``.

        Args:
            states: int tensor (..., T + 1) of s_t (``s_T`` unused) or its first T, (..., T).
            actions: int tensor (..., T) of a_t, ``-1`` for unobserved steps.

        Raises:
            ValueError: if the shapes are not (..., T [+ 1]) and (..., T).
        """
        horizon = self.horizon
        if states.dim() >= 1 and states.shape[-1] == horizon + 1:
            states = states[..., :horizon]
        if states.shape[-1:] != (horizon,) or actions.shape != states.shape:
            raise ValueError(
                f"states and actions must have shapes (..., T [+ 1]) and (..., T) with T = "
                f"{horizon}; got {tuple(states.shape)} and {tuple(actions.shape)}"
            )
        observed = actions >= 0
        steps = torch.arange(horizon, device=states.device).expand_as(states)
        lp = self.log_probs()[steps, states.clamp(min=0), actions.clamp(min=0)]
        return torch.where(observed, lp, torch.zeros_like(lp))

    def sample(
        self, t: int, states: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw ``a ~ pi_t(. | s)`` for every entry of ``states`` (int, shape (n,)); shape (n,)."""
        if not 0 <= int(t) < self.horizon:
            raise ValueError(f"t must lie in [0, {self.horizon}); got {t}")
        with torch.no_grad():
            probs = torch.softmax(self.logits[int(t)][states], dim=-1)
            return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    def entropy(self) -> torch.Tensor:
        """Return the per-state entropies ``H_t(s)``, shape (T, S) (differentiable)."""
        log_pi = self.log_probs()
        return -(log_pi.exp() * log_pi).sum(-1)

    def extra_repr(self) -> str:  # noqa: D102
        return f"T={self.horizon}, S={self.num_states}, A={self.num_actions}"
