r"""Importance-sampling normalisers: the guide policy as the proposal for log Z.

For a proposal q over trajectories x (the guide policy, :class:`bayes_irl.protocols.
GuidePolicy`) and K draws x_k ~ q (the *bank*, drawn once and reused for every theta until
:meth:`ImportanceNormalizer.refresh`):

    log w_k(theta) = R_theta(x_k) + log b(x_k) - log q(x_k)
    log Z_hat(theta) = logsumexp_k log w_k(theta) - log K.

``R_theta(x_k)`` is ``reward.returns(theta, *space.split(bank))`` and ``log b - log q`` the
proposal's ``log_ratio``. Z_hat is unbiased for Z; log Z_hat is biased low (Jensen). The
bank does not depend on theta, so autograd through log Z_hat gives exactly the
self-normalised gradient

    d log Z_hat / d theta = sum_k wbar_k dR_theta(x_k)/d theta,  wbar_k = w_k / sum_j w_j.

One normaliser, :class:`ImportanceNormalizer`, for every trajectory space; the proposals
(all :class:`torch.nn.Module`, trained by :class:`bayes_irl.inference.guide_training.
GuidePolicyTrainer`):

* :class:`PolicyProposal` (tabular): q(x) = p0(s_0) prod_t pi_t(a_t | s_t) p(s_{t+1} | s_t,
  a_t) with a :class:`bayes_irl.policies.TabularPolicy`, driven by the true dynamics or a
  black-box simulator. Dynamics and p0 cancel: log b - log q = sum_t [log beta - log pi_t].
  With stochastic dynamics it cannot represent the global maxent distribution, which tilts
  the transitions, P(s' | s, a, t) ∝ p(s' | s, a) exp V_{t+1}(s') (see
  :mod:`bayes_irl.soft_bellman`); its best reverse-KL fit is the maximum *causal*
  entropy policy (:meth:`PolicyProposal.soft_backup_`).
* :class:`TwistedProposal` (tabular, known dynamics): transitions and the initial state
  are twisted by learnable potentials psi[t, s] (shape (T + 1, S)),

      q_t(s' | s, a) = p(s' | s, a) exp psi_{t+1}(s') / exp C_t(s, a),
      C_t(s, a) = log sum_{s'} p(s' | s, a) exp psi_{t+1}(s'),
      q_0(s) = p0(s) exp psi_0(s) / sum_s p0(s) exp psi_0(s),

  so log b - log q = [log sum p0 exp psi_0 - psi_0(s_0)]
  + sum_t [log beta - log pi_t + C_t(s_t, a_t) - psi_{t+1}(s_{t+1})]. With psi = V (the
  global soft values) and pi_t = exp(Q_t - V_t) every log-weight equals log Z: the family
  contains the maxent distribution exactly (:meth:`TwistedProposal.soft_backup_`).
* :class:`~bayes_irl.inference.normalizers.simulator_proposal.SimulatorProposal`
  (continuous): a Gaussian policy run through a Gymnasium-style simulator; the dynamics
  cancel, log b - log q = -sum_t log pi_t(u_t | x_t).

Renames (one API for every proposal): ``SimulatorImportanceNormalizer(simulator, policy,
reward_fn)`` is ``ImportanceNormalizer(SimulatorProposal(simulator, policy))`` (the reward
is an argument of ``log_normalizer(reward, theta)``); ``ImportanceNormalizer(mdp,
proposal)`` is ``ImportanceNormalizer(proposal)`` (the space is ``proposal.space``);
``Proposal.sample`` is :meth:`Proposal.draw`, ``Proposal.log_correction`` is
:meth:`Proposal.log_ratio` (``log_prob = -log_ratio``); ``sample_trajectories`` and the
simulator's ``resample`` are :meth:`TrajectoryBankNormalizer.sample`; ``trajectory_returns``
is :func:`bayes_irl.trajectories.trajectory_returns`.

Normaliser interface (:class:`bayes_irl.protocols.Normalizer`): ``space`` (``mdp`` as
well for tabular proposals), ``is_exact = False``, ``log_normalizer(reward, theta)``,
``diagnostics``, ``sample(reward, theta, sample_shape)`` by sampling-importance-resampling
(used by :class:`bayes_irl.models.MaxEntTrajectory` when no exact sampler exists) and
``refresh()``. PSIS k-hat of the log-weights (Vehtari et al. 2024) above 0.7 triggers an
:class:`ImportanceWarning` (or an :class:`ImportanceSamplingError` with
``khat_policy="raise"``). The bank machinery (:class:`TrajectoryBankNormalizer`) is shared
with :class:`bayes_irl.inference.normalizers.smc.SMCNormalizer`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

from bayes_irl.inference.diagnostics import (
    KHAT_THRESHOLD,
    MODE_SHIFT_THRESHOLD,
    ImportanceDiagnostics,
    ImportanceWarning,
    importance_diagnostics,
    log_mean_exp,
)
from bayes_irl.mdp import TabularMDP
from bayes_irl.policies import TabularPolicy
from bayes_irl.protocols import GuidePolicy
from bayes_irl.soft_bellman import categorical, soft_policy, soft_values
from bayes_irl.soft_bellman import check_step_rewards as check_shape
from bayes_irl.validation import positive_int

__all__ = [
    "ImportanceNormalizer",
    "ImportanceSamplingError",
    "ImportanceWarning",
    "PolicyProposal",
    "Proposal",
    "TrajectoryBankNormalizer",
    "TwistedProposal",
    "check_step_rewards",
    "draw_returns",
]

KhatPolicy = Literal["warn", "raise", "ignore"]
_KHAT_POLICIES = ("warn", "raise", "ignore")

Simulator = Callable[[int, torch.Tensor, torch.Tensor, "torch.Generator | None"], torch.Tensor]
"""``simulator(t, states, actions, generator) -> next_states``, int tensors of shape (n,)."""


class ImportanceSamplingError(RuntimeError):
    """Raised instead of :class:`ImportanceWarning` when ``khat_policy="raise"``."""


# ---------------------------------------------------------------------------- helpers
def make_generator(
    generator: torch.Generator | None, seed: int | None, device: torch.device | str = "cpu"
) -> torch.Generator:
    """Return ``generator``, or a new one on ``device`` seeded with ``seed`` (default 0).

    Raises:
        ValueError: for a ``generator`` that is not a torch.Generator or a non-int ``seed``.
    """
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator; got {type(generator).__name__}")
        return generator
    seed = 0 if seed is None else positive_int(seed, "seed", minimum=0)
    return torch.Generator(device=device).manual_seed(seed)


def check_step_rewards(mdp: TabularMDP, step_rewards) -> torch.Tensor:
    """Validate ``step_rewards`` (shape (..., S, A), no NaN) and return it.

    Raises:
        ValueError: naming ``step_rewards`` and the expected shape, or reporting NaN.
    """
    check_shape(mdp, step_rewards)
    if torch.isnan(step_rewards).any():
        raise ValueError("step_rewards contains NaN; check the reward model's parameters")
    return step_rewards


def check_theta(reward: Any, theta: Any) -> torch.Tensor:
    """Validate ``theta`` (shape ``(..., D)`` with ``D = reward.num_params``, no NaN).

    Returns:
        ``theta`` as a tensor.

    Raises:
        ValueError: naming ``theta`` and the expected shape, or reporting NaN.
    """
    if not hasattr(reward, "returns"):
        raise ValueError(
            f"reward must be a reward model with .returns(theta, states, actions); got "
            f"{type(reward).__name__}"
        )
    theta = torch.as_tensor(theta)
    num = getattr(reward, "num_params", None)
    if theta.dim() < 1 or (num is not None and theta.shape[-1] != num):
        raise ValueError(
            f"theta must have shape (..., D) = (..., {num}); got {tuple(theta.shape)}"
        )
    if bool(torch.isnan(theta).any()):
        raise ValueError(f"theta contains NaN; got {theta.detach()}")
    return theta


def draw_returns(
    reward: Any, theta: torch.Tensor, states: torch.Tensor, actions: torch.Tensor
) -> torch.Tensor:
    """``R_theta(x_k)`` of K draws for every theta: shape ``theta.shape[:-1] + (K,)``.

    Args:
        reward: the reward model (``returns(theta, states, actions)``).
        theta: shape ``batch + (D,)``.
        states: the draws' states, ``(K, ...)`` as split by the space (continuous states
            are cast to theta's dtype).
        actions: the draws' actions, ``(K, ...)``.
    """
    if states.is_floating_point():
        states, actions = states.to(theta.dtype), actions.to(theta.dtype)
    return reward.returns(theta.unsqueeze(-2), states, actions)


# ---------------------------------------------------------------------------- proposals
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


# ---------------------------------------------------------------------------- normalisers
class TrajectoryBankNormalizer:
    """Shared machinery of normalisers that score a fixed bank of K trajectories.

    The bank holds trajectories x_k (``(K, *event_shape)`` in ``space``'s encoding) and
    offsets c_k (K,) such that ``log w_k(theta) = R_theta(x_k) + c_k`` and ``log Z_hat =
    logmeanexp_k log w_k``. Subclasses fill the bank in ``refresh`` (via :meth:`_set_bank`).

    Args:
        space: the trajectory space (:class:`bayes_irl.protocols.TrajectorySpace`).
        khat_policy: ``"warn"``, ``"raise"`` or ``"ignore"`` on PSIS k-hat > 0.7 (and, for a
            bank reused across theta with ``num_observations`` known, on an expected mode
            shift sqrt(n / ESS) above 0.2 posterior sd).
        kind: ``"global"`` (the only model with a single Z).
        num_observations: n, the observations whose likelihood uses this normaliser: the
            diagnostics then report the expected mode shift sqrt(n / ESS).

    Raises:
        ValueError: for an unknown ``kind`` or ``khat_policy``.
    """

    is_exact = False
    fresh_bank = False

    def __init__(
        self,
        space: Any,
        *,
        khat_policy: KhatPolicy,
        kind: str = "global",
        num_observations: int | None = None,
    ) -> None:
        if kind != "global":
            raise ValueError(
                f"kind must be 'global' for an importance normaliser (the causal model has "
                f"no single Z); got {kind!r}"
            )
        if khat_policy not in _KHAT_POLICIES:
            raise ValueError(f"khat_policy must be one of {_KHAT_POLICIES}; got {khat_policy!r}")
        self._space = space
        self.kind = kind
        self.khat_policy = khat_policy
        self._diagnostics: ImportanceDiagnostics | None = None
        self._bank: torch.Tensor | None = None
        self._offsets: torch.Tensor | None = None
        self._warned = False
        self.num_refreshes = 0
        self.num_observations = (
            None if num_observations is None else positive_int(num_observations,
                                                               "num_observations")
        )

    @property
    def space(self) -> Any:
        """The trajectory space the bank lives in."""
        return self._space

    @property
    def mdp(self) -> TabularMDP | None:
        """The tabular MDP (the same object as :attr:`space`), or None for other spaces."""
        return self._space if isinstance(self._space, TabularMDP) else None

    @property
    def diagnostics(self) -> ImportanceDiagnostics | None:
        """Diagnostics of the last single-theta estimate (None after a batch or a refresh)."""
        return self._diagnostics

    @property
    def bank(self) -> torch.Tensor:
        """The trajectories x_k, shape ``(K, *event_shape)``."""
        if self._bank is None:
            raise RuntimeError("the bank is empty; call refresh() first")
        return self._bank

    @property
    def offsets(self) -> torch.Tensor:
        """The theta-independent part c_k of each log-weight, shape (K,)."""
        if self._offsets is None:
            raise RuntimeError("the bank is empty; call refresh() first")
        return self._offsets

    @property
    def num_samples(self) -> int:
        """K, the number of trajectories in the bank."""
        return self.bank.shape[0]

    def _set_bank(self, trajectories: torch.Tensor, offsets: torch.Tensor) -> None:
        self._bank = trajectories
        self._split = self._space.split(trajectories)
        self._offsets = offsets.detach()
        self._warned = False
        self._diagnostics = None
        self.num_refreshes += 1

    def log_weights(self, reward: Any, theta: torch.Tensor) -> torch.Tensor:
        """Return ``log w_k = R_theta(x_k) + c_k``, shape ``theta.shape[:-1] + (K,)``.

        Args:
            reward: the reward model (``returns(theta, states, actions)``).
            theta: shape ``batch + (D,)``; differentiable.

        Raises:
            ValueError: for a ``theta`` of the wrong shape or with NaN.
        """
        returns = draw_returns(reward, check_theta(reward, theta), *self._split)
        return returns + self.offsets.to(returns.dtype)

    def log_normalizer(self, reward: Any, theta: torch.Tensor) -> torch.Tensor:
        """Return log Z_hat, shape ``theta.shape[:-1]`` (differentiable).

        For one theta (batch size 1) :attr:`diagnostics` is updated and PSIS k-hat > 0.7
        is reported according to ``khat_policy``; batched calls leave it None.
        """
        log_w = self.log_weights(reward, theta)
        if log_w[..., 0].numel() == 1:
            self._diagnose(log_w.detach().reshape(-1))
        else:
            self._diagnostics = None
        return log_mean_exp(log_w, dim=-1)

    def _compute_diagnostics(self, log_w: torch.Tensor) -> ImportanceDiagnostics:
        """Diagnostics of the bank's log-weights at one theta (SMC adds its sweep's)."""
        return importance_diagnostics(log_w, num_observations=self.num_observations)

    def _too_few_effective(self, diag: ImportanceDiagnostics) -> bool:
        """An extra reliability criterion of a subclass (SMC: its sweep's ESS)."""
        return False

    def _diagnose(self, log_w: torch.Tensor) -> None:
        self._diagnostics = diag = self._compute_diagnostics(log_w)
        khat, shift = diag.khat, diag.mode_shift
        shifted = not self.fresh_bank and shift > MODE_SHIFT_THRESHOLD
        if self.khat_policy == "ignore" or not (
            khat > KHAT_THRESHOLD or shifted or self._too_few_effective(diag)
        ):
            return
        message = (
            f"{type(self).__name__}: PSIS k-hat = {khat:.2f} (threshold {KHAT_THRESHOLD}), "
            f"ESS {diag.ess:.1f} of K = {diag.num_samples}, expected mode shift "
            f"sqrt(n / ESS) = {shift:.2f} posterior sd (threshold {MODE_SHIFT_THRESHOLD}); "
            "log Z_hat is unreliable. Train the guide policy "
            "(bayes_irl.inference.GuidePolicyTrainer), increase num_samples, draw a fresh "
            "bank per step (fresh_bank=True) or use a twisted proposal / SMC."
        )
        if self.khat_policy == "raise":
            raise ImportanceSamplingError(message)
        if not self._warned:
            self._warned = True
            warnings.warn(message, ImportanceWarning, stacklevel=4)

    def sample(
        self,
        reward: Any,
        theta: torch.Tensor,
        sample_shape: tuple[int, ...] | torch.Size = (),
        *,
        given_initial_state: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sampling-importance-resampling from the bank.

        Draws bank indices with probabilities wbar_k(theta) (with replacement), separately
        for every theta in the batch. Approximate: exact only as K -> infinity.

        Args:
            reward: the reward model.
            theta: shape ``batch_shape + (D,)``.
            sample_shape: leading sample shape.
            given_initial_state: must be False: resampling a bank cannot condition on s_0.
            generator: optional generator (default: the normaliser's own).

        Returns:
            Shape ``sample_shape + batch_shape + event_shape``.

        Raises:
            ValueError: for ``given_initial_state=True``.
        """
        if given_initial_state:
            raise ValueError(
                f"{type(self).__name__} cannot sample conditioned on the initial state "
                "(given_initial_state=True); use an exact normaliser"
            )
        sample_shape = torch.Size(sample_shape)
        with torch.no_grad():
            log_w = self.log_weights(reward, torch.as_tensor(theta).detach())
            batch_shape = log_w.shape[:-1]
            flat = torch.softmax(log_w.reshape(-1, log_w.shape[-1]), dim=-1)
            num = max(sample_shape.numel(), 1)
            index = torch.multinomial(
                flat, num, replacement=True, generator=generator or self.generator
            )  # (B, num)
            draws = self.bank[index.T.reshape(-1).to(self.bank.device)]  # (num * B, *event)
        return draws.reshape(sample_shape + batch_shape + self.bank.shape[1:])


class ImportanceNormalizer(TrajectoryBankNormalizer):
    """Importance-sampling estimate of log Z with a guide policy as the proposal.

    The one importance normaliser for tabular MDPs and black-box simulators alike
    (``SimulatorImportanceNormalizer`` is ``ImportanceNormalizer(SimulatorProposal(...))``).

    Args:
        proposal: a :class:`bayes_irl.protocols.GuidePolicy` with a ``space`` attribute:
            :class:`PolicyProposal`, :class:`TwistedProposal` (tabular) or
            :class:`~bayes_irl.inference.normalizers.simulator_proposal.SimulatorProposal`.
        num_samples: K >= 2, trajectories in the bank.
        kind: ``"global"`` (the only model with a single Z).
        khat_policy: on PSIS k-hat > 0.7: ``"warn"`` (an :class:`ImportanceWarning`, once
            per bank), ``"raise"`` (:class:`ImportanceSamplingError`) or ``"ignore"``.
        seed: seeds the normaliser's private generator (default 0) unless ``generator``.
        generator: a torch.Generator to draw the bank with.
        fresh_bank: draw a new bank at every :meth:`log_normalizer` call (every SVI step):
            the bank's error in E_wbar[phi] then averages out over steps instead of moving
            the posterior mode by ~sqrt(n / ESS) sd (see
            :mod:`bayes_irl.inference.diagnostics`); pair it with iterate averaging
            (:class:`bayes_irl.inference.averaging.IterateAveraging`).
        num_observations: n, for the expected mode shift in the diagnostics.

    Raises:
        ValueError: for a bad ``num_samples``, ``kind``, ``khat_policy`` or proposal.

    Example:
        >>> from bayes_irl import GridWorld
        >>> from bayes_irl.inference import ExactNormalizer
        >>> world = GridWorld.create(size=3, horizon=4, seed=0)
        >>> norm = ImportanceNormalizer(PolicyProposal(world.mdp), num_samples=4000, seed=1)
        >>> reward, theta = world.reward_model, world.true_weights
        >>> exact = ExactNormalizer(world.mdp).log_normalizer(reward, theta)
        >>> abs(float(norm.log_normalizer(reward, theta) - exact)) < 0.1
        True
    """

    def __init__(
        self,
        proposal: GuidePolicy,
        *,
        num_samples: int = 1000,
        kind: str = "global",
        khat_policy: KhatPolicy = "warn",
        seed: int | None = None,
        generator: torch.Generator | None = None,
        fresh_bank: bool = False,
        num_observations: int | None = None,
    ) -> None:
        if not isinstance(proposal, GuidePolicy) or not hasattr(proposal, "space"):
            raise ValueError(
                "proposal must be a GuidePolicy with a .space (PolicyProposal, "
                f"TwistedProposal or SimulatorProposal); got {type(proposal).__name__}"
            )
        super().__init__(
            proposal.space, kind=kind, khat_policy=khat_policy, num_observations=num_observations
        )
        self.fresh_bank = bool(fresh_bank)
        self.num_samples_requested = positive_int(num_samples, "num_samples", minimum=2)
        self.proposal = proposal
        device = getattr(proposal.space, "device", "cpu")
        self.generator = make_generator(generator, seed, device)
        self.refresh()

    def refresh(
        self, reward: Any = None, theta: torch.Tensor | None = None
    ) -> ImportanceNormalizer:
        """Draw a new bank of K trajectories from the (current) proposal; returns ``self``.

        ``reward`` and ``theta`` are accepted for interface symmetry with SMC and ignored.
        """
        value, log_ratio = self.proposal.draw(self.num_samples_requested, generator=self.generator)
        self._set_bank(value, log_ratio)
        return self

    def log_normalizer(self, reward: Any, theta: torch.Tensor) -> torch.Tensor:
        """Return log Z_hat, shape ``theta.shape[:-1]``; a fresh bank first if ``fresh_bank``."""
        if self.fresh_bank:
            self.refresh()
        return super().log_normalizer(reward, theta)

    def __repr__(self) -> str:
        return (
            f"ImportanceNormalizer(K={self.num_samples_requested}, fresh_bank={self.fresh_bank}, "
            f"proposal={type(self.proposal).__name__}, space={self.space!r})"
        )
