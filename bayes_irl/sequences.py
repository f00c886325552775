r"""Token sequences as a tabular MDP: the RLHF setting in the maxent framework.

A context y (a "prompt", one of C) is answered by a response x = (x_1, ..., x_L) over a
vocabulary of V tokens, token 0 being end-of-sequence (EOS). A response ends with EOS or
is cut at the maximum length T. The reference policy is Markov in the previous token,

    pi_ref(x | y) = prod_t pi_ref(x_t | y, x_{t-1}),       x_0 = BOS,

and the reward is additive over tokens, R(x, y) = sum_t r(y, x_{t-1}, x_t) with
r = theta . phi (:class:`bayes_irl.LinearReward`) or an MLP of phi
(:class:`bayes_irl.MLPReward`).

As a :class:`TabularMDP`: a state is (y, previous token), with a BOS state and an
absorbing DONE state per context, S = C (V + 1); actions are the V tokens; transitions are
deterministic; the action base measure is log pi_ref (``action_log_base``), so
b(x) = pi_ref(x | y). After EOS the DONE state allows only the EOS action (pi_ref = 1,
reward 0) until step T, so every response is a length-T trajectory. Conditioning on the
context is conditioning on the initial state (``given_initial_state=True``).

Maxent = RLHF. For beta > 0 the KL-regularised RLHF objective

    J(pi) = E_{x ~ pi(.|y)} [R(x, y)] - beta KL(pi(.|y) || pi_ref(.|y))

is maximised by pi*(x | y) = pi_ref(x | y) exp(R(x, y) / beta) / Z(y), with
J(pi*) = beta log Z(y): the maxent distribution with base measure pi_ref and reward
R / beta. Its token-level policy is pi*_t(a | s) = exp(Q_t(s, a) - V_t(s)) from the soft
backward recursion (:mod:`bayes_irl.soft_bellman`) run on r / beta — with deterministic
transitions the global and causal recursions coincide, so the policy reproduces the
sequence distribution exactly. Bradley-Terry is the maxent model on a two-element choice
set (:func:`bayes_irl.choice_sets.choice_set_mdp`).

Everything here is small enough to enumerate: there are sum_{L<=T} (V-1)^L responses per
context, so exact log Z by the DP can be checked against brute force.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bayes_irl.mdp import TabularMDP
from bayes_irl.rewards import LinearReward, MLPReward
from bayes_irl.soft_bellman import soft_policy
from bayes_irl.validation import positive_int

__all__ = [
    "TokenSequenceEnv",
    "EOS",
    "enumerate_trajectories",
    "rlhf_policy",
    "policy_log_prob",
    "kl_regularised_objective",
]

EOS = 0
"""Token index of end-of-sequence."""


@dataclass(frozen=True, eq=False)
class TokenSequenceEnv:
    """Contexts, a vocabulary with EOS, a Markov reference policy and a token reward.

    Attributes:
        num_contexts: C.
        vocab_size: V (token 0 is EOS).
        max_length: T, the most tokens a response may have (EOS included).
        mdp: the :class:`TabularMDP`, S = C (V + 1), A = V, ``action_log_base`` = log pi_ref.
        reward_model: :class:`LinearReward` on phi(y, prev, token), shape (S, A, K).
        true_weights: theta*, shape (K,).
    """

    num_contexts: int
    vocab_size: int
    max_length: int
    mdp: TabularMDP
    reward_model: LinearReward
    true_weights: torch.Tensor

    @classmethod
    def create(
        cls,
        *,
        num_contexts: int = 2,
        vocab_size: int = 4,
        max_length: int = 4,
        num_features: int = 3,
        concentration: float = 1.0,
        allow_empty: bool = False,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
    ) -> TokenSequenceEnv:
        """Build a seeded environment.

        Args:
            num_contexts: C >= 1.
            vocab_size: V >= 2 (EOS plus V - 1 ordinary tokens).
            max_length: T >= 1.
            num_features: K >= 1 random standard-normal features per (y, prev, token).
            concentration: Dirichlet concentration of each pi_ref(. | y, prev).
            allow_empty: allow EOS as the first token (an empty response).
            seed: seeds pi_ref, the features and theta*.
            dtype: floating dtype.

        Returns:
            The environment; the initial distribution is uniform over the contexts' BOS
            states.

        Raises:
            ValueError: for out-of-range arguments.
        """
        num_contexts = positive_int(num_contexts, "num_contexts")
        vocab_size = positive_int(vocab_size, "vocab_size", minimum=2)
        max_length = positive_int(max_length, "max_length")
        num_features = positive_int(num_features, "num_features")
        if not concentration > 0:
            raise ValueError(f"concentration must be > 0; got {concentration!r}")
        rng = np.random.default_rng(seed)
        per_context = vocab_size + 1
        num_states = num_contexts * per_context
        done = vocab_size  # local index of the DONE state; 0 is BOS, v = previous token v
        successors = np.empty((num_states, vocab_size, 1), dtype=np.int64)
        log_base = np.zeros((num_states, vocab_size))
        features = rng.standard_normal((num_states, vocab_size, num_features))
        initial = np.zeros(num_states)
        for y in range(num_contexts):
            offset = y * per_context
            initial[offset] = 1.0 / num_contexts
            for j in range(per_context):
                s = offset + j
                if j == done:
                    successors[s, :, 0] = s
                    log_base[s] = -np.inf
                    log_base[s, EOS] = 0.0
                    features[s] = 0.0
                    continue
                successors[s, :, 0] = offset + np.arange(vocab_size)
                successors[s, EOS, 0] = offset + done
                probs = rng.dirichlet(np.full(vocab_size, concentration))
                if j == 0 and not allow_empty:
                    probs[EOS] = 0.0
                    probs /= probs.sum()
                with np.errstate(divide="ignore"):
                    log_base[s] = np.log(probs)
        names = [f"feature_{k}" for k in range(num_features)]
        mdp = TabularMDP.from_sparse(
            successors=successors,
            successor_probs=np.ones((num_states, vocab_size, 1)),
            initial=initial,
            features=features,
            horizon=max_length,
            action_log_base=log_base,
            feature_names=names,
            dtype=dtype,
        )
        weights = torch.as_tensor(rng.standard_normal(num_features), dtype=dtype)
        reward_model = LinearReward(mdp.features, feature_names=names)
        return cls(
            num_contexts=num_contexts,
            vocab_size=vocab_size,
            max_length=max_length,
            mdp=mdp,
            reward_model=reward_model,
            true_weights=weights,
        )

    # ------------------------------------------------------------------ indexing
    def state(self, context: int, previous: int | None) -> int:
        """Return the state index of (context, previous token); ``None`` = BOS."""
        self._check_context(context)
        if previous is None:
            return context * (self.vocab_size + 1)
        if not 1 <= previous < self.vocab_size:
            raise ValueError(f"previous must be a token in [1, {self.vocab_size}); got {previous}")
        return context * (self.vocab_size + 1) + previous

    def done_state(self, context: int) -> int:
        """Return the absorbing DONE state of ``context``."""
        self._check_context(context)
        return context * (self.vocab_size + 1) + self.vocab_size

    def _check_context(self, context: int) -> None:
        if not 0 <= int(context) < self.num_contexts:
            raise ValueError(f"context must lie in [0, {self.num_contexts}); got {context}")

    def encode(self, context: int, tokens) -> torch.Tensor:
        """Encode a response as a trajectory of shape (T + 1, 2).

        Args:
            context: y.
            tokens: ordinary tokens in [1, V) (without EOS), at most T of them; EOS is
                appended when there is room.

        Returns:
            int64 trajectory (T + 1, 2) (states and actions, last action -1).
        """
        tokens = [int(t) for t in tokens]
        if len(tokens) > self.max_length:
            raise ValueError(
                f"a response has at most T = {self.max_length} tokens; got {len(tokens)}"
            )
        if any(not 1 <= t < self.vocab_size for t in tokens):
            raise ValueError(f"tokens must lie in [1, {self.vocab_size}) (EOS is appended)")
        states, actions = [self.state(context, None)], []
        for t in range(self.max_length):
            token = tokens[t] if t < len(tokens) else EOS
            actions.append(token)
            nxt = self.done_state(context) if token == EOS else self.state(context, token)
            states.append(nxt)
        actions.append(-1)
        return torch.tensor([states, actions], dtype=torch.int64).T.contiguous()

    def decode(self, trajectory: torch.Tensor) -> tuple[int, list[int]]:
        """Return (context, tokens without EOS) of a trajectory of shape (T + 1, 2)."""
        context = int(trajectory[0, 0]) // (self.vocab_size + 1)
        tokens = []
        for a in trajectory[:-1, 1].tolist():
            if a == EOS or a < 0:
                break
            tokens.append(int(a))
        return context, tokens

    def enumerate_responses(self, context: int) -> torch.Tensor:
        """Return every response to ``context`` with pi_ref > 0, shape (M, T + 1, 2)."""
        return enumerate_trajectories(self.mdp, self.state(context, None))

    def mlp_reward(self, *, hidden: int = 4) -> MLPReward:
        """Return an :class:`MLPReward` on the token features (D = K·H + 2H)."""
        return MLPReward(self.mdp.features, hidden=hidden)

    def true_step_rewards(self) -> torch.Tensor:
        """Return r*(y, prev, token) = theta* . phi, shape (S, A)."""
        return self.reward_model.step_rewards(self.true_weights)

    def reference_log_prob(self, trajectories: torch.Tensor) -> torch.Tensor:
        """Return log pi_ref(x | y) for trajectories (..., T + 1, 2); shape (...)."""
        log_policy = self.mdp.action_log_base.expand(self.max_length, -1, -1)
        return policy_log_prob(log_policy, trajectories)


def enumerate_trajectories(mdp: TabularMDP, initial_state: int) -> torch.Tensor:
    """Enumerate all trajectories of a deterministic MDP with positive base measure.

    Args:
        mdp: an MDP whose every (s, a) has one successor with probability 1.
        initial_state: s_0.

    Returns:
        int64 tensor (M, T + 1, 2): every action sequence with action_log_base > -inf.

    Raises:
        ValueError: for stochastic transitions or more than 10^6 trajectories.
    """
    probs = mdp.successor_log_probs.exp()
    if not torch.allclose(probs.max(-1).values, torch.ones_like(probs[..., 0])):
        raise ValueError("enumerate_trajectories needs deterministic transitions")
    nxt = mdp.successors.gather(-1, probs.argmax(-1, keepdim=True)).squeeze(-1)  # (S, A)
    allowed = torch.isfinite(mdp.action_log_base)
    paths = [([int(initial_state)], [])]
    for _ in range(mdp.horizon):
        grown = []
        for states, actions in paths:
            s = states[-1]
            for a in allowed[s].nonzero().flatten().tolist():
                grown.append((states + [int(nxt[s, a])], actions + [a]))
        paths = grown
        if len(paths) > 10**6:
            raise ValueError("more than 10^6 trajectories: too many to enumerate")
    rows = [
        [s, a] for states, actions in paths for s, a in zip(states, actions + [-1], strict=True)
    ]
    out = torch.tensor(rows, dtype=torch.int64)
    return out.reshape(len(paths), mdp.horizon + 1, 2)


def rlhf_policy(mdp: TabularMDP, step_rewards: torch.Tensor, *, beta: float = 1.0) -> torch.Tensor:
    """Return the KL-regularised optimal policy log pi*_t(a | s) = Q_t - V_t.

    Args:
        mdp: the MDP (``action_log_base`` = log pi_ref; deterministic transitions for the
            policy to reproduce the maxent sequence distribution).
        step_rewards: ``r[..., s, a]``, shape (..., S, A).
        beta: KL weight beta > 0; the recursion runs on r / beta.

    Returns:
        ``log_pi[..., t, s, a]`` of shape (..., T, S, A) (-inf where pi_ref = 0).
    """
    if not beta > 0:
        raise ValueError(f"beta must be > 0; got {beta!r}")
    return soft_policy(mdp, step_rewards / beta, kind="global")


def policy_log_prob(log_policy: torch.Tensor, trajectories: torch.Tensor) -> torch.Tensor:
    """Return sum_t log pi_t(a_t | s_t) over the observed steps.

    Args:
        log_policy: ``log_pi[t, s, a]`` of shape (T, S, A).
        trajectories: int64 (..., T + 1, 2).

    Returns:
        Shape ``trajectories.shape[:-2]``.
    """
    horizon = log_policy.shape[0]
    if trajectories.shape[-2] != horizon + 1:
        raise ValueError(
            f"trajectories must have shape (..., {horizon + 1}, 2); got {tuple(trajectories.shape)}"
        )
    s = trajectories[..., :-1, 0].clamp(min=0)
    a = trajectories[..., :-1, 1]
    steps = torch.arange(horizon).expand_as(a)
    lp = log_policy[steps, s, a.clamp(min=0)]
    return torch.where(a >= 0, lp, torch.zeros_like(lp)).sum(-1)


def kl_regularised_objective(
    mdp: TabularMDP,
    log_policy: torch.Tensor,
    step_rewards: torch.Tensor,
    *,
    beta: float,
    initial_state: int,
) -> torch.Tensor:
    """Return J(pi) = E_pi[R] - beta KL(pi || pi_ref) exactly, by a forward pass.

    Args:
        mdp: the MDP (``action_log_base`` = log pi_ref, deterministic or stochastic).
        log_policy: ``log_pi[t, s, a]`` of shape (T, S, A) (normalised over a; -inf
            allowed where pi_ref = 0).
        step_rewards: ``r[s, a]``, shape (S, A).
        beta: KL weight > 0.
        initial_state: the context's start state s_0.

    Returns:
        Scalar tensor J(pi).

    Raises:
        ValueError: if pi puts mass where pi_ref = 0 (infinite KL).
    """
    if log_policy.shape != (mdp.horizon, mdp.num_states, mdp.num_actions):
        raise ValueError(
            f"log_policy must have shape (T, S, A) = ({mdp.horizon}, {mdp.num_states}, "
            f"{mdp.num_actions}); got {tuple(log_policy.shape)}"
        )
    policy = log_policy.exp()
    if (policy * torch.isinf(mdp.action_log_base)).sum() > 0:
        raise ValueError("log_policy puts mass on actions with pi_ref = 0 (KL is infinite)")
    transitions = mdp.dense_transitions()
    occupancy = torch.zeros(mdp.num_states, dtype=policy.dtype)
    occupancy[initial_state] = 1.0
    total = torch.zeros((), dtype=policy.dtype)
    for t in range(mdp.horizon):
        log_ratio = torch.where(policy[t] > 0, log_policy[t] - mdp.action_log_base,
                                torch.zeros_like(policy[t]))
        per_sa = policy[t] * (step_rewards - beta * log_ratio)
        total = total + (occupancy.unsqueeze(-1) * per_sa).sum()
        occupancy = torch.einsum("s,sa,sap->p", occupancy, policy[t], transitions)
    return total
