"""The compiled soft-Bellman kernel (bayes_irl/soft_bellman_kernel.py) against references.

References independent of the kernel: brute-force enumeration of every trajectory of a tiny
MDP (log Z and its gradient, the expected state-action visits), and the log-space torch
recursion differentiated by autograd (``_soft_values_reference``) on larger random MDPs,
with batches and rewards spread far enough for the exp-space sums to underflow.
Tolerances are float64 rounding of sums of O(T·S·A·F) terms: 1e-10 absolute at O(1)-O(10)
values (ulps ~1e-15); relative 1e-11 where values reach ~1e3.
"""

import numpy as np
import pytest
import torch

from bayes_irl import GridWorld, soft_bellman_kernel
from bayes_irl.soft_bellman import _soft_values_reference
from bayes_irl.soft_bellman_kernel import (
    CAUSAL,
    GLOBAL,
    kind_code,
    padded_transitions,
    soft_bellman_adjoint,
    soft_bellman_forward,
)
from tests.helpers import (
    all_trajectories,
    brute_force_log_weights,
    random_sparse_mdp,
    tiny_mdp,
)


def _rows(mdp):
    return padded_transitions(mdp.successors.numpy(), mdp.successor_log_probs.exp().numpy())


def _kernel(mdp, local, kind, grad_values):
    """Values (B, T + 1, S) and dL/dlocal (B, S, A) for L = sum grad_values * V."""
    succ, probs = _rows(mdp)
    flat = np.ascontiguousarray(local.reshape(local.shape[0], -1))
    values, policies, sums = soft_bellman_forward(
        flat, succ, probs, mdp.num_actions, mdp.horizon, kind_code(kind))
    grad = soft_bellman_adjoint(grad_values, values, policies, sums, succ, probs,
                                mdp.num_actions, kind_code(kind))
    return values, grad.reshape(local.shape)


def _reference(mdp, local, kind, grad_values):
    source = torch.as_tensor(local).requires_grad_(True)
    values = _soft_values_reference(mdp, source, kind)
    (grad,) = torch.autograd.grad(values, source, torch.as_tensor(grad_values))
    return values.detach().numpy(), grad.numpy()


