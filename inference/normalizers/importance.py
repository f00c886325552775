r"""Importance-sampling normalisers: the guide policy as the proposal for log Z.

For a proposal q over full trajectories x = (s_0, a_0, ..., a_{T-1}, s_T) and K draws
x_k ~ q (the *bank*, drawn once and reused for every reward until :meth:`refresh`):

    log w_k(theta) = R_theta(x_k) + log b(x_k) - log q(x_k)
    log Z_hat(theta) = logsumexp_k log w_k(theta) - log K.

Z_hat is unbiased for Z; log Z_hat is biased low (Jensen). The bank does not depend on
theta, so autograd through log Z_hat gives exactly the self-normalised gradient

    d log Z_hat / d theta = sum_k wbar_k dR_theta(x_k)/d theta,  wbar_k = w_k / sum_j w_j.

Proposals (all :class:`torch.nn.Module`, trainable by :mod:`bayes_irl.inference.guide_training`):

* :class:`PolicyProposal`: q(x) = p0(s_0) prod_t pi_t(a_t | s_t) p(s_{t+1} | s_t, a_t)
  with a :class:`bayes_irl.policies.TabularPolicy`, driven by the true dynamics or a
  black-box simulator. Dynamics and p0 cancel: log b - log q = sum_t [log beta - log pi_t].
  With stochastic dynamics it cannot represent the global maxent distribution, which tilts
  the transitions, P(s' | s, a, t) ∝ p(s' | s, a) exp V_{t+1}(s') (see
  :mod:`bayes_irl.soft_bellman`); its best reverse-KL fit is the maximum *causal*
  entropy policy (:meth:`PolicyProposal.soft_backup_`).
* :class:`TwistedProposal` (known dynamics): transitions and the initial state are
  twisted by learnable potentials psi[t, s] (shape (T + 1, S)),

      q_t(s' | s, a) = p(s' | s, a) exp psi_{t+1}(s') / exp C_t(s, a),
      C_t(s, a) = log sum_{s'} p(s' | s, a) exp psi_{t+1}(s'),
      q_0(s) = p0(s) exp psi_0(s) / sum_s p0(s) exp psi_0(s),

  so log b - log q = [log sum p0 exp psi_0 - psi_0(s_0)]
  + sum_t [log beta - log pi_t + C_t(s_t, a_t) - psi_{t+1}(s_{t+1})]. With psi = V (the
  global soft values) and pi_t = exp(Q_t - V_t) every log-weight equals log Z: the family
  contains the maxent distribution exactly (:meth:`TwistedProposal.soft_backup_`).

:class:`ImportanceNormalizer` implements the normaliser interface (``mdp``, ``kind``,
``log_normalizer``, ``diagnostics``) plus sampling-importance-resampling
(:meth:`ImportanceNormalizer.sample_trajectories`), which
:class:`bayes_irl.models.MaxEntTrajectory` uses for ``sample`` when no exact sampler exists.
PSIS k-hat of the log-weights (Vehtari et al. 2024) above 0.7 triggers an
:class:`ImportanceWarning` (or an :class:`ImportanceSamplingError` with
``khat_policy="raise"``).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from bayes_irl.inference.diagnostics import (
    KHAT_THRESHOLD,
    ImportanceDiagnostics,
    ImportanceWarning,
    importance_diagnostics,
)
from bayes_irl.mdp import TabularMDP
from bayes_irl.policies import TabularPolicy
from bayes_irl.soft_bellman import soft_values, step_q_values

__all__ = [
    "ImportanceNormalizer",
    "ImportanceSamplingError",
    "ImportanceWarning",
    "PolicyProposal",
    "bank_diagnostics",
    "Proposal",
    "TwistedProposal",
    "trajectory_returns",
]

KhatPolicy = Literal["warn", "raise", "ignore"]
_KHAT_POLICIES = ("warn", "raise", "ignore")

Simulator = Callable[[int, torch.Tensor, torch.Tensor, "torch.Generator | None"], torch.Tensor]
"""``simulator(t, states, actions, generator) -> next_states``, int tensors of shape (n,)."""




class ImportanceSamplingError(RuntimeError):
    """Raised instead of :class:`ImportanceWarning` when ``khat_policy="raise"``."""


# ---------------------------------------------------------------------------- helpers
def _categorical(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One draw per row of ``logits`` (shape (n, C)); returns int64 of shape (n,)."""
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _make_generator(
    generator: torch.Generator | None, seed: int | None, device: torch.device
) -> torch.Generator:
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator; got {type(generator).__name__}")
        return generator
    if seed is None:
        seed = 0
    if isinstance(seed, bool) or int(seed) != seed:
        raise ValueError(f"seed must be an int; got {seed!r}")
    return torch.Generator(device=device).manual_seed(int(seed))


