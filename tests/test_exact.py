"""The exact recursion against brute-force enumeration (the reference for everything else)."""

import pytest
import torch

from bayes_irl import LinearReward
from bayes_irl.inference import ExactNormalizer
from bayes_irl.models import MaxEntTrajectory
from bayes_irl.soft_bellman import log_partition, sample_maxent_trajectories, soft_values
from tests.helpers import (
    all_trajectories,
    as_theta,
    brute_force_log_weights,
    maxent,
    table_reward,
    tiny_mdp,
)

# float64 throughout: enumeration and recursion then agree to ~1e-15 relative, so 1e-8 is a
# safe bound that still catches any missing term (each term is O(1)).
TOL = 1e-8


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("action_base", [False, True])
def test_log_z_equals_enumeration(seed, action_base):
    mdp = tiny_mdp(seed=seed, action_base=action_base)
    theta = torch.randn(mdp.num_features, dtype=torch.float64)
    r = torch.einsum("k,sak->sa", theta, mdp.features)
    xs = all_trajectories(mdp)
    log_w = brute_force_log_weights(mdp, r, xs)
    expected = torch.logsumexp(log_w[torch.isfinite(log_w)], 0)
    actual = ExactNormalizer(mdp).log_normalizer(LinearReward(mdp.features), theta)
    assert torch.allclose(actual, expected, atol=TOL, rtol=0)
    assert torch.allclose(log_partition(mdp, r), expected, atol=TOL, rtol=0)


def test_gradient_is_expected_minus_empirical_feature_counts():
    mdp = tiny_mdp(seed=3)
    xs = all_trajectories(mdp)
    phi = torch.zeros(len(xs), mdp.num_features, dtype=torch.float64)
    for t in range(mdp.horizon):
        phi += mdp.features[xs[:, t, 0], xs[:, t, 1]]
    theta = torch.randn(mdp.num_features, dtype=torch.float64, requires_grad=True)
    r = torch.einsum("k,sak->sa", theta, mdp.features)
    reward = LinearReward(mdp.features)
    log_z = ExactNormalizer(mdp).log_normalizer(reward, theta)
    (grad_log_z,) = torch.autograd.grad(log_z, theta)
    with torch.no_grad():
        p = torch.softmax(brute_force_log_weights(mdp, r, xs), 0)
    expected_phi = (p[:, None] * phi).sum(0)
    assert torch.allclose(grad_log_z, expected_phi, atol=TOL, rtol=0)

    # Log-likelihood gradient of some demonstrations: empirical minus expected counts.
    demos = xs[torch.tensor([0, 5, 17, 40])]
    d = MaxEntTrajectory(theta, reward, ExactNormalizer(mdp))
    (grad_ll,) = torch.autograd.grad(d.log_prob(demos).sum(), theta)
    empirical = phi[torch.tensor([0, 5, 17, 40])].sum(0)
    assert torch.allclose(grad_ll, empirical - 4 * expected_phi, atol=TOL, rtol=0)


@pytest.mark.parametrize("kind", ["global", "causal"])
@pytest.mark.parametrize("given_initial_state", [False, True])
def test_distribution_normalised_over_all_trajectories(kind, given_initial_state):
    mdp = tiny_mdp(seed=4)
    r = torch.randn(mdp.num_states, mdp.num_actions, dtype=torch.float64)
    xs = all_trajectories(mdp)
    d = maxent(mdp, r, ExactNormalizer(mdp, kind=kind), given_initial_state=given_initial_state)
    lp = d.log_prob(xs)
    if given_initial_state:  # normalised for every start state separately
        for s0 in range(mdp.num_states):
            total = torch.logsumexp(lp[xs[:, 0, 0] == s0], 0)
            assert abs(total.item()) < TOL
    else:
        assert abs(torch.logsumexp(lp, 0).item()) < TOL


def test_global_log_prob_matches_enumeration_and_causal_differs():
    mdp = tiny_mdp(seed=5)
    r = torch.randn(mdp.num_states, mdp.num_actions, dtype=torch.float64)
    xs = all_trajectories(mdp)
    log_w = brute_force_log_weights(mdp, r, xs)
    finite = torch.isfinite(log_w)
    expected = log_w[finite] - torch.logsumexp(log_w[finite], 0)
    glob = maxent(mdp, r, ExactNormalizer(mdp)).log_prob(xs[finite])
    causal = maxent(mdp, r, ExactNormalizer(mdp, kind="causal")).log_prob(xs[finite])
    assert torch.allclose(glob, expected, atol=TOL, rtol=0)
    # With stochastic dynamics the two models are genuinely different distributions.
    assert (glob - causal).abs().max() > 1e-3