@pytest.mark.parametrize("seed", [0, 1])
def test_global_kernel_equals_enumeration(seed):
    # log Z = log sum_x b(x) exp R(x) over all 3^4 * 2^3 trajectories, and its gradient in
    # the step rewards: the expected visit counts of (s, a) under P(x) = b exp R / Z.
    mdp = tiny_mdp(seed=seed)
    gen = torch.Generator().manual_seed(seed)
    rewards = torch.randn(mdp.num_states, mdp.num_actions, generator=gen, dtype=torch.float64)
    local = (rewards + mdp.action_log_base).numpy()[None]
    log_p0 = mdp.initial.log().numpy()
    probe = np.zeros((1, mdp.horizon + 1, mdp.num_states))
    values, _ = _kernel(mdp, local, "global", probe)
    log_z = np.logaddexp.reduce(values[0, 0] + log_p0)
    weights = np.exp(values[0, 0] + log_p0 - log_z)
    probe[0, 0] = weights  # d log Z / d V_0
    _, grad = _kernel(mdp, local, "global", probe)
    xs = all_trajectories(mdp)
    log_w = brute_force_log_weights(mdp, rewards, xs)
    p = torch.softmax(log_w, 0)
    visits = torch.zeros(mdp.num_states, mdp.num_actions, dtype=torch.float64)
    for t in range(mdp.horizon):
        visits.index_put_((xs[:, t, 0], xs[:, t, 1]), p, accumulate=True)
    assert abs(log_z - torch.logsumexp(log_w, 0).item()) < 1e-10
    np.testing.assert_allclose(grad[0], visits.numpy(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", ["global", "causal"])
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_kernel_equals_the_autograd_reference(kind, scale):
    # A random sparse MDP (36 states, fan-out 3), a batch of 3 reward tables, and random
    # dL/dV at every t: values and the adjoint against autograd through the log-space twin.
    mdp, _ = random_sparse_mdp(seed=4)
    rng = np.random.default_rng(0)
    local = (scale * rng.standard_normal((3, mdp.num_states, mdp.num_actions))
             + mdp.action_log_base.numpy())
    grad_values = rng.standard_normal((3, mdp.horizon + 1, mdp.num_states))
    values, grad = _kernel(mdp, local, kind, grad_values)
    ref_values, ref_grad = _reference(mdp, local, kind, grad_values)
    np.testing.assert_allclose(values, ref_values, rtol=1e-11, atol=1e-10)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-11, atol=1e-10)


@pytest.mark.parametrize("kind", ["global", "causal"])
def test_far_rows_take_the_log_space_route(kind):
    # Rewards spread over ~3000 nats per state (one very good state): for most (s, a) the
    # exp-space sum g = P exp(V' - max V') is below exp(-600) and below float64's normal
    # range; those rows are recomputed in log space inside the kernel. Checked: the far
    # rows exist, and values and gradients still equal the log-space reference.
    world = GridWorld.create(size=4, num_features=2, horizon=6, slip=0.2, seed=0)
    mdp = world.mdp
    rng = np.random.default_rng(1)
    local = rng.uniform(-3000, 0, (1, mdp.num_states, mdp.num_actions))
    local[0, 5] += 3000
    local += mdp.action_log_base.numpy()
    grad_values = rng.standard_normal((1, mdp.horizon + 1, mdp.num_states))
    values, grad = _kernel(mdp, local, kind, grad_values)
    ref_values, ref_grad = _reference(mdp, local, kind, grad_values)
    np.testing.assert_allclose(values, ref_values, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-10)
    if kind == "global":
        following = values[0, 1]
        g = np.exp(following - following.max())[mdp.successors.numpy()]
        g = (g * mdp.successor_log_probs.exp().numpy()).sum(-1)
        assert (g < np.exp(-600)).mean() > 0.3


def test_forbidden_actions():
    # -inf local scores (a zero action base measure) are allowed while every state keeps a
    # finite action: the kernel gives zero policy mass and zero gradient there.
    mdp = tiny_mdp(seed=2, num_states=4, num_actions=3, horizon=4)
    rng = np.random.default_rng(2)
    local = rng.standard_normal((1, 4, 3))
    local[0, 1, 2] = local[0, 3, 0] = -np.inf
    grad_values = rng.standard_normal((1, 5, 4))
    for kind in ("global", "causal"):
        values, grad = _kernel(mdp, local, kind, grad_values)
        ref_values, ref_grad = _reference(mdp, local, kind, grad_values)
        np.testing.assert_allclose(values, ref_values, rtol=0, atol=1e-12)
        np.testing.assert_allclose(grad, ref_grad, rtol=0, atol=1e-12)
        assert grad[0, 1, 2] == 0 and grad[0, 3, 0] == 0


def test_numpy_and_loop_primitives_agree():
    # The four primitives have a NumPy and a loop implementation (the second runs compiled
    # by default, the first under NUMBA_DISABLE_JIT=1); same sums in another order: 1e-13.
    import numba

    mdp, _ = random_sparse_mdp(seed=1)
    succ, probs = _rows(mdp)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(mdp.num_states)
    y = rng.standard_normal(len(succ))
    q = rng.standard_normal(len(succ))
    k = soft_bellman_kernel
    compile_ = (lambda f: f) if numba.config.DISABLE_JIT else numba.njit
    np.testing.assert_allclose(compile_(k._expect_loops)(x, succ, probs),
                               k._expect_numpy(x, succ, probs), rtol=0, atol=1e-13)
    np.testing.assert_allclose(compile_(k._transpose_loops)(y, succ, probs, mdp.num_states),
                               k._transpose_numpy(y, succ, probs, mdp.num_states),
                               rtol=0, atol=1e-13)
    pol_a, pol_b = np.empty(len(q)), np.empty(len(q))
    v_a = compile_(k._softmax_loops)(q, mdp.num_actions, pol_a)
    v_b = k._softmax_numpy(q, mdp.num_actions, pol_b)
    np.testing.assert_allclose(v_a, v_b, rtol=0, atol=1e-13)
    np.testing.assert_allclose(pol_a, pol_b, rtol=0, atol=1e-13)
    scaled, g = np.exp(q), np.exp(rng.standard_normal(len(q)))
    v_a = compile_(k._weighted_loops)(scaled, g, mdp.num_actions, pol_a)
    v_b = k._weighted_numpy(scaled, g, mdp.num_actions, pol_b)
    np.testing.assert_allclose(v_a, v_b, rtol=0, atol=1e-13)
    np.testing.assert_allclose(pol_a, pol_b, rtol=0, atol=1e-13)


def test_codes_and_errors():
    assert kind_code("global") == GLOBAL and kind_code("causal") == CAUSAL
    with pytest.raises(ValueError, match="kind must be 'global' or 'causal'; got 'soft'"):
        kind_code("soft")
    with pytest.raises(ValueError, match="same shape"):
        padded_transitions(np.zeros((2, 3), dtype=int), np.ones((2, 2)))
    with pytest.raises(ValueError, match="positive mass"):
        padded_transitions(np.zeros((2, 2), dtype=int), np.array([[1.0, 0.0], [0.0, 0.0]]))
    succ, probs = padded_transitions(np.array([[0, 1, 2]]), np.array([[0.0, 0.7, 0.3]]))
    assert succ.tolist() == [[1, 1, 2]] and probs.tolist() == [[0.0, 0.7, 0.3]]
