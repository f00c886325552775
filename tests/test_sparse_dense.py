"""Sparse vs dense transitions and the compiled kernel vs the log-space reference.

All comparisons are float64 at 1e-10: the quantities are sums of O(T·S·A·F) positive terms
computed in different orders (exp space with a shift vs log space), so they agree to a few
ulps of log Z (|log Z| < 1e3 here, ulp ~1e-13); 1e-10 leaves room for that and nothing else.
"""

import numpy as np
import pytest
import torch

from bayes_irl import GridWorld, TabularMDP
from bayes_irl.inference import ExactNormalizer
from bayes_irl.soft_bellman import soft_values

ATOL = 1e-10


def _random_dense_mdp(num_states=6, num_actions=3, horizon=5, seed=0, zeros=True):
    rng = np.random.default_rng(seed)
    p = rng.random((num_states, num_actions, num_states))
    if zeros:  # a sparse-ish pattern with varying fan-out per (s, a)
        p[p < 0.5] = 0.0
        p[..., 0] += 1e-3
    p /= p.sum(-1, keepdims=True)
    init = rng.random(num_states)
    init /= init.sum()
    feats = rng.standard_normal((num_states, num_actions, 2))
    return TabularMDP.from_dense(transitions=p, initial=init, features=feats, horizon=horizon)


@pytest.mark.parametrize("kind", ["global", "causal"])
def test_gridworld_sparse_equals_dense(kind):
    world = GridWorld.create(size=4, horizon=7, seed=1)
    sparse = world.mdp
    dense = TabularMDP.from_dense(
        transitions=sparse.dense_transitions(),
        initial=sparse.initial,
        features=sparse.features,
        horizon=sparse.horizon,
    )
    # the grid stores duplicate successors (wall moves); the dense form merges them, so
    # the two MDPs really hold different successor lists
    nonzero = lambda m: int((m.successor_log_probs > -torch.inf).sum())  # noqa: E731
    assert nonzero(dense) < nonzero(sparse)
    rewards = world.true_step_rewards()
    v_sparse = soft_values(sparse, rewards, kind=kind)
    v_dense = soft_values(dense, rewards, kind=kind)
    torch.testing.assert_close(v_sparse, v_dense, atol=ATOL, rtol=0)
    if kind == "global":
        z_sparse = ExactNormalizer(sparse).log_normalizer(world.reward_model, world.true_weights)
        z_dense = ExactNormalizer(dense).log_normalizer(world.reward_model, world.true_weights)
        assert abs(z_sparse.item() - z_dense.item()) < ATOL


@pytest.mark.parametrize("kind", ["global", "causal"])
@pytest.mark.parametrize("batch", [(), (3,), (2, 2)])
def test_fast_backend_matches_reference(kind, batch):
    mdp = _random_dense_mdp()
    gen = torch.Generator().manual_seed(0)
    rewards = torch.randn(*batch, 6, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    fast = soft_values(mdp, rewards, kind=kind, backend="sparse")
    ref = soft_values(mdp, rewards, kind=kind, backend="reference")
    assert fast.shape == batch + (mdp.horizon + 1, 6)
    torch.testing.assert_close(fast, ref, atol=ATOL, rtol=0)
    weights = torch.randn(fast.shape, generator=gen, dtype=torch.float64)
    (g_fast,) = torch.autograd.grad((fast * weights).sum(), rewards)
    (g_ref,) = torch.autograd.grad((ref * weights).sum(), rewards)
    torch.testing.assert_close(g_fast, g_ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("kind", ["global", "causal"])
def test_fast_backend_second_derivatives(kind):
    # Laplace needs Hessians: the hand-written backward must be differentiable again.
    mdp = _random_dense_mdp(num_states=4, num_actions=2, horizon=3)
    rewards = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda r: soft_values(mdp, r, kind=kind), (rewards,))
    assert torch.autograd.gradgradcheck(lambda r: soft_values(mdp, r, kind=kind), (rewards,))


def test_underflow_is_exact():
    # Rewards spread over ~3000 nats: exp-space sums underflow float64; the kernel takes
    # its log-space route for those rows (tests/test_soft_bellman_kernel.py checks that it does)
    # and must still equal the log-space reference.
    mdp = _random_dense_mdp(horizon=4)
    rewards = torch.linspace(-3000, 0, 18, dtype=torch.float64).reshape(6, 3)
    rewards.requires_grad_(True)
    fast = soft_values(mdp, rewards)
    ref = soft_values(mdp, rewards, backend="reference")
    assert torch.isfinite(fast).all()
    torch.testing.assert_close(fast, ref, atol=ATOL, rtol=0)
    (g_fast,) = torch.autograd.grad(fast[0].sum(), rewards)
    (g_ref,) = torch.autograd.grad(ref[0].sum(), rewards)
    torch.testing.assert_close(g_fast, g_ref, atol=ATOL, rtol=0)


def test_masked_actions_are_exact():
    # -inf action base measure (forbidden actions) is handled exactly.
    mdp = _random_dense_mdp()
    base = torch.zeros(6, 3, dtype=torch.float64)
    base[0, 1] = -torch.inf
    masked = TabularMDP.from_sparse(
        successors=mdp.successors,
        successor_probs=mdp.successor_log_probs.exp(),
        initial=mdp.initial,
        features=mdp.features,
        horizon=mdp.horizon,
        action_log_base=base,
    )
    rewards = torch.randn(6, 3, dtype=torch.float64)
    torch.testing.assert_close(
        soft_values(masked, rewards), soft_values(masked, rewards, backend="reference"),
        atol=ATOL, rtol=0,
    )


def test_float32_rewards_are_computed_in_float64():
    # float32 rewards: the kernel runs in float64 and casts back, so values and gradients
    # equal the float64 reference to float32 rounding (values ~10: 1e-5 absolute).
    mdp = _random_dense_mdp()
    rewards = torch.randn(2, 6, 3, dtype=torch.float64)
    single = rewards.float().requires_grad_(True)
    values = soft_values(mdp, single, kind="global")
    assert values.dtype == torch.float32
    ref = soft_values(mdp, rewards.requires_grad_(True), kind="global", backend="reference")
    torch.testing.assert_close(values.double(), ref, atol=1e-5, rtol=0)
    (grad,) = torch.autograd.grad(values[:, 0].sum(), single)
    (ref_grad,) = torch.autograd.grad(ref[:, 0].sum(), rewards)
    assert grad.dtype == torch.float32
    torch.testing.assert_close(grad.double(), ref_grad, atol=1e-5, rtol=0)


def test_unknown_backend_raises():
    mdp = _random_dense_mdp()
    with pytest.raises(ValueError, match="backend must be"):
        soft_values(mdp, torch.zeros(6, 3, dtype=torch.float64), backend="dense")
