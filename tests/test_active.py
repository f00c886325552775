"""Active preference queries: EIG estimator, posterior updates, active vs random."""

import math

import pytest
import torch

from bayes_irl import GridWorld
from bayes_irl.inference.active import (
    ActivePreferenceLearner,
    all_pairs,
    expected_information_gain,
    run_active_learning,
)
from bayes_irl.inference.convergence import ConvergenceWarning
from bayes_irl.models.preferences import PreferenceModel
from bayes_irl.soft_bellman import sample_maxent_trajectories


def _binary_entropy(p):
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def test_eig_matches_mutual_information_of_a_discrete_posterior():
    # three posterior atoms with weights w over two items: I(y; theta) by hand
    returns = torch.tensor([[0.0, 1.0], [2.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    w = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    beta = 1.7
    p = [1 / (1 + math.exp(-beta * float(a - b))) for a, b in returns]
    p_bar = sum(float(wk) * pk for wk, pk in zip(w, p, strict=True))
    expected = _binary_entropy(p_bar) - sum(
        float(wk) * _binary_entropy(pk) for wk, pk in zip(w, p, strict=True))
    eig = expected_information_gain(returns, torch.tensor([[0, 1]]), beta=beta,
                                     log_weights=w.log() + 3.0)  # unnormalised is fine
    assert eig.shape == (1,)
    assert abs(float(eig[0]) - expected) < 1e-12  # same formula, exact arithmetic


def test_eig_bounds_and_degenerate_cases():
    gen = torch.Generator().manual_seed(0)
    returns = torch.randn(200, 6, generator=gen, dtype=torch.float64)
    pairs = all_pairs(6)
    eig = expected_information_gain(returns, pairs)
    assert pairs.shape == (15, 2)
    assert (eig >= 0).all() and (eig <= math.log(2) + 1e-12).all()
    # all draws agree -> nothing to learn
    same = returns[:1].expand(200, 6)
    assert expected_information_gain(same, pairs).abs().max() < 1e-12
    # ties: three outcomes, bounded by log 3
    eig3 = expected_information_gain(returns, pairs, ties="davidson", tie_strength=1.0)
    assert (eig3 <= math.log(3) + 1e-12).all()
    with pytest.raises(ValueError, match=r"returns must have shape \(N, m\)"):
        expected_information_gain(returns[0], pairs)
    with pytest.raises(ValueError, match=r"pairs must have shape \(P, 2\)"):
        expected_information_gain(returns, pairs[:, 0])
    with pytest.raises(ValueError, match=r"log_weights must have shape \(200,\)"):
        expected_information_gain(returns, pairs, log_weights=torch.zeros(3))
    bad = returns.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="returns contain NaN"):
        expected_information_gain(bad, pairs)


def _problem(seed, *, num_rewards=15, per_reward=2):
    world = GridWorld.create(size=4, horizon=6, seed=seed)
    gen = torch.Generator().manual_seed(1000 + seed)
    items = []
    for _ in range(num_rewards):
        theta = torch.randn(4, generator=gen, dtype=torch.float64)
        items.append(sample_maxent_trajectories(
            world.mdp, world.reward_model.step_rewards(theta), per_reward, generator=gen))
    return PreferenceModel(world.reward_model, torch.cat(items)), world.true_weights


def test_laplace_and_importance_updates_agree():
    model, truth = _problem(0)
    # a weak judge (beta = 0.1) keeps the posterior close to Gaussian, where Laplace should
    # agree with the (here accurate) importance posterior
    model = PreferenceModel(model.reward_model, model.items, beta=0.1)
    result = run_active_learning(model, truth, num_queries=20, strategy="random", seed=3)
    laplace = ActivePreferenceLearner(model, update="laplace")
    importance = ActivePreferenceLearner(model, update="importance", num_draws=20000)
    for (i, j), y in zip(result.queries.tolist(), result.outcomes.tolist(), strict=True):
        laplace.observe(i, j, y)
        importance.observe(i, j, y)
    # the MAP is a stationary point of the log joint
    theta = laplace.posterior_mean().requires_grad_(True)
    laplace._neg_log_joint(theta).backward()
    assert theta.grad.abs().max() < 1e-6
    # 20000 prior draws keep ESS ~1100 (measured 1139): the importance mean has Monte Carlo
    # error ~sd / sqrt(1100) = 0.03 sd, so it is the reference here
    assert importance.ess > 500
    draws, log_w = importance.posterior_draws()
    w = torch.softmax(log_w, 0)
    mean = w @ draws
    sd = (w @ (draws - mean) ** 2).sqrt()
    # measured: |MAP - mean| <= 0.26 sd (the logistic likelihood's skew: MAP != mean) and
    # Laplace sd / importance sd in 0.94-0.99; bounds leave room for that, not for a bug
    assert ((laplace.posterior_mean() - mean).abs() / sd).max() < 0.4
    lap_sd = laplace._cov.diagonal().sqrt()
    assert ((lap_sd / sd - 1).abs() < 0.1).all()


def test_run_active_learning_record_and_reproducibility():
    model, truth = _problem(1, num_rewards=5)
    a = run_active_learning(model, truth, num_queries=4, strategy="eig", seed=2)
    b = run_active_learning(model, truth, num_queries=4, strategy="eig", seed=2)
    assert a.queries.shape == (4, 2) and a.estimates.shape == (5, 4)
    assert torch.equal(a.queries, b.queries) and torch.equal(a.outcomes, b.outcomes)
    assert (a.eig > 0).all() and (a.eig <= math.log(2)).all()
    # the chosen pair maximises EIG: re-score before the first query
    learner = ActivePreferenceLearner(model, seed=2)  # same EIG draws as the run
    scores = learner.scores()
    assert scores.argmax() == next(k for k, p in enumerate(learner.candidates.tolist())
                                   if p == a.queries[0].tolist())
    r = run_active_learning(model, truth, num_queries=3, strategy="random", update="importance",
                            num_draws=200, seed=0)
    assert torch.isnan(r.eig).all() and r.cosine.shape == (4,)
    # update="fit" refits by 20 SVI steps on purpose (shapes only): the guard must say so
    with pytest.warns(ConvergenceWarning, match="NOT CONVERGED"):
        f = run_active_learning(model, truth, num_queries=1, update="fit", num_draws=20,
                                fit_options={"num_steps": 20}, seed=0)
    assert f.estimates.shape == (2, 4)


def test_active_errors():
    model, truth = _problem(0, num_rewards=3)
    with pytest.raises(ValueError, match="update must be one of"):
        ActivePreferenceLearner(model, update="mcmc")
    with pytest.raises(ValueError, match="strategy must be one of"):
        ActivePreferenceLearner(model).select("greedy")
    with pytest.raises(ValueError, match="candidates must index the m = 6 items"):
        ActivePreferenceLearner(model, candidates=torch.tensor([[0, 9]]))
    with pytest.raises(ValueError, match="built on an item pool"):
        ActivePreferenceLearner(PreferenceModel(model.reward_model,
                                                GridWorld.create(size=4, horizon=6).mdp))
    learner = ActivePreferenceLearner(model)
    with pytest.raises(ValueError, match="outcomes must lie in"):
        learner.observe(0, 1, 3.0)
    assert learner.outcomes == []  # the bad answer was not recorded
    with pytest.raises(ValueError, match=r"true_weights must have shape \(4,\)"):
        run_active_learning(model, truth[:2], num_queries=2)
    with pytest.raises(ValueError, match="num_queries must be an integer >= 1"):
        run_active_learning(model, truth, num_queries=0)


@pytest.mark.slow
def test_active_queries_beat_random_queries():
    """Mean over 5 seeds (world, pool and judge all vary) at 20 and 30 queries.

    Measured (benchmarks/active_queries.py, 5 seeds): cosine 0.958 vs 0.918 at 20 queries,
    0.991 vs 0.930 at 30; error 1.05 vs 1.25 and 0.85 vs 1.15. Asserting only the ordering of
    the means: the gap (0.2-0.3 in error) is several times the seed-to-seed standard error.
    """
    results = {"eig": [], "random": []}
    for seed in range(5):
        model, truth = _problem(seed)
        for strategy in results:
            results[strategy].append(run_active_learning(
                model, truth, num_queries=30, strategy=strategy, seed=seed))
    for q in (20, 30):
        error = {s: torch.stack([r.error[q] for r in rs]).mean() for s, rs in results.items()}
        cosine = {s: torch.stack([r.cosine[q] for r in rs]).mean() for s, rs in results.items()}
        assert error["eig"] < error["random"]
        assert cosine["eig"] > cosine["random"]