def _check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int,)) and not (
        torch.is_tensor(value) and value.numel() == 1
    ):
        try:
            ok = int(value) == value
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")
    return int(value)


def check_step_rewards(mdp: TabularMDP, step_rewards) -> torch.Tensor:
    """Validate ``step_rewards`` (shape (..., S, A), no NaN) and return it.

    Raises:
        ValueError: naming ``step_rewards`` and the expected shape, or reporting NaN.
    """
    if not torch.is_tensor(step_rewards):
        raise ValueError(f"step_rewards must be a torch.Tensor; got {type(step_rewards).__name__}")
    if step_rewards.dim() < 2 or step_rewards.shape[-2:] != (mdp.num_states, mdp.num_actions):
        raise ValueError(
            f"step_rewards must have shape (..., S, A) = (..., {mdp.num_states}, "
            f"{mdp.num_actions}); got {tuple(step_rewards.shape)}"
        )
    if torch.isnan(step_rewards).any():
        raise ValueError("step_rewards contains NaN; check the reward model's parameters")
    return step_rewards


def trajectory_returns(step_rewards: torch.Tensor, trajectories: torch.Tensor) -> torch.Tensor:
    """Return R(x_k) = sum_{t<L_k} r[..., s_t, a_t], shape (..., K) (differentiable in r).

    Args:
        step_rewards: ``r[..., s, a]``, shape (..., S, A).
        trajectories: int64 (K, T + 1, 2) in the trajectory encoding (-1 padding).
    """
    num_states, num_actions = step_rewards.shape[-2:]
    states, actions = trajectories[:, :-1, 0], trajectories[:, :-1, 1]
    observed = actions >= 0
    index = (states.clamp(min=0) * num_actions + actions.clamp(min=0)).reshape(-1)
    flat = step_rewards.reshape(*step_rewards.shape[:-2], num_states * num_actions)
    per_step = flat[..., index].reshape(*flat.shape[:-1], *states.shape)  # (..., K, T)
    return torch.where(observed, per_step, torch.zeros_like(per_step)).sum(-1)


def bank_diagnostics(log_weights: torch.Tensor) -> ImportanceDiagnostics:
    """:func:`importance_diagnostics` of log-weights (K,), with k-hat = -inf for equal weights.

    ArviZ's PSIS fit returns k-hat = inf when every weight is equal (an exact proposal);
    equal weights are the best case, so k-hat is reported as -inf there.
    """
    log_weights = log_weights.detach().reshape(-1)
    diagnostics = importance_diagnostics(log_weights)
    spread = float(log_weights.max() - log_weights.min())
    if spread < 1e-9 * max(1.0, float(log_weights.abs().max())):
        diagnostics = dataclasses.replace(diagnostics, khat=-math.inf)
    return diagnostics


