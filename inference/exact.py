r"""Exact normaliser for tabular MDPs: the log-space soft Bellman backward recursion.

For step rewards r[..., s, a] (earned at t = 0..T-1), action base measure
log beta(a | s) and sparse transitions p(s' | s, a), define V_T(s) = 0 and for t = T-1..0

    Q_t(s, a) = r(s, a) + log beta(a | s) + C_t(s, a),      V_t(s) = log sum_a exp Q_t(s, a)

with the continuation C_t chosen by ``kind``:

* ``"global"`` (Ziebart et al. 2008, eq. 4; the design card's model): the trajectory
  distribution is P(x) = b(x) exp R(x) / Z with b(x) = p0(s_0) prod beta p, and

      C_t(s, a) = log sum_{s'} p(s' | s, a) exp V_{t+1}(s'),   log Z = log sum_s p0(s) exp V_0(s).

  V_t(s) is then the log-partition of all continuations from s at time t. With stochastic
  dynamics P *tilts* the transitions: P(s' | s, a, t) ∝ p(s' | s, a) exp V_{t+1}(s'), i.e.
  the demonstrator is modelled as choosing outcomes as well as actions.

* ``"causal"`` (maximum causal entropy, Ziebart et al. 2010, eqs. 6.5-6.6; the model of
  imitation's MCE IRL): the demonstrator controls only its actions, so

      C_t(s, a) = sum_{s'} p(s' | s, a) V_{t+1}(s'),   pi_t(a | s) = exp(Q_t(s, a) - V_t(s)),

  and the likelihood of a trajectory is p0(s_0) prod pi_t(a_t | s_t) p(s_{t+1} | s_t, a_t).
  There is no single Z; each step is normalised locally.

With deterministic dynamics the two coincide. Both are differentiable in r, and for a
linear reward the gradient of log Z is the expected feature count (Ziebart eq. 6), which
the tests check against enumeration.

Cost: O(T · S · A · F) time for fan-out F, O(T · S) memory for the value table (plus
autograd's intermediates), for any number of leading batch dimensions of r.
"""

from __future__ import annotations

from typing import Literal

import torch

from bayes_irl.mdp import TabularMDP

__all__ = [
    "ExactNormalizer",
    "soft_values",
    "continuation",
    "sample_maxent_trajectories",
    "MaxEntKind",
]

MaxEntKind = Literal["global", "causal"]
_KINDS = ("global", "causal")


def _check_kind(kind: str) -> None:
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}; got {kind!r}")


def _check_step_rewards(mdp: TabularMDP, step_rewards: torch.Tensor) -> None:
    if not torch.is_tensor(step_rewards):
        raise ValueError(f"step_rewards must be a torch.Tensor; got {type(step_rewards).__name__}")
    if step_rewards.dim() < 2 or step_rewards.shape[-2:] != (mdp.num_states, mdp.num_actions):
        raise ValueError(
            f"step_rewards must have shape (..., S, A) = (..., {mdp.num_states}, "
            f"{mdp.num_actions}); got {tuple(step_rewards.shape)}"
        )


def continuation(
    mdp: TabularMDP, next_values: torch.Tensor, *, kind: MaxEntKind = "global"
) -> torch.Tensor:
    """Return the continuation ``C[..., s, a]`` from next-step values ``V[..., s']``.

    Args:
        mdp: the MDP.
        next_values: V_{t+1}, shape (..., S).
        kind: ``"global"`` (log-expectation of exp V) or ``"causal"`` (expectation of V).

    Returns:
        Tensor of shape (..., S, A).
    """
    gathered = next_values[..., mdp.successors]  # (..., S, A, F)
    if kind == "global":
        return torch.logsumexp(gathered + mdp.successor_log_probs, dim=-1)
    probs = mdp.successor_log_probs.exp()
    return (gathered * probs).sum(-1)


