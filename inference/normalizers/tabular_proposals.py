r"""Tabular importance proposals: a guide policy through the true dynamics, or twisted.

The proposals q over full-length trajectories of a :class:`bayes_irl.mdp.TabularMDP` used
by :class:`bayes_irl.inference.normalizers.importance.ImportanceNormalizer` and
:class:`bayes_irl.inference.normalizers.smc.SMCNormalizer` (all :class:`torch.nn.Module`,
trained by :class:`bayes_irl.inference.guide_policy_training.GuidePolicyTrainer`). Every method
returns ``log b - log q`` pieces, b the base measure:

* :class:`PolicyProposal`: q(x) = p0(s_0) prod_t pi_t(a_t | s_t) p(s_{t+1} | s_t, a_t) with
  a :class:`bayes_irl.policies.TabularPolicy`, driven by the true dynamics or a black-box
  simulator. Dynamics and p0 cancel: log b - log q = sum_t [log beta - log pi_t].
  With stochastic dynamics it cannot represent the global maxent distribution, which tilts
  the transitions, P(s' | s, a, t) ∝ p(s' | s, a) exp V_{t+1}(s') (see
  :mod:`bayes_irl.soft_bellman`); its best reverse-KL fit is the maximum *causal*
  entropy policy (:meth:`PolicyProposal.soft_backup_`).
* :class:`TwistedProposal` (known dynamics): transitions and the initial state are twisted
  by learnable potentials psi[t, s] (shape (T + 1, S)),

      q_t(s' | s, a) = p(s' | s, a) exp psi_{t+1}(s') / exp C_t(s, a),
      C_t(s, a) = log sum_{s'} p(s' | s, a) exp psi_{t+1}(s'),
      q_0(s) = p0(s) exp psi_0(s) / sum_s p0(s) exp psi_0(s),

  so log b - log q = [log sum p0 exp psi_0 - psi_0(s_0)]
  + sum_t [log beta - log pi_t + C_t(s_t, a_t) - psi_{t+1}(s_{t+1})]. With psi = V (the
  global soft values) and pi_t = exp(Q_t - V_t) every log-weight equals log Z: the family
  contains the maxent distribution exactly (:meth:`TwistedProposal.soft_backup_`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from bayes_irl.mdp import TabularMDP
from bayes_irl.policies import TabularPolicy
from bayes_irl.soft_bellman import categorical, soft_policy, soft_values
from bayes_irl.soft_bellman import check_step_rewards as check_shape
from bayes_irl.validation import positive_int

__all__ = [
    "PolicyProposal",
    "Proposal",
    "Simulator",
    "TwistedProposal",
    "check_step_rewards",
]

Simulator = Callable[[int, torch.Tensor, torch.Tensor, "torch.Generator | None"], torch.Tensor]
"""``simulator(t, states, actions, generator) -> next_states``, int tensors of shape (n,)."""


def check_step_rewards(mdp: TabularMDP, step_rewards) -> torch.Tensor:
    """Validate ``step_rewards`` (shape (..., S, A), no NaN) and return it.

    Raises:
        ValueError: naming ``step_rewards`` and the expected shape, or reporting NaN.
    """
    check_shape(mdp, step_rewards)
    if torch.isnan(step_rewards).any():
        raise ValueError("step_rewards contains NaN; check the reward model's parameters")
    return step_rewards


class Proposal(nn.Module):
    """Base class of tabular proposals q over full-length trajectories of an MDP.

    A proposal generates trajectories step by step (so SMC can use it as its kernel) and
    scores them: every method returns ``log b - log q`` pieces, never q alone, so that
    simulator-driven proposals need no transition probabilities. It implements
    :class:`bayes_irl.protocols.GuidePolicy` (:meth:`draw`, :meth:`log_prob`,
    ``parameters``) on the space ``mdp``.

    Subclasses implement :meth:`initial`, :meth:`step`, :meth:`log_ratio` and
    :meth:`soft_backup_`.
    """

    mdp: TabularMDP

    @property
    def space(self) -> TabularMDP:
        """The trajectory space (the MDP)."""
        return self.mdp

    def initial(
        self, num: int, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw s_0 for ``num`` particles.

        Returns:
            ``(states, log_w)``, both of shape (num,): the states and
            ``log p0(s_0) - log q_0(s_0)``.
        """
        raise NotImplementedError

    def step(
        self, t: int, states: torch.Tensor, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw (a_t, s_{t+1}) given s_t (shape (n,)).

        Returns:
            ``(actions, next_states, log_w)``, each of shape (n,), with
            ``log_w = log beta(a|s) + log p(s'|s,a) - log q_t(a, s' | s)``.
        """
        raise NotImplementedError

    def log_ratio(self, value: torch.Tensor) -> torch.Tensor:
        """Return ``log b(x) - log q(x)`` of full trajectories (K, T + 1, 2); shape (K,).

        Differentiable in the proposal's parameters.
        """
        raise NotImplementedError

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``log q(x)`` up to the parameter-free ``log b(x)``: ``-log_ratio``, shape (K,)."""
        return -self.log_ratio(value)

    def soft_backup_(self, step_rewards: torch.Tensor) -> Proposal:
        """Set the parameters to the exact reverse-KL optimum for ``step_rewards`` (S, A)."""
        raise NotImplementedError

    # Exact ELBO: q's initial distribution, transitions and the theta-free extra terms of
    # log w (zero for a policy proposal, the twist terms for a twisted one).
    def _initial_log_probs(self) -> torch.Tensor:
        """``log q_0(s)``, shape (S,)."""
        return self.mdp.initial.log()

    def _transition_log_probs(self, t: int) -> torch.Tensor:
        """``log q_t(successors[s, a, f] | s, a)``, shape (S, A, F)."""
        return self.mdp.successor_log_probs

    def _head(self, q0: torch.Tensor) -> torch.Tensor:
        """``E_{q_0}[log p0(s_0) - log q_0(s_0)]`` (scalar)."""
        return q0.new_zeros(())

    def _extra(self, t: int, log_q: torch.Tensor) -> torch.Tensor | None:
        """``E_{q_t}[log p - log q_t](s, a)`` of the transition, shape (S, A), or None (0)."""
        return None

    def elbo(self, step_rewards: torch.Tensor) -> torch.Tensor:
        """Exact ``E_q[log w] = log Z - KL(q || P)`` by a forward pass over q's marginals.

        Differentiable in the proposal's parameters: the reverse-KL objective without
        sampling noise (used by :class:`~bayes_irl.inference.GuidePolicyTrainer`).
        O(T S A F) time, like one soft-Bellman recursion.

        Args:
            step_rewards: ``r[s, a]``, shape (S, A) (detached inside).

        Returns:
            A scalar tensor.

        Raises:
            ValueError: for a proposal driven by a simulator (q's transitions unknown).
        """
        if getattr(self, "simulator", None) is not None:
            raise ValueError("elbo() needs the MDP's transitions; this proposal uses a simulator")
        mdp = self.mdp
        r = check_step_rewards(mdp, step_rewards).detach()
        if r.dim() != 2:
            raise ValueError(f"step_rewards must have shape (S, A); got {tuple(r.shape)}")
        local = r + mdp.action_log_base.to(r.dtype)  # (S, A)
        log_q0 = self._initial_log_probs()
        d = log_q0.exp()
        total = self._head(d)
        log_pi = self.policy.log_probs()  # (T, S, A)
        flat_succ = mdp.successors.reshape(-1)
        for t in range(mdp.horizon):
            weight = d.unsqueeze(-1) * log_pi[t].exp()  # (S, A): q(s_t = s, a_t = a)
            value = local - log_pi[t]
            log_q = self._transition_log_probs(t)  # (S, A, F)
            extra = self._extra(t, log_q)
            if extra is not None:
                value = value + extra
            positive = weight > 0
            total = total + (weight * torch.where(positive, value, torch.zeros_like(value))).sum()
            flow = (weight.unsqueeze(-1) * log_q.exp()).reshape(-1)
            d = torch.zeros_like(d).index_add(0, flat_succ, flow)
        return total

    def draw(
        self, num_samples: int, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``num_samples`` trajectories.

        Returns:
            ``(value, log_ratio)``: int64 (K, T + 1, 2) (last action -1) and
            ``log b - log q`` of shape (K,) (detached).
        """
        num = positive_int(num_samples, "num_samples")
        if getattr(self, "simulator", None) is None:
            return self._draw_from_tables(num, generator)
        with torch.no_grad():
            state, log_w = self.initial(num, generator=generator)
            states, actions = [state], []
            for t in range(self.mdp.horizon):
                action, state, lw = self.step(t, state, generator=generator)
                log_w = log_w + lw
                states.append(state)
                actions.append(action)
            actions.append(torch.full_like(state, -1))
            value = torch.stack([torch.stack(states, -1), torch.stack(actions, -1)], dim=-1)
        return value, log_w

    def _draw_from_tables(
        self, num: int, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`draw` by inverse-CDF lookups in q's tables (known dynamics).

        q's initial, policy and transition log-probabilities are computed once per call
        (shapes (S,), (T, S, A), (T, S, A, F)); each step draws by one ``searchsorted`` of
        ``row + u`` in the row-offset cumulative table (u uniform in [0, 1)), and the
        log-ratio accumulates from the same tables:

            log b - log q = log p0(s_0) - log q_0(s_0)
                + sum_t [log beta(a_t|s_t) - log pi_t(a_t|s_t)
                         + log p(f_t|s_t, a_t) - log q_t(f_t|s_t, a_t)].

        About 10x faster than a softmax and ``torch.multinomial`` over the K gathered rows
        at every step, which made drawing a K = 4000 bank 45 ms of an 80 ms SVI step (5x5
        gridworld, T = 10). Equal to :meth:`log_ratio` of the drawn trajectories (tested).
        """
        mdp = self.mdp
        horizon, num_states, num_actions = mdp.horizon, mdp.num_states, mdp.num_actions
        fan_out = mdp.successors.shape[-1]
        with torch.no_grad():
            log_q0 = self._initial_log_probs()  # (S,)
            log_pi = self.policy.log_probs()  # (T, S, A)
            log_qt = torch.stack(
                [self._transition_log_probs(t) for t in range(horizon)])  # (T, S, A, F)
            # theta-free log b - log q of each choice, flattened for one gather per step
            head = mdp.initial.log() - log_q0  # (S,)
            action_ratio = (mdp.action_log_base - log_pi).reshape(horizon, -1)  # (T, S*A)
            move_ratio = (mdp.successor_log_probs - log_qt).reshape(horizon, -1)
            initial = _offset_cdf(log_q0.unsqueeze(0)).reshape(-1)  # (S,)
            policy = _offset_cdf(log_pi).reshape(horizon, -1)  # (T, S*A)
            moves = _offset_cdf(log_qt.reshape(horizon, num_states * num_actions, fan_out))
            moves = moves.reshape(horizon, -1)  # (T, S*A*F)
            uniforms = torch.rand(
                (2 * horizon + 1, num), generator=generator, dtype=torch.float64,
                device=initial.device,
            )
            state = _search(initial, uniforms[0], num_states)
            log_ratio = head[state]
            states, actions = [state], []
            for t in range(horizon):
                # the row of the policy table is the state, of the move table the (s, a) cell
                cell = _search(policy[t], state + uniforms[2 * t + 1], (state + 1) * num_actions)
                action = cell - state * num_actions
                choice_at = _search(moves[t], cell + uniforms[2 * t + 2], (cell + 1) * fan_out)
                log_ratio = log_ratio + action_ratio[t, cell] + move_ratio[t, choice_at]
                state = mdp.successors.reshape(-1)[choice_at]
                states.append(state)
                actions.append(action)
            actions.append(torch.full_like(state, -1))
            value = torch.stack([torch.stack(states, -1), torch.stack(actions, -1)], dim=-1)
        return value, log_ratio


def _offset_cdf(log_probs: torch.Tensor) -> torch.Tensor:
    """Row r's cumulative probabilities plus r, shape of ``log_probs`` (..., R, C).

    Each row's last entry is exactly r + 1, so the rows concatenated are one sorted
    array, and the index of ``r + u`` (u in [0, 1)) in it is a draw from row r.
    """
    cdf = torch.cumsum(log_probs.double().exp(), dim=-1)  # float64: r + u must resolve u
    cdf = cdf / cdf[..., -1:]
    rows = torch.arange(cdf.shape[-2], dtype=cdf.dtype, device=cdf.device)
    return cdf + rows.unsqueeze(-1)


def _search(table: torch.Tensor, points: torch.Tensor, row_end: int | torch.Tensor) -> torch.Tensor:
    """Flat index of each point ``r + u`` in the sorted offset table (see :func:`_offset_cdf`).

    ``#{entries <= r + u}`` skips zero-probability entries (equal to their left
    neighbour); clamping to the row's last index guards the rounding of r + u near r + 1.
    """
    index = torch.searchsorted(table, points, right=True)
    return torch.minimum(index, torch.as_tensor(row_end) - 1)


def _split(trajectories: torch.Tensor, horizon: int):
    if trajectories.dim() != 3 or trajectories.shape[-2:] != (horizon + 1, 2):
        raise ValueError(
            f"trajectories must have shape (K, T + 1, 2) = (K, {horizon + 1}, 2); got "
            f"{tuple(trajectories.shape)}"
        )
    if (trajectories[:, :-1, 1] < 0).any():
        raise ValueError("trajectories must be full length (no -1 actions before step T)")
    return trajectories[:, :-1, 0], trajectories[:, :-1, 1], trajectories[:, 1:, 0]


def _checked_policy(mdp: TabularMDP, policy: TabularPolicy | None) -> TabularPolicy:
    policy = TabularPolicy.for_mdp(mdp) if policy is None else policy
    if not isinstance(policy, TabularPolicy):
        raise ValueError(f"policy must be a TabularPolicy; got {type(policy).__name__}")
    expected = (mdp.horizon, mdp.num_states, mdp.num_actions)
    if tuple(policy.logits.shape) != expected:
        raise ValueError(
            f"policy logits must have shape (T, S, A) = {expected}; got "
            f"{tuple(policy.logits.shape)}"
        )
    return policy


class PolicyProposal(Proposal):
    """Guide policy through the true dynamics (or a simulator): q = p0 prod pi_t p.

    Args:
        mdp: the MDP (base measure: p0, beta and, without a simulator, p).
        policy: a :class:`TabularPolicy` of shape (T, S, A); default uniform.
        simulator: optional ``simulator(t, states, actions, generator) -> next_states``
            replacing sampling from ``mdp``'s transitions (the log-weights never use p).

    Example:
        >>> from bayes_irl import GridWorld
        >>> world = GridWorld.create(size=3, horizon=4, seed=0)
        >>> x, lr = PolicyProposal(world.mdp).draw(8, generator=torch.Generator().manual_seed(0))
        >>> x.shape, lr.shape
        (torch.Size([8, 5, 2]), torch.Size([8]))
    """

    def __init__(
        self,
        mdp: TabularMDP,
        policy: TabularPolicy | None = None,
        *,
        simulator: Simulator | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(mdp, TabularMDP):
            raise ValueError(f"mdp must be a TabularMDP; got {type(mdp).__name__}")
        policy = _checked_policy(mdp, policy)
        if simulator is not None and not callable(simulator):
            raise ValueError(f"simulator must be callable; got {type(simulator).__name__}")
        self.mdp = mdp
        self.policy = policy
        self.simulator = simulator

    def initial(self, num, *, generator=None):  # noqa: D102
        state = torch.multinomial(self.mdp.initial, num, replacement=True, generator=generator)
        return state, torch.zeros(num, dtype=self.mdp.dtype, device=self.mdp.device)

    def step(self, t, states, *, generator=None):  # noqa: D102
        mdp = self.mdp
        log_pi = self.policy.log_probs()[t]  # (S, A)
        action = categorical(log_pi[states], generator)
        if self.simulator is None:
            choice = categorical(mdp.successor_log_probs[states, action], generator)
            succ = mdp.successors[states, action].gather(-1, choice.unsqueeze(-1)).squeeze(-1)
        else:
            succ = torch.as_tensor(self.simulator(t, states, action, generator))
            if succ.shape != states.shape:
                raise ValueError(
                    f"simulator must return next states of shape {tuple(states.shape)}; got "
                    f"{tuple(succ.shape)}"
                )
        log_w = mdp.action_log_base[states, action] - log_pi[states, action]
        return action, succ, log_w

    def log_ratio(self, value):  # noqa: D102
        s, a, _ = _split(value, self.mdp.horizon)
        base = self.mdp.action_log_base[s, a].sum(-1)
        return base - self.policy.log_prob(s, a)

    def soft_backup_(self, step_rewards):
        """Set pi to the maximum causal entropy policy of ``step_rewards`` (S, A).

        This is the reverse-KL optimum over policies driving the true dynamics:
        argmax_pi E_q[R + log b - log q] (Ziebart et al. 2010). Returns ``self``.
        """
        step_rewards = check_step_rewards(self.mdp, step_rewards).detach()
        with torch.no_grad():
            self.policy.logits.copy_(soft_policy(self.mdp, step_rewards, kind="causal"))
        return self


class TwistedProposal(Proposal):
    """Guide policy plus learnable twists psi[t, s] of the known transitions and of p0.

    See the module docstring for q and its log-weight. With ``psi = V`` and
    ``pi_t = exp(Q_t - V_t)`` (:meth:`soft_backup_`) it *is* the global maxent distribution.

    Args:
        mdp: the MDP with known transitions.
        policy: a :class:`TabularPolicy` (T, S, A); default uniform.
        twist: initial psi of shape (T + 1, S); default zeros (q = the policy proposal).
            ``psi[T]`` twists the last transition (its exact value is V_T = 0).

    Attributes:
        twist: ``nn.Parameter`` psi[t, s], shape (T + 1, S).
    """

    def __init__(
        self,
        mdp: TabularMDP,
        policy: TabularPolicy | None = None,
        *,
        twist: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(mdp, TabularMDP):
            raise ValueError(f"mdp must be a TabularMDP; got {type(mdp).__name__}")
        policy = _checked_policy(mdp, policy)
        shape = (mdp.horizon + 1, mdp.num_states)
        if twist is None:
            psi = torch.zeros(shape, dtype=mdp.dtype, device=mdp.device)
        else:
            psi = torch.as_tensor(twist).detach().to(mdp.device, mdp.dtype).clone()
            if psi.shape != shape:
                raise ValueError(
                    f"twist must have shape (T + 1, S) = {shape}; got {tuple(psi.shape)}"
                )
            if not torch.isfinite(psi).all():
                raise ValueError("twist must be finite")
        self.mdp = mdp
        self.policy = policy
        self.twist = nn.Parameter(psi)

    def _initial_logits(self) -> torch.Tensor:
        return self.mdp.initial.log() + self.twist[0]  # (S,)

    def _transition_logits(self, t: int) -> torch.Tensor:
        """Unnormalised log q_t over fan-out entries, shape (S, A, F)."""
        return self.mdp.successor_log_probs + self.twist[t + 1][self.mdp.successors]

    def _initial_log_probs(self) -> torch.Tensor:
        return torch.log_softmax(self._initial_logits(), -1)

    def _transition_log_probs(self, t: int) -> torch.Tensor:
        return torch.log_softmax(self._transition_logits(t), -1)

    def _head(self, q0: torch.Tensor) -> torch.Tensor:
        # E_{q0}[log sum_s p0 exp psi_0 - psi_0(s_0)]
        return torch.logsumexp(self._initial_logits(), -1) - (q0 * self.twist[0]).sum()

    def _extra(self, t: int, log_q: torch.Tensor) -> torch.Tensor:
        # E_{q_t}[C_t(s, a) - psi_{t+1}(s')], C_t = logsumexp of the transition logits
        psi = self.twist[t + 1][self.mdp.successors]  # (S, A, F)
        expected = (log_q.exp() * psi).sum(-1)
        return torch.logsumexp(self._transition_logits(t), -1) - expected

    def initial(self, num, *, generator=None):  # noqa: D102
        logits = self._initial_logits()
        state = categorical(logits.expand(num, -1), generator)
        log_w = torch.logsumexp(logits, -1) - self.twist[0][state]
        return state, log_w

    def step(self, t, states, *, generator=None):  # noqa: D102
        mdp = self.mdp
        log_pi = self.policy.log_probs()[t]
        action = categorical(log_pi[states], generator)
        logits = self._transition_logits(t)[states, action]  # (n, F)
        choice = categorical(logits, generator)
        succ = mdp.successors[states, action].gather(-1, choice.unsqueeze(-1)).squeeze(-1)
        log_c = torch.logsumexp(logits, -1)
        log_w = (
            mdp.action_log_base[states, action] - log_pi[states, action]
            + log_c - self.twist[t + 1][succ]
        )
        return action, succ, log_w

    def log_ratio(self, value):  # noqa: D102
        mdp = self.mdp
        s, a, s_next = _split(value, mdp.horizon)
        s0 = value[:, 0, 0]
        head = torch.logsumexp(self._initial_logits(), -1) - self.twist[0][s0]
        psi_next = self.twist[1:]  # (T, S)
        cont = torch.logsumexp(
            mdp.successor_log_probs + psi_next[:, mdp.successors], dim=-1
        )  # (T, S, A)
        steps = torch.arange(mdp.horizon, device=mdp.device).expand_as(s)
        per_step = (
            mdp.action_log_base[s, a]
            + cont[steps, s, a]
            - psi_next[steps, s_next]
        )
        return head + per_step.sum(-1) - self.policy.log_prob(s, a)

    def soft_backup_(self, step_rewards):
        """Set psi = V and pi_t = exp(Q_t - V_t) of the global model; returns ``self``."""
        step_rewards = check_step_rewards(self.mdp, step_rewards).detach()
        values = soft_values(self.mdp, step_rewards, kind="global")  # (T + 1, S)
        log_pi = soft_policy(self.mdp, step_rewards, kind="global", values=values)
        with torch.no_grad():
            self.twist.copy_(values)
            self.policy.logits.copy_(log_pi)
        return self

