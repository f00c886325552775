"""Exact policy evaluation and planning against brute-force enumeration on tiny MDPs."""

import itertools

import pytest
import torch

from bayes_irl.policy_evaluation import (
    check_policy,
    expected_return,
    hard_optimal_policy,
    hitting_probability,
    optimal_value,
    regret,
    soft_optimal_policy,
    state_action_occupancy,
)
from bayes_irl.sequences import TokenSequenceEnv, enumerate_trajectories, policy_log_prob
from tests.helpers import all_trajectories, tiny_mdp

# float64 recursions against float64 enumeration: only round-off separates them
EXACT = {"rtol": 1e-10, "atol": 1e-10}


def _trajectory_probs(mdp, policy, trajectories):
    """p0(s_0) prod_t pi_t(a_t | s_t) p(s_{t+1} | s_t, a_t) for every trajectory (M,).

    ``policy`` may carry leading batch dims (..., T, S, A); returns shape (..., M).
    """
    dense = mdp.dense_transitions()
    s, a = trajectories[:, :, 0], trajectories[:, :-1, 1]
    steps = torch.arange(mdp.horizon)
    dynamics = mdp.initial[s[:, 0]] * dense[s[:, :-1], a, s[:, 1:]].prod(-1)  # (M,)
    choices = policy[..., steps, s[:, :-1], a].prod(-1)  # (..., M)
    return dynamics * choices


def _brute_force_return(mdp, policy, step_rewards, trajectories):
    probs = _trajectory_probs(mdp, policy, trajectories)
    s, a = trajectories[:, :-1, 0], trajectories[:, :-1, 1]
    returns = step_rewards[..., s, a].sum(-1)  # (..., M)
    return (returns * probs).sum(-1)


def _deterministic_policies(mdp):
    """Every deterministic time-dependent policy (A^(T S) of them), shape (P, T, S, A)."""
    T, S, A = mdp.horizon, mdp.num_states, mdp.num_actions
    choices = torch.tensor(list(itertools.product(range(A), repeat=T * S)))
    return torch.nn.functional.one_hot(choices, A).reshape(-1, T, S, A).to(mdp.dtype)


