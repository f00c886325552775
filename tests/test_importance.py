"""Importance normaliser and proposals, checked against the exact recursion."""

import math

import pytest
import torch
from helpers import exact_state_marginals

from bayes_irl import GridWorld
from bayes_irl.inference import ExactNormalizer
from bayes_irl.inference.normalizers.importance import (
    ImportanceNormalizer,
    ImportanceSamplingError,
    ImportanceWarning,
    PolicyProposal,
    TwistedProposal,
)
from bayes_irl.models import MaxEntTrajectory
from bayes_irl.policies import TabularPolicy
from bayes_irl.trajectories import trajectory_returns


@pytest.fixture(scope="module")
def tiny():
    return GridWorld.create(size=3, slip=0.1, horizon=4, num_features=2, seed=0)


# ---------------------------------------------------------------- TabularPolicy
def test_policy_log_prob_entropy_and_sampling():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 2, generator=g, dtype=torch.float64)
    policy = TabularPolicy(4, 2, 3, logits=logits)
    states = torch.tensor([[0, 1, 3], [2, 2, -1]])
    actions = torch.tensor([[1, 0, 1], [0, 1, -1]])
    log_pi = torch.log_softmax(logits, -1)
    expected = torch.stack([
        log_pi[0, 0, 1] + log_pi[1, 1, 0] + log_pi[2, 3, 1],
        log_pi[0, 2, 0] + log_pi[1, 2, 1],  # step 2 unobserved: contributes 0
    ])
    torch.testing.assert_close(policy.log_prob(states, actions), expected)
    assert policy.entropy().shape == (3, 4)
    torch.testing.assert_close(TabularPolicy(4, 2, 3).entropy(), torch.full((3, 4), math.log(2),
                               dtype=torch.float64))
    # 20000 draws: the frequency's sd is <= 0.0036, so 0.02 is > 5 sd
    draws = policy.sample(1, torch.full((20000,), 2), generator=g)
    freq = (draws == 1).double().mean()
    assert abs(freq - log_pi[1, 2, 1].exp()) < 0.02


def test_policy_errors():
    with pytest.raises(ValueError, match="num_states"):
        TabularPolicy(0, 2, 3)
    with pytest.raises(ValueError, match="logits must have shape"):
        TabularPolicy(4, 2, 3, logits=torch.zeros(3, 4))
    with pytest.raises(ValueError, match="states and actions"):
        TabularPolicy(4, 2, 3).log_prob(torch.zeros(2, 2, dtype=torch.long),
                                        torch.zeros(2, 2, dtype=torch.long))


# ---------------------------------------------------------------- estimates
def test_untrained_guide_within_three_standard_errors(tiny):
    # Uniform guide policy, K = 1000, 20 seeds: |log Z_hat - log Z| <= 3 delta-method
    # standard errors should hold ~99% of the time for a Gaussian estimator; k-hat is
    # ~1-2 here so the s.e. itself is noisy, hence we require 18/20 rather than 20/20
    # (measured: 40/40 seeds covered).
    reward, theta = tiny.reward_model, tiny.true_weights
    exact = ExactNormalizer(tiny.mdp).log_normalizer(reward, theta).item()
    covered = 0
    for seed in range(20):
        norm = ImportanceNormalizer(PolicyProposal(tiny.mdp), num_samples=1000, seed=seed,
                                    khat_policy="ignore")
        est = norm.log_normalizer(reward, theta).item()
        covered += abs(est - exact) <= 3 * norm.diagnostics.log_z_std_error
    assert covered >= 18


def test_twisted_soft_backup_is_exact(tiny):
    # psi = V, pi = exp(Q - V): every log-weight equals log Z (zero variance), to rounding
    r = tiny.true_step_rewards()
    reward, theta = tiny.reward_model, tiny.true_weights
    exact = ExactNormalizer(tiny.mdp).log_normalizer(reward, theta)
    norm = ImportanceNormalizer(TwistedProposal(tiny.mdp).soft_backup_(r), num_samples=50)
    torch.testing.assert_close(norm.log_weights(reward, theta), exact.expand(50), rtol=0,
                               atol=1e-10)
    assert norm.diagnostics is None
    norm.log_normalizer(reward, theta)
    assert norm.diagnostics.ess == pytest.approx(50) and norm.diagnostics.khat < 0.7


def test_gradient_is_self_normalised_weights(tiny):
    norm = ImportanceNormalizer(PolicyProposal(tiny.mdp), num_samples=300, seed=3,
                                khat_policy="ignore")
    theta = tiny.true_weights.clone().requires_grad_(True)
    log_z = norm.log_normalizer(tiny.reward_model, theta)
    (grad,) = torch.autograd.grad(log_z, theta)
    with torch.no_grad():
        w = torch.softmax(norm.log_weights(tiny.reward_model, theta), -1)
        states, actions = norm.bank[:, :-1, 0], norm.bank[:, :-1, 1]
        counts = tiny.mdp.features[states, actions].sum(1)  # (K, D)
    torch.testing.assert_close(grad, (w[:, None] * counts).sum(0))


def test_batched_rewards_match_loop(tiny):
    norm = ImportanceNormalizer(PolicyProposal(tiny.mdp), num_samples=200, seed=1,
                                khat_policy="ignore")
    thetas = torch.randn(2, 3, 2, dtype=torch.float64)
    reward = tiny.reward_model
    batched = norm.log_normalizer(reward, thetas)
    assert batched.shape == (2, 3)
    loop = torch.stack([torch.stack([norm.log_normalizer(reward, thetas[i, j])
                                     for j in range(3)]) for i in range(2)])
    torch.testing.assert_close(batched, loop)