def soft_values(
    mdp: TabularMDP, step_rewards: torch.Tensor, *, kind: MaxEntKind = "global"
) -> torch.Tensor:
    """Run the backward recursion and return the soft values.

    Args:
        mdp: the MDP (base measure and horizon T).
        step_rewards: ``r[..., s, a]``, shape (..., S, A), any leading batch dims.
        kind: ``"global"`` or ``"causal"`` (see module docstring).

    Returns:
        ``V[..., t, s]`` of shape (..., T + 1, S) with ``V[..., T, :] = 0``.
    """
    _check_kind(kind)
    _check_step_rewards(mdp, step_rewards)
    local = step_rewards + mdp.action_log_base  # (..., S, A)
    value = torch.zeros(local.shape[:-1], dtype=local.dtype, device=local.device)
    values = [value]
    for _ in range(mdp.horizon):
        q = local + continuation(mdp, value, kind=kind)
        value = torch.logsumexp(q, dim=-1)
        values.append(value)
    return torch.stack(values[::-1], dim=-2)


def step_q_values(
    mdp: TabularMDP,
    step_rewards: torch.Tensor,
    next_values: torch.Tensor,
    *,
    kind: MaxEntKind = "global",
) -> torch.Tensor:
    """Return ``Q_t[..., s, a]`` given ``V_{t+1}`` (shape (..., S)); shape (..., S, A)."""
    return step_rewards + mdp.action_log_base + continuation(mdp, next_values, kind=kind)


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
        _check_kind(kind)
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


def _categorical(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Draw one index per row of ``logits`` (shape (N, C)); returns shape (N,)."""
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def sample_maxent_trajectories(
    mdp: TabularMDP,
    step_rewards: torch.Tensor,
    num_samples: int,
    *,
    kind: MaxEntKind = "global",
    initial_states: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw exact samples from the maxent trajectory distribution.

    Backward recursion, then forward sampling: s_0 from p0 (tilted by exp V_0 for the
    global model unless ``initial_states`` are given), a_t from pi_t(a | s) ∝ exp Q_t(s, a),
    s_{t+1} from p(s' | s, a) (tilted by exp V_{t+1}(s') for the global model).

    Args:
        mdp: the MDP.
        step_rewards: ``r[s, a]`` of shape (S, A) (one reward; use a loop or the
            distribution's ``sample`` for batched rewards).
        num_samples: number of trajectories n >= 1.
        kind: ``"global"`` or ``"causal"``.
        initial_states: optional int tensor of shape (n,): condition on these s_0.
        generator: torch random generator for reproducibility.

    Returns:
        int64 tensor of shape (n, T + 1, 2) in the trajectory encoding (states in
        ``[..., 0]``, actions in ``[..., 1]``, last action -1).
    """
    _check_kind(kind)
    _check_step_rewards(mdp, step_rewards)
    if step_rewards.dim() != 2:
        raise ValueError(
            f"step_rewards must have shape (S, A) for sampling; got {tuple(step_rewards.shape)}"
        )
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be >= 1; got {num_samples}")
    with torch.no_grad():
        values = soft_values(mdp, step_rewards, kind=kind)
        if initial_states is None:
            logits0 = mdp.initial.log()
            if kind == "global":
                logits0 = logits0 + values[0]
            state = _categorical(logits0.expand(num_samples, -1), generator)
        else:
            state = torch.as_tensor(initial_states, dtype=torch.int64, device=mdp.device)
            if state.shape != (num_samples,):
                raise ValueError(
                    f"initial_states must have shape ({num_samples},); got {tuple(state.shape)}"
                )
        states, actions = [state], []
        for t in range(mdp.horizon):
            q = step_q_values(mdp, step_rewards, values[t + 1], kind=kind)  # (S, A)
            action = _categorical(q[state], generator)
            succ_logits = mdp.successor_log_probs[state, action]  # (n, F)
            succ = mdp.successors[state, action]
            if kind == "global":
                succ_logits = succ_logits + values[t + 1][succ]
            choice = _categorical(succ_logits, generator)
            state = succ.gather(-1, choice.unsqueeze(-1)).squeeze(-1)
            states.append(state)
            actions.append(action)
        actions.append(torch.full_like(state, -1))
        return torch.stack([torch.stack(states, -1), torch.stack(actions, -1)], dim=-1)