def _random_policy(mdp, seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(mdp.horizon, mdp.num_states, mdp.num_actions, generator=g)
    return torch.softmax(logits.to(mdp.dtype), -1)


@pytest.mark.parametrize("seed", [0, 1])
def test_expected_return_equals_enumeration(seed):
    mdp = tiny_mdp(seed=seed, horizon=3)
    policy = _random_policy(mdp, seed)
    rewards = torch.randn(4, mdp.num_states, mdp.num_actions, dtype=torch.float64)
    trajectories = all_trajectories(mdp)
    exact = expected_return(mdp, policy, rewards)
    brute = _brute_force_return(mdp, policy, rewards, trajectories)
    torch.testing.assert_close(exact, brute, **EXACT)
    occupancy = state_action_occupancy(mdp, policy)
    torch.testing.assert_close(occupancy.sum((-2, -1)), torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hard_optimal_policy_equals_best_enumerated_policy(seed):
    mdp = tiny_mdp(seed=seed, horizon=3, num_states=3, num_actions=2)
    rewards = torch.randn(mdp.num_states, mdp.num_actions, dtype=torch.float64)
    plan = hard_optimal_policy(mdp, rewards)
    trajectories = all_trajectories(mdp)
    policies = _deterministic_policies(mdp)  # 512 policies
    brute = _brute_force_return(mdp, policies, rewards, trajectories)
    torch.testing.assert_close(expected_return(mdp, plan.policy, rewards), brute.max(), **EXACT)
    torch.testing.assert_close(optimal_value(mdp, rewards), brute.max(), **EXACT)
    # the recursion's policy is optimal from every state, not just on average
    per_start = torch.eye(mdp.num_states, dtype=torch.float64)
    for s in range(mdp.num_states):
        values = expected_return(mdp, policies, rewards, initial=per_start[s])
        torch.testing.assert_close(plan.values[0, s], values.max(), **EXACT)
    # regret is zero for the optimal policy and equals the gap for every other one
    zero = torch.zeros((), dtype=torch.float64)
    torch.testing.assert_close(regret(mdp, plan.policy, rewards), zero, **EXACT)
    gaps = regret(mdp, policies, rewards)
    torch.testing.assert_close(gaps, brute.max() - brute, **EXACT)


def test_hard_optimal_batched_over_rewards_matches_one_at_a_time():
    mdp = tiny_mdp(seed=3, horizon=4)
    rewards = torch.randn(5, mdp.num_states, mdp.num_actions, dtype=torch.float64)
    batched = hard_optimal_policy(mdp, rewards)
    for i in range(5):
        single = hard_optimal_policy(mdp, rewards[i])
        torch.testing.assert_close(batched.values[i], single.values, **EXACT)
        torch.testing.assert_close(batched.policy[i], single.policy)


def test_soft_optimal_policy_reproduces_maxent_sequence_distribution():
    # token environment: deterministic dynamics, pi_ref as base measure, so the soft policy
    # at temperature beta is the KL-regularised optimum pi_ref exp(R / beta) / Z, enumerated
    env = TokenSequenceEnv.create(num_contexts=1, vocab_size=3, max_length=3, seed=1)
    beta = 0.7
    rewards = env.true_step_rewards()
    plan = soft_optimal_policy(env.mdp, rewards, temperature=beta)
    responses = enumerate_trajectories(env.mdp, env.state(0, None))
    returns = env.reward_model.returns(env.true_weights, responses[..., 0], responses[..., :-1, 1])
    logits = env.reference_log_prob(responses) + returns / beta
    brute = logits - torch.logsumexp(logits, 0)
    torch.testing.assert_close(policy_log_prob(plan.policy.log(), responses), brute, **EXACT)
    # the hard planner never picks tokens with pi_ref = 0, and its value is the best response
    hard = hard_optimal_policy(env.mdp, rewards)
    check_policy(env.mdp, hard.policy)
    torch.testing.assert_close(optimal_value(env.mdp, rewards), returns.max(), **EXACT)


def test_soft_policy_tends_to_hard_policy_as_temperature_falls():
    mdp = tiny_mdp(seed=4, horizon=3, action_base=False)
    rewards = torch.randn(mdp.num_states, mdp.num_actions, dtype=torch.float64)
    cold = soft_optimal_policy(mdp, rewards, temperature=1e-3)
    hard = hard_optimal_policy(mdp, rewards)
    # the Q gaps of a random Gaussian reward are O(0.1), so at tau = 1e-3 the soft policy
    # differs from the argmax by exp(-gap / tau) < 1e-20
    torch.testing.assert_close(cold.policy, hard.policy, rtol=0, atol=1e-8)


def test_hitting_probability_equals_enumeration():
    mdp = tiny_mdp(seed=5, horizon=3)
    policy = _random_policy(mdp, 5)
    mask = torch.tensor([False, False, True])
    trajectories = all_trajectories(mdp)
    probs = _trajectory_probs(mdp, policy, trajectories)
    visits = mask[trajectories[:, :, 0]].any(-1)
    torch.testing.assert_close(hitting_probability(mdp, policy, mask), probs[visits].sum(), **EXACT)


def test_stationary_policy_is_broadcast_and_gradients_flow():
    mdp = tiny_mdp(seed=6, horizon=3)
    logits = torch.zeros(mdp.num_states, mdp.num_actions, dtype=torch.float64, requires_grad=True)
    rewards = torch.randn(mdp.num_states, mdp.num_actions, dtype=torch.float64)
    value = expected_return(mdp, torch.softmax(logits, -1), rewards)
    (grad,) = torch.autograd.grad(value, logits)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


@pytest.mark.parametrize(
    "policy, match",
    [
        (torch.ones(3, 2), "sum to 1"),
        (torch.full((3, 2), float("nan")), "finite"),
        (torch.ones(3, 3, 5) / 5, "shape"),
        (torch.ones(2, 3, 2) / 2, "T = 3 steps"),
        (torch.tensor([[1.5, -0.5]] * 3), "non-negative"),
        ([[0.5, 0.5]] * 3, "torch.Tensor"),
    ],
)
def test_bad_policies_are_rejected(policy, match):
    mdp = tiny_mdp(seed=0, horizon=3)
    with pytest.raises(ValueError, match=match):
        check_policy(mdp, policy)


def test_other_bad_inputs_are_rejected():
    mdp = tiny_mdp(seed=0, horizon=3)
    policy = torch.full((3, 2), 0.5, dtype=torch.float64)
    rewards = torch.zeros(3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="initial must sum to 1"):
        expected_return(mdp, policy, rewards, initial=torch.ones(3))
    with pytest.raises(ValueError, match="step_rewards must have shape"):
        expected_return(mdp, policy, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="bool mask"):
        hitting_probability(mdp, policy, torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match="temperature"):
        soft_optimal_policy(mdp, rewards, temperature=0.0)
    with pytest.raises(ValueError, match="finite"):
        hard_optimal_policy(mdp, torch.full((3, 2), float("nan"), dtype=torch.float64))
    env = TokenSequenceEnv.create(num_contexts=1, vocab_size=3, max_length=2, seed=0)
    uniform = torch.full((env.mdp.num_states, env.mdp.num_actions), 1 / 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="zero base measure"):
        check_policy(env.mdp, uniform)


def test_sampled_episodes_match_the_exact_return_and_hitting_probability():
    from bayes_irl.policy_evaluation import sample_trajectories
    from bayes_irl.trajectories import trajectory_returns

    mdp = tiny_mdp(seed=7, horizon=3)
    policy = _random_policy(mdp, 7)
    rewards = torch.randn(mdp.num_states, mdp.num_actions, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    episodes = sample_trajectories(mdp, policy, 20000, generator=g)
    returns = trajectory_returns(rewards, episodes[..., 0], episodes[..., :-1, 1])
    # Monte Carlo mean of 20000 episodes: 4 standard errors
    tol = 4 * returns.std() / 20000**0.5
    assert abs(returns.mean() - expected_return(mdp, policy, rewards)) < tol
    mask = torch.tensor([True, False, False])
    freq = mask[episodes[..., 0]].any(-1).double().mean()
    p = hitting_probability(mdp, policy, mask)
    assert abs(freq - p) < 4 * (p * (1 - p) / 20000) ** 0.5
