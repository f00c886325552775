"""EPIC, DARD and STARC: their defining invariances, the triangle inequality, batching."""

import gymnasium as gym
import pytest
import torch

from bayes_irl import GridWorld, LinearReward, TabularMDP
from bayes_irl.reward_distances import (
    METRICS,
    canonicalize,
    posterior_reward_distances,
    reward_distance,
)

GAMMA = 0.9


@pytest.fixture(scope="module", params=["gridworld", "frozenlake"])
def mdp(request):
    if request.param == "gridworld":
        return GridWorld.create(size=3, slip=0.2, seed=0).mdp  # S = 9, A = 5, stochastic
    return TabularMDP.from_gymnasium(gym.make("FrozenLake-v1", is_slippery=True), horizon=5)


def _shaped(r, phi, scale, gamma=GAMMA):
    full = r if r.dim() == 3 else r.unsqueeze(-1).expand(*r.shape, r.shape[0])
    return scale * (full + gamma * phi[None, None, :] - phi[:, None, None])


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("transition_reward", [False, True])
def test_zero_for_potential_shaping_and_positive_scaling(mdp, metric, transition_reward):
    g = torch.Generator().manual_seed(0)
    s, a = mdp.num_states, mdp.num_actions
    for trial in range(5):
        shape = (s, a, s) if transition_reward else (s, a)
        r = torch.randn(shape, generator=g, dtype=torch.float64)
        phi = 3 * torch.randn(s, generator=g, dtype=torch.float64)
        scale = float(torch.empty(()).uniform_(0.01, 100, generator=g))
        d = reward_distance(mdp, r, _shaped(r, phi, scale), metric=metric, discount=GAMMA)
        # the bar: exact up to float64 rounding
        assert d.abs().item() < 1e-10, (trial, d.item())
        other = torch.randn((s, a), generator=g, dtype=torch.float64)
        assert reward_distance(mdp, r, other, metric=metric, discount=GAMMA) > 0.05


@pytest.mark.parametrize("metric", METRICS)
def test_triangle_inequality_symmetry_range(mdp, metric):
    g = torch.Generator().manual_seed(1)
    s, a = mdp.num_states, mdp.num_actions
    rewards = torch.randn(30, s, a, s, generator=g, dtype=torch.float64)
    # a few near neighbours too, where the inequality is tightest
    rewards[10:20] = rewards[:10] + 0.05 * torch.randn(
        10, s, a, s, generator=g, dtype=torch.float64
    )
    d = reward_distance(mdp, rewards[:, None], rewards[None, :], metric=metric, discount=GAMMA)
    assert d.shape == (30, 30)
    torch.testing.assert_close(d, d.T, rtol=0, atol=1e-12)
    assert torch.all(d >= 0) and torch.all(d <= 1 + 1e-12)
    assert torch.all(d.diagonal().abs() < 1e-10)
    # d(i, k) <= d(i, j) + d(j, k) for all 27 000 triples (1e-12: rounding only)
    lhs = d[:, None, :]  # (i, 1, k)
    rhs = d[:, :, None] + d[None, :, :]  # d(i, j) + d(j, k) -> (i, j, k)
    assert torch.all(lhs <= rhs + 1e-12), (lhs - rhs).max()


@pytest.mark.parametrize("metric", ["epic", "dard"])
def test_pearson_metrics_opposite_reward_is_at_distance_one(mdp, metric):
    r = torch.randn(mdp.num_states, mdp.num_actions, dtype=torch.float64)
    d = reward_distance(mdp, r, -2 * r, metric=metric, discount=GAMMA)
    assert d.item() == pytest.approx(1.0, abs=1e-12)


def test_canonical_forms_are_shaping_free(mdp):
    r = torch.randn(mdp.num_states, mdp.num_actions, dtype=torch.float64)
    phi = torch.randn(mdp.num_states, dtype=torch.float64)
    for metric in METRICS:
        c1 = canonicalize(mdp, r, metric=metric, discount=GAMMA)
        c2 = canonicalize(mdp, _shaped(r, phi, 1.0), metric=metric, discount=GAMMA)
        torch.testing.assert_close(c1, c2, rtol=0, atol=1e-10)


def test_posterior_distances_and_errors(mdp):
    reward = LinearReward(mdp.features)
    draws = torch.randn(7, mdp.num_features, dtype=torch.float64)
    ref = reward.step_rewards(draws[0])
    d = posterior_reward_distances(
        mdp, reward, draws, reference=ref, metric="starc", discount=GAMMA
    )
    assert d.shape == (7,) and d[0].abs() < 1e-10
    loop = torch.stack(
        [
            reward_distance(mdp, reward.step_rewards(t), ref, metric="starc", discount=GAMMA)
            for t in draws
        ]
    )
    torch.testing.assert_close(d, loop, rtol=0, atol=1e-12)
    pair = posterior_reward_distances(mdp, reward, draws, other_draws=draws.flip(0), discount=GAMMA)
    assert pair.shape == (7,) and pair[3].abs() < 1e-10  # the middle draw meets itself
    with pytest.raises(ValueError, match="exactly one of"):
        posterior_reward_distances(mdp, reward, draws)
    with pytest.raises(ValueError, match="metric must be one of"):
        reward_distance(mdp, ref, ref, metric="l2")
    with pytest.raises(ValueError, match=r"discount must lie in \(0, 1\)"):
        reward_distance(mdp, ref, ref, metric="starc", discount=1.0)
    with pytest.raises(ValueError, match="reward must have shape"):
        reward_distance(mdp, ref[:-1], ref)
    with pytest.raises(ValueError, match="constant"):
        reward_distance(mdp, torch.ones_like(ref), ref)
    with pytest.raises(ValueError, match="finite"):
        reward_distance(mdp, torch.full_like(ref, float("nan")), ref)