def test_simulator_gives_the_same_bank_distribution_as_known_dynamics(tiny):
    # The simulator draws s' with its own generator calls, the known-dynamics proposal by
    # table lookups, so the banks differ draw by draw; their distribution must not. Each
    # bank's state frequencies at every t within 5 binomial standard errors of q's exact
    # marginals (K = 50000), and the offsets are log b - log q of the drawn trajectories
    # (the dynamics cancel) in both.
    mdp = tiny.mdp

    def simulator(t, states, actions, generator):
        logits = mdp.successor_log_probs[states, actions]
        choice = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)
        return mdp.successors[states, actions].gather(-1, choice).squeeze(-1)

    num = 50_000
    known = PolicyProposal(mdp)
    exact = exact_state_marginals(known)
    for proposal in (known, PolicyProposal(mdp, simulator=simulator)):
        norm = ImportanceNormalizer(proposal, num_samples=num, seed=5)
        counts = torch.stack([torch.bincount(norm.bank[:, t, 0], minlength=mdp.num_states)
                              for t in range(mdp.horizon + 1)]).to(exact.dtype)
        se = (exact * (1 - exact) / num).sqrt().clamp(min=1e-12)
        assert float(((counts / num - exact).abs() / se).max()) < 5.0
        torch.testing.assert_close(norm.offsets, proposal.log_ratio(norm.bank).detach())


def test_khat_warning_and_raise():
    world = GridWorld.create(size=10, slip=0.1, horizon=20, num_features=4, seed=0)
    # the untrained uniform guide has k-hat ~ 7 here
    reward, theta = world.reward_model, world.true_weights
    norm = ImportanceNormalizer(PolicyProposal(world.mdp), num_samples=200, seed=0)
    with pytest.warns(ImportanceWarning, match="k-hat"):
        norm.log_normalizer(reward, theta)
    strict = ImportanceNormalizer(PolicyProposal(world.mdp), num_samples=200, seed=0,
                                  khat_policy="raise")
    with pytest.raises(ImportanceSamplingError, match="k-hat"):
        strict.log_normalizer(reward, theta)


def test_sir_sampling_matches_exact_feature_expectations(tiny):
    # With the exact twisted proposal the weights are equal, so SIR draws are exact draws
    # from P: the mean feature counts of 4000 draws must match d log Z / d theta within
    # 5 Monte-Carlo sds (sd of the count mean <= ~0.05 here).
    r = tiny.true_step_rewards()
    reward = tiny.reward_model
    norm = ImportanceNormalizer(TwistedProposal(tiny.mdp).soft_backup_(r), num_samples=4000,
                                seed=2)
    d = MaxEntTrajectory(tiny.true_weights, reward, norm)
    x = d.sample((4000,))
    assert x.shape == (4000, 5, 2)
    counts = tiny.mdp.features[x[:, :-1, 0], x[:, :-1, 1]].sum(1)
    theta = tiny.true_weights.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(ExactNormalizer(tiny.mdp).log_normalizer(reward, theta), theta)
    sd = counts.std(0) / math.sqrt(4000)
    assert ((counts.mean(0) - grad).abs() < 5 * sd).all()
    # batched rewards: sample_shape + batch_shape + event
    batched = MaxEntTrajectory(tiny.true_weights.expand(3, 2), reward, norm).sample((2,))
    assert batched.shape == (2, 3, 5, 2)
    # log_prob of full trajectories works with the estimated log Z
    assert torch.isfinite(d.log_prob(x[:10])).all()


def test_returns_helper(tiny):
    x, _ = PolicyProposal(tiny.mdp).draw(5, generator=torch.Generator().manual_seed(0))
    r = tiny.true_step_rewards()
    expected = torch.stack([sum(r[x[k, t, 0], x[k, t, 1]] for t in range(4)) for k in range(5)])
    torch.testing.assert_close(trajectory_returns(r, *tiny.mdp.split(x)), expected)
    torch.testing.assert_close(
        tiny.reward_model.returns(tiny.true_weights, *tiny.mdp.split(x)), expected)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("bad", [0, 1, -5, 2.5, "ten"])
def test_bad_num_samples(tiny, bad):
    with pytest.raises(ValueError, match="num_samples"):
        ImportanceNormalizer(PolicyProposal(tiny.mdp), num_samples=bad)


def test_bad_rewards_and_options(tiny):
    norm = ImportanceNormalizer(PolicyProposal(tiny.mdp), num_samples=10)
    reward, theta = tiny.reward_model, tiny.true_weights.clone()
    with pytest.raises(ValueError, match=r"theta must have shape \(\.\.\., D\) = \(\.\.\., 2\)"):
        norm.log_normalizer(reward, torch.zeros(3, dtype=torch.float64))
    theta[1] = math.nan
    with pytest.raises(ValueError, match="theta contains NaN"):
        norm.log_normalizer(reward, theta)
    with pytest.raises(ValueError, match="kind"):
        ImportanceNormalizer(PolicyProposal(tiny.mdp), kind="causal")
    with pytest.raises(ValueError, match="khat_policy"):
        ImportanceNormalizer(PolicyProposal(tiny.mdp), khat_policy="loud")
    # the space is the proposal's: an MDP is not a proposal
    with pytest.raises(ValueError, match="proposal must be a GuidePolicy"):
        ImportanceNormalizer(tiny.mdp)
    with pytest.raises(ValueError, match="policy logits must have shape"):
        PolicyProposal(tiny.mdp, TabularPolicy(9, 5, 3))
    with pytest.raises(ValueError, match="twist must have shape"):
        TwistedProposal(tiny.mdp, twist=torch.zeros(4, 9))
    with pytest.raises(ValueError, match="trajectories must have shape"):
        PolicyProposal(tiny.mdp).log_prob(torch.zeros(3, 4, 2, dtype=torch.long))
