r"""Exact evaluation and planning for tabular policies: occupancy, return, optimal policies, regret.

A (possibly time-dependent) tabular policy is a tensor of action probabilities
``policy[..., t, s, a] = pi_t(a | s)`` of shape (..., T, S, A); a stationary policy of
shape (..., S, A) is broadcast over the T steps. Everything here is exact (no sampling)
and follows the time-indexing convention of :class:`bayes_irl.TabularMDP`: the step
reward r(s_t, a_t) is earned at t = 0..T-1 and the final state earns nothing.

Forward recursion (the state-action occupancy measure, "visitation frequencies"):

    d_0(s) = p0(s),   d_t(s, a) = d_t(s) pi_t(a | s),
    d_{t+1}(s') = sum_{s, a} d_t(s, a) p(s' | s, a),

and the expected return of pi under a reward r is linear in r and in d:

    J(pi; r) = E_pi[ sum_{t<T} r(s_t, a_t) ] = sum_t sum_{s, a} d_t(s, a) r(s, a).

Backward recursions (Bellman 1957; for the soft one Ziebart et al. 2010, eqs. 6.5-6.6):

    hard:  Q_t(s, a) = r(s, a) + sum_{s'} p(s' | s, a) V_{t+1}(s'),   V_t(s) = max_a Q_t(s, a),
    soft:  the maximum-causal-entropy recursion of :mod:`bayes_irl.soft_bellman` on r / tau,

with V_T = 0. The hard-optimal policy (argmax of Q_t, ties to the lowest action index)
maximises J over all policies, stochastic and history-dependent ones included; its value
is ``optimal_value = sum_s p0(s) V_0(s)`` and the regret of pi under r is
``optimal_value(r) - J(pi; r) >= 0``. Actions whose base measure is zero
(``mdp.action_log_base == -inf``, e.g. tokens with pi_ref = 0) are never chosen by the
planners and must carry no probability in a policy that is evaluated.

Every function accepts any leading batch dimensions of the rewards (e.g. posterior
draws, shape (N, S, A)), so one call evaluates a policy under every draw. Gradients flow
through :func:`state_action_occupancy` and :func:`expected_return` to the policy, which
is what :mod:`bayes_irl.inference.decisions` uses to optimise risk-averse objectives.

Cost: O(T · S · A · F) per recursion for fan-out F and every batch element.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from bayes_irl.mdp import TabularMDP
from bayes_irl.soft_bellman import (
    MaxEntKind,
    categorical,
    check_step_rewards,
    continuation,
    soft_values,
)

__all__ = [
    "PlanningResult",
    "check_policy",
    "state_action_occupancy",
    "expected_return",
    "hitting_probability",
    "hard_optimal_policy",
    "soft_optimal_policy",
    "optimal_value",
    "regret",
    "sample_trajectories",
]

_PROB_ATOL = 1e-6


class PlanningResult(NamedTuple):
    """A policy from a backward recursion, with its value tables.

    Attributes:
        policy: action probabilities ``pi[..., t, s, a]``, shape (..., T, S, A).
        q_values: ``Q[..., t, s, a]``, shape (..., T, S, A) (``-inf`` for actions with
            zero base measure in the hard recursion).
        values: ``V[..., t, s]``, shape (..., T + 1, S), ``V[..., T, :] = 0``.
    """

    policy: torch.Tensor
    q_values: torch.Tensor
    values: torch.Tensor


def _allowed_actions(mdp: TabularMDP) -> torch.Tensor:
    """Bool (S, A): actions with positive base measure."""
    return torch.isfinite(mdp.action_log_base)


def check_policy(mdp: TabularMDP, policy: torch.Tensor) -> torch.Tensor:
    """Validate a policy and return it with an explicit time axis.

    Args:
        mdp: the MDP.
        policy: ``pi[..., t, s, a]`` of shape (..., T, S, A), or a stationary ``pi[s, a]``
            of shape (S, A) (broadcast over the T steps). Rows must be probability
            vectors with no mass on actions of zero base measure.

    Returns:
        The policy of shape (..., T, S, A) in the MDP's dtype and device.

    Raises:
        ValueError: for a non-tensor, a wrong shape, NaN/inf, negative entries, rows that
            do not sum to one, or mass on forbidden actions.
    """
    if not torch.is_tensor(policy):
        raise ValueError(f"policy must be a torch.Tensor; got {type(policy).__name__}")
    sa = (mdp.num_states, mdp.num_actions)
    if policy.dim() < 2 or tuple(policy.shape[-2:]) != sa:
        raise ValueError(
            f"policy must have shape (T, S, A) = ({mdp.horizon}, {sa[0]}, {sa[1]}) or "
            f"(S, A); got {tuple(policy.shape)}"
        )
    policy = policy.to(dtype=mdp.dtype, device=mdp.device)
    if policy.dim() == 2:
        policy = policy.expand(mdp.horizon, *sa)
    elif policy.shape[-3] != mdp.horizon:
        raise ValueError(
            f"policy must have T = {mdp.horizon} steps on dim -3; got {tuple(policy.shape)}"
        )
    if not bool(torch.isfinite(policy).all()):
        raise ValueError("policy must be finite (found NaN or inf)")
    if bool((policy < 0).any()):
        raise ValueError(f"policy must be non-negative; min is {policy.min().item():.4g}")
    sums = policy.sum(-1)
    worst = (sums - 1).abs().max().item()
    if worst > _PROB_ATOL:
        raise ValueError(f"policy rows must sum to 1 over actions; worst row is off by {worst:.3g}")
    forbidden = policy.masked_fill(_allowed_actions(mdp), 0.0)
    if bool((forbidden > _PROB_ATOL).any()):
        raise ValueError(
            "policy puts mass on actions with zero base measure (mdp.action_log_base = -inf)"
        )
    return policy


def _initial(mdp: TabularMDP, initial: torch.Tensor | None) -> torch.Tensor:
    if initial is None:
        return mdp.initial
    init = torch.as_tensor(initial, dtype=mdp.dtype, device=mdp.device)
    if init.shape != (mdp.num_states,):
        raise ValueError(f"initial must have shape ({mdp.num_states},); got {tuple(init.shape)}")
    if not bool(torch.isfinite(init).all()) or bool((init < 0).any()):
        raise ValueError("initial must be a finite, non-negative probability vector")
    if abs(init.sum().item() - 1) > _PROB_ATOL:
        raise ValueError(f"initial must sum to 1; sums to {init.sum().item():.6f}")
    return init


def _propagate(mdp: TabularMDP, flow: torch.Tensor) -> torch.Tensor:
    """Map state-action mass ``flow[b, s, a]`` to next-state mass ``[b, s']``."""
    probs = mdp.successor_log_probs.exp()  # (S, A, F), 0 for padding
    moved = (flow.unsqueeze(-1) * probs).reshape(flow.shape[0], -1)
    out = flow.new_zeros(flow.shape[0], mdp.num_states)
    return out.index_add(1, mdp.successors.reshape(-1), moved)


def state_action_occupancy(
    mdp: TabularMDP, policy: torch.Tensor, *, initial: torch.Tensor | None = None
) -> torch.Tensor:
    """Return the occupancy measure ``d[..., t, s, a] = P_pi(s_t = s, a_t = a)``.

    Args:
        mdp: the MDP (dynamics and horizon T).
        policy: ``pi[..., t, s, a]`` of shape (..., T, S, A) or (S, A) (see
            :func:`check_policy`).
        initial: optional start distribution p0 of shape (S,) (default ``mdp.initial``).

    Returns:
        Shape (..., T, S, A); each ``d[..., t]`` sums to one. Differentiable in the policy.
    """
    policy = check_policy(mdp, policy)
    init = _initial(mdp, initial)
    batch = policy.shape[:-3]
    flat = policy.reshape(-1, mdp.horizon, mdp.num_states, mdp.num_actions)
    state = init.expand(flat.shape[0], -1)
    steps = []
    for t in range(mdp.horizon):
        joint = state.unsqueeze(-1) * flat[:, t]
        steps.append(joint)
        state = _propagate(mdp, joint)
    return torch.stack(steps, 1).reshape(*batch, mdp.horizon, mdp.num_states, mdp.num_actions)


def expected_return(
    mdp: TabularMDP,
    policy: torch.Tensor,
    step_rewards: torch.Tensor,
    *,
    initial: torch.Tensor | None = None,
) -> torch.Tensor:
    """Return the exact expected return ``J(pi; r) = sum_t sum_{s,a} d_t(s, a) r(s, a)``.

    Args:
        mdp: the MDP.
        policy: ``pi[..., t, s, a]``, shape ``policy_batch + (T, S, A)`` or (S, A).
        step_rewards: ``r[..., s, a]``, shape ``reward_batch + (S, A)`` (e.g. posterior
            draws (N, S, A)).
        initial: optional start distribution (S,).

    Returns:
        Shape ``broadcast(policy_batch, reward_batch)``. Differentiable in both.

    Raises:
        ValueError: for a malformed policy, rewards or start distribution.
    """
    check_step_rewards(mdp, step_rewards)
    occupancy = state_action_occupancy(mdp, policy, initial=initial).sum(-3)  # (..., S, A)
    rewards = step_rewards.to(occupancy.dtype)
    # actions of zero base measure carry no mass; keep a -inf reward there from making NaN
    rewards = torch.where(occupancy > 0, rewards, rewards.new_zeros(()))
    return (occupancy * rewards).sum((-2, -1))


def hitting_probability(
    mdp: TabularMDP,
    policy: torch.Tensor,
    states: torch.Tensor,
    *,
    initial: torch.Tensor | None = None,
) -> torch.Tensor:
    """Return the probability that a trajectory of pi visits ``states`` at any t = 0..T.

    Exact, by the forward recursion with the visited mass removed (absorbed) on arrival.

    Args:
        mdp: the MDP.
        policy: shape ``batch + (T, S, A)`` or (S, A).
        states: bool mask of shape (S,) (e.g. the lava cells).
        initial: optional start distribution (S,).

    Returns:
        Shape ``batch``, in [0, 1].
    """
    policy = check_policy(mdp, policy)
    mask = torch.as_tensor(states, device=mdp.device)
    if mask.dtype != torch.bool or mask.shape != (mdp.num_states,):
        raise ValueError(f"states must be a bool mask of shape ({mdp.num_states},)")
    init = _initial(mdp, initial)
    batch = policy.shape[:-3]
    flat = policy.reshape(-1, mdp.horizon, mdp.num_states, mdp.num_actions)
    state = init.expand(flat.shape[0], -1)
    hit = state.new_zeros(flat.shape[0])
    for t in range(mdp.horizon + 1):
        hit = hit + state[:, mask].sum(-1)
        state = state.masked_fill(mask, 0.0)
        if t < mdp.horizon:
            state = _propagate(mdp, state.unsqueeze(-1) * flat[:, t])
    return hit.reshape(batch)


def hard_optimal_policy(mdp: TabularMDP, step_rewards: torch.Tensor) -> PlanningResult:
    """Return the optimal (deterministic, time-dependent) policy by backward recursion.

    ``Q_t(s, a) = r(s, a) + sum_{s'} p(s' | s, a) V_{t+1}(s')``, ``V_t = max_a Q_t``; the
    policy is one-hot on the first maximising action. Actions with zero base measure get
    ``Q = -inf``.

    Args:
        mdp: the MDP.
        step_rewards: ``r[..., s, a]``, shape (..., S, A) (any batch, e.g. posterior draws).

    Returns:
        A :class:`PlanningResult` with policy and Q of shape (..., T, S, A) and V of shape
        (..., T + 1, S).

    Raises:
        ValueError: for mis-shaped or non-finite rewards.
    """
    check_step_rewards(mdp, step_rewards)
    allowed = _allowed_actions(mdp)
    rewards = step_rewards.to(mdp.dtype).masked_fill(~allowed, 0.0)
    if not bool(torch.isfinite(rewards).all()):
        raise ValueError("step_rewards must be finite on the allowed actions")
    value = rewards.new_zeros(rewards.shape[:-1])
    values, qs = [value], []
    for _ in range(mdp.horizon):
        q = rewards + continuation(mdp, value, kind="causal")
        q = q.masked_fill(~allowed, -torch.inf)
        value = q.amax(-1)
        values.append(value)
        qs.append(q)
    q_values = torch.stack(qs[::-1], -3)
    best = q_values.argmax(-1)
    policy = torch.nn.functional.one_hot(best, mdp.num_actions).to(rewards.dtype)
    return PlanningResult(policy, q_values, torch.stack(values[::-1], -2))


def soft_optimal_policy(
    mdp: TabularMDP,
    step_rewards: torch.Tensor,
    *,
    temperature: float = 1.0,
    kind: MaxEntKind = "causal",
) -> PlanningResult:
    """Return the soft-optimal (maximum-entropy) policy of ``r / temperature``.

    ``pi_t(a | s) = exp((Q_t(s, a) - V_t(s)) / tau)`` from the recursion of
    :func:`bayes_irl.soft_bellman.soft_values` on ``r / tau``; the action base measure
    of the MDP enters as in that module (with ``log pi_ref`` it is the KL-regularised
    RLHF policy with KL weight tau). ``kind="causal"`` (default) is the policy of an
    agent that controls only its actions; with deterministic dynamics the two kinds agree.
    As tau -> 0 it tends to the hard-optimal policy (uniform over tied maximisers).

    Args:
        mdp: the MDP.
        step_rewards: ``r[..., s, a]``, shape (..., S, A).
        temperature: tau > 0.
        kind: ``"causal"`` or ``"global"``.

    Returns:
        A :class:`PlanningResult`; Q and V are in reward units (the recursion's tables
        multiplied by tau).

    Raises:
        ValueError: for a non-positive temperature or mis-shaped rewards.
    """
    tau = float(temperature)
    if not (tau > 0 and tau < float("inf")):
        raise ValueError(f"temperature must be a finite float > 0; got {temperature!r}")
    check_step_rewards(mdp, step_rewards)
    scaled = step_rewards.to(mdp.dtype) / tau
    values = soft_values(mdp, scaled, kind=kind)
    q = scaled.unsqueeze(-3) + mdp.action_log_base + continuation(
        mdp, values[..., 1:, :], kind=kind
    )
    log_policy = q - values[..., :-1, :].unsqueeze(-1)
    return PlanningResult(log_policy.exp(), tau * q, tau * values)


def optimal_value(
    mdp: TabularMDP, step_rewards: torch.Tensor, *, initial: torch.Tensor | None = None
) -> torch.Tensor:
    """Return ``max_pi J(pi; r) = sum_s p0(s) V*_0(s)`` for each reward, shape (...,)."""
    values = hard_optimal_policy(mdp, step_rewards).values[..., 0, :]
    return (values * _initial(mdp, initial)).sum(-1)


def regret(
    mdp: TabularMDP,
    policy: torch.Tensor,
    step_rewards: torch.Tensor,
    *,
    initial: torch.Tensor | None = None,
) -> torch.Tensor:
    """Return the regret ``max_pi' J(pi'; r) - J(pi; r) >= 0`` of ``policy`` under each reward.

    Args:
        mdp: the MDP.
        policy: shape ``policy_batch + (T, S, A)`` or (S, A).
        step_rewards: shape ``reward_batch + (S, A)``.
        initial: optional start distribution (S,).

    Returns:
        Shape ``broadcast(policy_batch, reward_batch)``.
    """
    best = optimal_value(mdp, step_rewards, initial=initial)
    return best - expected_return(mdp, policy, step_rewards, initial=initial)


def sample_trajectories(
    mdp: TabularMDP,
    policy: torch.Tensor,
    num_samples: int,
    *,
    generator: torch.Generator | None = None,
    initial: torch.Tensor | None = None,
) -> torch.Tensor:
    """Roll out ``num_samples`` episodes of ``policy`` under the MDP's (untilted) dynamics.

    Args:
        mdp: the MDP.
        policy: ``pi[t, s, a]`` (T, S, A) or (S, A).
        num_samples: n >= 1.
        generator: torch generator for reproducibility.
        initial: optional start distribution (S,).

    Returns:
        int64 trajectories (n, T + 1, 2) in the encoding of :mod:`bayes_irl.trajectories`.
    """
    policy = check_policy(mdp, policy)
    if policy.dim() != 3:
        raise ValueError(
            f"policy must have shape (T, S, A) for sampling; got {tuple(policy.shape)}"
        )
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be >= 1; got {num_samples}")
    init = _initial(mdp, initial)
    with torch.no_grad():
        state = torch.multinomial(init, int(num_samples), replacement=True, generator=generator)
        states, actions = [state], []
        for t in range(mdp.horizon):
            action = torch.multinomial(policy[t, state], 1, generator=generator).squeeze(-1)
            choice = categorical(mdp.successor_log_probs[state, action], generator)
            state = mdp.successors[state, action].gather(-1, choice.unsqueeze(-1)).squeeze(-1)
            states.append(state)
            actions.append(action)
        actions.append(torch.full_like(state, -1))
        return torch.stack([torch.stack(states, -1), torch.stack(actions, -1)], dim=-1)