def test_causal_equals_global_with_deterministic_dynamics():
    mdp = tiny_mdp(seed=6, deterministic=True)
    r = torch.randn(mdp.num_states, mdp.num_actions, dtype=torch.float64)
    xs = all_trajectories(mdp)
    glob = maxent(mdp, r, ExactNormalizer(mdp)).log_prob(xs)
    causal = maxent(mdp, r, ExactNormalizer(mdp, kind="causal")).log_prob(xs)
    finite = torch.isfinite(glob)
    assert torch.equal(finite, torch.isfinite(causal))
    # Deterministic dynamics: the global model's initial-state tilt and the causal model's
    # untilted p0 differ, so compare conditional on s_0.
    g = maxent(mdp, r, ExactNormalizer(mdp), given_initial_state=True).log_prob(xs)
    c = maxent(mdp, r, ExactNormalizer(mdp, kind="causal"), given_initial_state=True)
    assert torch.allclose(g[finite], c.log_prob(xs)[finite], atol=TOL, rtol=0)


@pytest.mark.parametrize("kind", ["global", "causal"])
def test_truncated_trajectory_is_marginal_of_completions(kind):
    mdp = tiny_mdp(seed=7, horizon=3)
    r = torch.randn(mdp.num_states, mdp.num_actions, dtype=torch.float64)
    xs = all_trajectories(mdp)
    d = maxent(mdp, r, ExactNormalizer(mdp, kind=kind))
    lp = d.log_prob(xs)
    prefix = xs[30].clone()
    length = 1
    prefix[length + 1 :, 0] = -1
    prefix[length:, 1] = -1
    match = (xs[:, : length + 1, 0] == prefix[: length + 1, 0]).all(-1) & (
        xs[:, :length, 1] == prefix[:length, 1]
    ).all(-1)
    assert torch.allclose(d.log_prob(prefix), torch.logsumexp(lp[match], 0), atol=TOL, rtol=0)


@pytest.mark.parametrize("kind", ["global", "causal"])
def test_exact_sampler_frequencies_match_probabilities(kind):
    """Pearson chi-square goodness of fit of 20000 exact draws to the exact pmf.

    Cells with expected count < 5 are pooled; the test fails at the 0.1% level, so a
    correct sampler fails it once in a thousand seeds (seed fixed here).
    """
    scipy_stats = pytest.importorskip("scipy.stats")
    mdp = tiny_mdp(seed=8, horizon=2)
    r = torch.randn(mdp.num_states, mdp.num_actions, dtype=torch.float64)
    xs = all_trajectories(mdp)
    p = maxent(mdp, r, ExactNormalizer(mdp, kind=kind)).log_prob(xs).exp()
    n = 20000
    draws = sample_maxent_trajectories(
        mdp, r, n, kind=kind, generator=torch.Generator().manual_seed(1)
    )
    index = {tuple(x.flatten().tolist()): i for i, x in enumerate(xs)}
    counts = torch.zeros(len(xs), dtype=torch.float64)
    for x in draws:
        counts[index[tuple(x.flatten().tolist())]] += 1
    expected = p * n
    big = expected >= 5
    assert counts[~torch.isfinite(p.log())].sum() == 0  # never an impossible trajectory
    obs = torch.cat([counts[big], counts[~big].sum().reshape(1)])
    exp = torch.cat([expected[big], expected[~big].sum().reshape(1)])
    stat = ((obs - exp) ** 2 / exp.clamp(min=1e-12)).sum().item()
    dof = len(obs) - 1
    assert scipy_stats.chi2.sf(stat, dof) > 1e-3


def test_batched_rewards_match_loop():
    mdp = tiny_mdp(seed=9)
    r = torch.randn(4, 3, mdp.num_states, mdp.num_actions, dtype=torch.float64)
    values = soft_values(mdp, r)
    assert values.shape == (4, 3, mdp.horizon + 1, mdp.num_states)
    norm, reward = ExactNormalizer(mdp), table_reward(mdp)
    batched = norm.log_normalizer(reward, as_theta(r))
    looped = torch.stack(
        [
            torch.stack([norm.log_normalizer(reward, as_theta(r[i, j])) for j in range(3)])
            for i in range(4)
        ]
    )
    assert torch.allclose(batched, looped, atol=1e-12, rtol=0)


def test_errors_name_the_argument():
    mdp = tiny_mdp()
    with pytest.raises(ValueError, match="kind must be one of"):
        ExactNormalizer(mdp, kind="soft")
    with pytest.raises(ValueError, match=r"step_rewards must have shape \(\.\.\., S, A\)"):
        log_partition(mdp, torch.zeros(2, 2, dtype=torch.float64))
    reward = table_reward(mdp)
    with pytest.raises(ValueError, match=r"theta must have shape \(\.\.\., 6\)"):
        ExactNormalizer(mdp).log_normalizer(reward, torch.zeros(2, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="log_normalizer is defined for kind='global' only"):
        ExactNormalizer(mdp, kind="causal").log_normalizer(
            reward, torch.zeros(mdp.num_states * mdp.num_actions, dtype=torch.float64)
        )
    with pytest.raises(ValueError, match="space must be a TabularMDP"):
        ExactNormalizer(object())