# ---------------------------------------------------------------------------- proposals
class Proposal(nn.Module):
    """Base class of trajectory proposals q over full-length trajectories of an MDP.

    A proposal generates trajectories step by step (so SMC can use it as its kernel) and
    scores them: every method returns ``log b - log q`` pieces, never q alone, so that
    simulator-driven proposals need no transition probabilities.

    Subclasses implement :meth:`initial`, :meth:`step`, :meth:`log_correction` and
    :meth:`soft_backup_`.
    """

    mdp: TabularMDP

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

    def log_correction(self, trajectories: torch.Tensor) -> torch.Tensor:
        """Return ``log b(x) - log q(x)`` of full trajectories (K, T + 1, 2); shape (K,).

        Differentiable in the proposal's parameters (used to train it).
        """
        raise NotImplementedError

    def soft_backup_(self, step_rewards: torch.Tensor) -> Proposal:
        """Set the parameters to the exact reverse-KL optimum for ``step_rewards`` (S, A)."""
        raise NotImplementedError

    def sample(
        self, num: int, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``num`` trajectories.

        Returns:
            ``(trajectories, log_correction)``: int64 (num, T + 1, 2) (last action -1) and
            ``log b - log q`` of shape (num,) (detached).
        """
        num = _check_positive_int(num, "num_samples")
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


def _split(trajectories: torch.Tensor, horizon: int):
    if trajectories.dim() != 3 or trajectories.shape[-2:] != (horizon + 1, 2):
        raise ValueError(
            f"trajectories must have shape (K, T + 1, 2) = (K, {horizon + 1}, 2); got "
            f"{tuple(trajectories.shape)}"
        )
    if (trajectories[:, :-1, 1] < 0).any():
        raise ValueError("trajectories must be full length (no -1 actions before step T)")
    return trajectories[:, :-1, 0], trajectories[:, :-1, 1], trajectories[:, 1:, 0]


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
        >>> x, lc = PolicyProposal(world.mdp).sample(8, generator=torch.Generator().manual_seed(0))
        >>> x.shape, lc.shape
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
        policy = TabularPolicy.for_mdp(mdp) if policy is None else policy
        if not isinstance(policy, TabularPolicy):
            raise ValueError(f"policy must be a TabularPolicy; got {type(policy).__name__}")
        expected = (mdp.horizon, mdp.num_states, mdp.num_actions)
        if tuple(policy.logits.shape) != expected:
            raise ValueError(
                f"policy logits must have shape (T, S, A) = {expected}; got "
                f"{tuple(policy.logits.shape)}"
            )
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
        action = _categorical(log_pi[states], generator)
        if self.simulator is None:
            choice = _categorical(mdp.successor_log_probs[states, action], generator)
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

    def log_correction(self, trajectories):  # noqa: D102
        s, a, _ = _split(trajectories, self.mdp.horizon)
        base = self.mdp.action_log_base[s, a].sum(-1)
        return base - self.policy.log_prob(s, a)

    def soft_backup_(self, step_rewards):
        """Set pi to the maximum causal entropy policy of ``step_rewards`` (S, A).

        This is the reverse-KL optimum over policies driving the true dynamics:
        argmax_pi E_q[R + log b - log q] (Ziebart et al. 2010). Returns ``self``.
        """
        step_rewards = check_step_rewards(self.mdp, step_rewards).detach()
        values = soft_values(self.mdp, step_rewards, kind="causal")
        q = step_q_values(self.mdp, step_rewards.unsqueeze(-3), values[1:], kind="causal")
        with torch.no_grad():
            self.policy.logits.copy_(q - values[:-1].unsqueeze(-1))
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
        policy = TabularPolicy.for_mdp(mdp) if policy is None else policy
        expected = (mdp.horizon, mdp.num_states, mdp.num_actions)
        if not isinstance(policy, TabularPolicy) or tuple(policy.logits.shape) != expected:
            raise ValueError(f"policy must be a TabularPolicy with logits of shape {expected}")
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

    def initial(self, num, *, generator=None):  # noqa: D102
        logits = self._initial_logits()
        state = _categorical(logits.expand(num, -1), generator)
        log_w = torch.logsumexp(logits, -1) - self.twist[0][state]
        return state, log_w

    def step(self, t, states, *, generator=None):  # noqa: D102
        mdp = self.mdp
        log_pi = self.policy.log_probs()[t]
        action = _categorical(log_pi[states], generator)
        logits = self._transition_logits(t)[states, action]  # (n, F)
        choice = _categorical(logits, generator)
        succ = mdp.successors[states, action].gather(-1, choice.unsqueeze(-1)).squeeze(-1)
        log_c = torch.logsumexp(logits, -1)
        log_w = (
            mdp.action_log_base[states, action] - log_pi[states, action]
            + log_c - self.twist[t + 1][succ]
        )
        return action, succ, log_w

    def log_correction(self, trajectories):  # noqa: D102
        mdp = self.mdp
        s, a, s_next = _split(trajectories, mdp.horizon)
        s0 = trajectories[:, 0, 0]
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
        q = step_q_values(self.mdp, step_rewards.unsqueeze(-3), values[1:], kind="global")
        with torch.no_grad():
            self.twist.copy_(values)
            self.policy.logits.copy_(q - values[:-1].unsqueeze(-1))
        return self


# ---------------------------------------------------------------------------- normalisers
class TrajectoryBankNormalizer:
    """Shared machinery of normalisers that score a fixed bank of K trajectories.

    The bank holds trajectories x_k (K, T + 1, 2) and offsets c_k (K,) such that
    ``log w_k(theta) = R_theta(x_k) + c_k`` and ``log Z_hat = logmeanexp_k log w_k``.
    Subclasses fill the bank in :meth:`refresh`.
    """

    is_exact = False

    def __init__(self, mdp: TabularMDP, *, kind: str, khat_policy: KhatPolicy) -> None:
        if not isinstance(mdp, TabularMDP):
            raise ValueError(f"mdp must be a TabularMDP; got {type(mdp).__name__}")
        if kind != "global":
            raise ValueError(
                f"kind must be 'global' for an importance normaliser (the causal model has "
                f"no single Z); got {kind!r}"
            )
        if khat_policy not in _KHAT_POLICIES:
            raise ValueError(f"khat_policy must be one of {_KHAT_POLICIES}; got {khat_policy!r}")
        self.mdp = mdp
        self.kind = kind
        self.khat_policy = khat_policy
        self.diagnostics: ImportanceDiagnostics | None = None
        self._bank: torch.Tensor | None = None
        self._offsets: torch.Tensor | None = None
        self._warned = False

    @property
    def bank(self) -> torch.Tensor:
        """The trajectories x_k, int64 of shape (K, T + 1, 2)."""
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
        self._offsets = offsets.detach()
        self._warned = False
        self.diagnostics = None

    def log_weights(self, step_rewards: torch.Tensor) -> torch.Tensor:
        """Return ``log w_k = R(x_k) + c_k``, shape (..., K) for rewards (..., S, A)."""
        step_rewards = check_step_rewards(self.mdp, step_rewards)
        return trajectory_returns(step_rewards, self.bank) + self.offsets

    def log_normalizer(self, step_rewards: torch.Tensor) -> torch.Tensor:
        """Return log Z_hat, shape ``step_rewards.shape[:-2]`` (differentiable).

        When the rewards hold one reward (batch size 1), :attr:`diagnostics` is updated
        and PSIS k-hat > 0.7 is reported according to ``khat_policy``.
        """
        log_w = self.log_weights(step_rewards)
        log_z = torch.logsumexp(log_w, dim=-1) - math.log(log_w.shape[-1])
        if log_w[..., 0].numel() == 1:
            self._diagnose(log_w.detach().reshape(-1))
        return log_z

    def _diagnose(self, log_w: torch.Tensor) -> None:
        self.diagnostics = bank_diagnostics(log_w)
        khat = self.diagnostics.khat
        if self.khat_policy == "ignore" or not khat > KHAT_THRESHOLD:
            return
        message = (
            f"{type(self).__name__}: PSIS k-hat = {khat:.2f} > {KHAT_THRESHOLD} (ESS "
            f"{self.diagnostics.ess:.1f} of K = {self.diagnostics.num_samples}); log Z_hat is "
            "unreliable. Train the guide policy (bayes_irl.inference.guide_training), increase "
            "num_samples or use a twisted proposal / SMC."
        )
        if self.khat_policy == "raise":
            raise ImportanceSamplingError(message)
        if not self._warned:
            self._warned = True
            warnings.warn(message, ImportanceWarning, stacklevel=3)

    def sample_trajectories(
        self,
        step_rewards: torch.Tensor,
        sample_shape: tuple[int, ...] | torch.Size = (),
        *,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sampling-importance-resampling from the bank.

        Draws bank indices with probabilities wbar_k(theta) (with replacement), separately
        for every reward in the batch. Approximate: exact only as K -> infinity.

        Args:
            step_rewards: ``r[..., s, a]``, shape batch_shape + (S, A).
            sample_shape: leading sample shape.
            generator: optional generator (default: the normaliser's own).

        Returns:
            int64 of shape ``sample_shape + batch_shape + (T + 1, 2)``.
        """
        sample_shape = torch.Size(sample_shape)
        with torch.no_grad():
            log_w = self.log_weights(step_rewards.detach())
            batch_shape = log_w.shape[:-1]
            flat = torch.softmax(log_w.reshape(-1, log_w.shape[-1]), dim=-1)
            num = max(sample_shape.numel(), 1)
            index = torch.multinomial(
                flat, num, replacement=True, generator=generator or self.generator
            )  # (B, num)
            draws = self.bank[index.T.reshape(-1)]  # (num * B, T + 1, 2)
        return draws.reshape(sample_shape + batch_shape + self.bank.shape[1:])


class ImportanceNormalizer(TrajectoryBankNormalizer):
    """Importance-sampling estimate of log Z with a trajectory proposal (the guide policy).

    Args:
        mdp: the MDP (base measure).
        proposal: a :class:`Proposal` (e.g. :class:`PolicyProposal`, :class:`TwistedProposal`)
            on the same MDP; default an untrained uniform :class:`PolicyProposal`.
        num_samples: K >= 2, trajectories in the bank.
        kind: ``"global"`` (the only model with a single Z).
        khat_policy: on PSIS k-hat > 0.7: ``"warn"`` (an :class:`ImportanceWarning`, once
            per bank), ``"raise"`` (:class:`ImportanceSamplingError`) or ``"ignore"``.
        seed: seeds the normaliser's private generator (default 0) unless ``generator``.
        generator: a torch.Generator to draw the bank with.

    Raises:
        ValueError: for a bad ``num_samples``, ``kind``, ``khat_policy`` or a proposal on
            another MDP.

    Example:
        >>> from bayes_irl import GridWorld
        >>> from bayes_irl.inference import ExactNormalizer
        >>> world = GridWorld.create(size=3, horizon=4, seed=0)
        >>> norm = ImportanceNormalizer(world.mdp, num_samples=4000, seed=1)
        >>> r = world.true_step_rewards()
        >>> abs(float(norm.log_normalizer(r) - ExactNormalizer(world.mdp).log_normalizer(r))) < 0.1
        True
    """

    def __init__(
        self,
        mdp: TabularMDP,
        proposal: Proposal | None = None,
        *,
        num_samples: int = 1000,
        kind: str = "global",
        khat_policy: KhatPolicy = "warn",
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(mdp, kind=kind, khat_policy=khat_policy)
        self.num_samples_requested = _check_positive_int(num_samples, "num_samples", minimum=2)
        proposal = PolicyProposal(mdp) if proposal is None else proposal
        if not isinstance(proposal, Proposal):
            raise ValueError(f"proposal must be a Proposal; got {type(proposal).__name__}")
        if proposal.mdp is not mdp:
            raise ValueError("proposal must be built on the same mdp as the normaliser")
        self.proposal = proposal
        self.generator = _make_generator(generator, seed, mdp.device)
        self.refresh()

    def refresh(self, step_rewards: torch.Tensor | None = None) -> ImportanceNormalizer:
        """Draw a new bank of K trajectories from the (current) proposal; returns ``self``.

        ``step_rewards`` is accepted for interface symmetry with SMC and ignored.
        """
        trajectories, log_correction = self.proposal.sample(
            self.num_samples_requested, generator=self.generator
        )
        self._set_bank(trajectories, log_correction)
        return self

    def __repr__(self) -> str:
        return (
            f"ImportanceNormalizer(K={self.num_samples_requested}, "
            f"proposal={type(self.proposal).__name__}, mdp={self.mdp!r})"
        )
