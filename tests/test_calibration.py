"""Simulation-based calibration: the statistics, the runner, and a check that can fail.

Problem: 3x3 slippery gridworld, horizon 4, two random features, 100 exact demonstrations
per simulation (as in tests/test_backends.py). With D = 2 the exact posterior of every
simulated data set is computed by quadrature on a grid (the likelihood by the exact
recursion), so "calibrated" is checked against a posterior known to be right, and the same
runner must flag an artificially over-confident one.
"""

import math
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from bayes_irl import GridWorld
from bayes_irl.inference import ExactNormalizer, fit, pointwise_log_likelihood
from bayes_irl.inference.calibration import (
    CalibrationResult,
    DemonstrationSimulator,
    PreferenceSimulator,
    coverage,
    draw_prior,
    fractional_ranks,
    run_calibration,
    uniformity_test,
)
from bayes_irl.inference.posterior import Posterior
from bayes_irl.models import DemonstrationModel, PreferenceModel
from tests.helpers import grid_posterior

NUM_DEMOS = 100


@pytest.fixture(scope="module")
def tiny():
    world = GridWorld.create(size=3, num_features=2, horizon=4, seed=1)
    model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
    return world, model


def _grid(model, data, lo, hi, num):
    grid, weights = grid_posterior(model, data, lo, hi, num)
    return grid, weights, (hi - lo) / (num - 1)


_QUADRATURE = {}


def quadrature_fit(model, raw, seed, *, num_samples=1000):
    """Exact posterior draws: a grid at +-6 sd of a coarse pass, then uniform jitter per cell.

    The fine cell width is 0.15 posterior sd and the jitter is uniform within a cell, so
    the draws' sd is exact to < 1% (the grid's discretisation error), far below what 60
    simulations can resolve. Cached by seed: the over-confident variant reuses the fits.
    """
    if seed in _QUADRATURE:
        return _QUADRATURE[seed]
    data = model.prepare_data(raw)
    lo, hi = torch.full((2,), -4.0, dtype=torch.float64), torch.full((2,), 4.0, dtype=torch.float64)
    # coarse pass, a +-8 sd window (sd floored at the coarse cell), then the fine grid
    grid, w, step = _grid(model, data, lo, hi, 41)
    for half_width, num in ((8.0, 41), (6.0, 81)):
        if half_width is not None:
            mean = (w[:, None] * grid).sum(0)
            sd = torch.maximum((w[:, None] * (grid - mean) ** 2).sum(0).sqrt(), step)
            lo, hi = mean - half_width * sd, mean + half_width * sd
        grid, w, step = _grid(model, data, lo, hi, num)
    generator = torch.Generator().manual_seed(seed)
    index = torch.multinomial(w, num_samples, replacement=True, generator=generator)
    jitter = (torch.rand(num_samples, 2, generator=generator, dtype=torch.float64) - 0.5) * step
    draws = grid[index] + jitter
    _QUADRATURE[seed] = Posterior(samples={"weights": draws.unsqueeze(0)}, method="quadrature",
                                  model=model, data=data)
    return _QUADRATURE[seed]


def shrunk(fit_fn, factor):
    """Wrap a fit: draws pulled towards their mean by ``factor`` (sd x factor)."""

    def shrunk_fit(model, raw, seed):
        post = fit_fn(model, raw, seed)
        x = post.samples["weights"]
        mean = x.mean(1, keepdim=True)
        return Posterior(samples={"weights": mean + factor * (x - mean)}, method="shrunk",
                         model=model, data=post.data)

    return shrunk_fit


def svi_fit(model, raw, seed):
    return fit(model, raw, method="svi", num_steps=300, learning_rate=0.05, num_samples=500,
               seed=seed, progress_bar=False)


# ---------------------------------------------------------------- statistics
def test_fractional_ranks_ties_and_errors():
    rng = np.random.default_rng(0)
    draws = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
    rank, pit = fractional_ranks(np.array([1.5, 1.0]), draws, rng)
    assert rank[0] == 2  # two draws below 1.5
    assert 0 <= rank[1] <= 3  # all three tie: uniform on {0, ..., 3}
    assert ((pit > 0) & (pit < 1)).all()
    with pytest.raises(ValueError, match="draws must have shape"):
        fractional_ranks(np.zeros(3), draws, rng)
    with pytest.raises(ValueError, match="NaN"):
        fractional_ranks(np.array([np.nan, 0.0]), draws, rng)


def test_uniformity_test_size_and_power():
    # Under uniformity the p-value is itself ~uniform: over 200 seeded data sets of N = 100
    # the rejection rate at 0.05 is 0.05 +- 0.015 (binomial sd); 0.1 allows > 3 sd.
    rng = np.random.default_rng(1)
    _, p = uniformity_test(rng.random((100, 200)), num_null=1000)
    assert np.mean(p < 0.05) < 0.1
    # A posterior with half the sd gives u = Phi(2 z). At N = 50 and the Bonferroni level
    # of 7 quantities (0.05 / 7) the power is ~0.95 (measured: 19 of these 20 data sets at
    # the smallest attainable p-value, one at p = 0.017); at least 17 of 20 required.
    z = rng.standard_normal((50, 20))
    from scipy.stats import norm

    _, p_over = uniformity_test(norm.cdf(2 * z), num_null=1000)
    assert (p_over < 0.05 / 7).sum() >= 17
    with pytest.raises(ValueError, match="pit must hold"):
        uniformity_test(np.array([0.5, 1.5]))


def test_coverage_of_uniform_pit():
    rng = np.random.default_rng(2)
    cov, se = coverage(rng.random((4000, 3)), levels=(0.5, 0.9))
    # 4000 uniform values: coverage sd <= 0.008; 0.03 is > 3.5 sd
    assert np.allclose(cov, [[0.5, 0.9]] * 3, atol=0.03)
    assert se.shape == (3, 2) and np.allclose(se[:, 1], math.sqrt(0.09 / 4000))


# ---------------------------------------------------------------- the check can fail
def test_exact_posterior_passes_and_overconfident_is_flagged(tiny):
    # The calibration claim, at the runner's default settings (Bonferroni over the 7
    # quantities at alpha = 0.05, 2000 null simulations). N = 60 simulations, L = 49
    # draws. Exact quadrature posterior: not flagged (false-alarm rate <= 5% by
    # construction; the seed is fixed, so this is deterministic). The same posterior with
    # its sd halved: u = Phi(2z) puts 16% of simulations below u = 0.025 instead of 2.5%,
    # which the ECDF test detects with power ~1 at N = 60.
    _, model = tiny
    options = dict(num_simulations=60, num_rank_draws=49, seed=0, progress_bar=False)
    exact = run_calibration(model, DemonstrationSimulator(NUM_DEMOS), fit_fn=quadrature_fit,
                            **options)
    assert not exact.miscalibrated(), exact.summary_table()
    # coverage of the 90% intervals of the weights within the binomial 99.9% range
    cov90 = exact.coverage().sel(level=0.9).values[:2]
    assert ((cov90 > 0.75) & (cov90 <= 1.0)).all(), cov90
    over = run_calibration(model, DemonstrationSimulator(NUM_DEMOS),
                           fit_fn=shrunk(quadrature_fit, 0.5), **options)
    assert over.miscalibrated(), over.summary_table()
    assert (over.coverage().sel(level=0.9).values[:2] < 0.75).all()


@pytest.mark.slow  # 30 SVI fits (300 steps each)
def test_overconfident_svi_is_flagged(tiny):
    # A deliberately miscalibrated posterior: SVI draws (AutoMultivariateNormal) with the
    # sd scaled by 0.5.
    # Flagged at the default settings with N = 30: at N = 30 the halved-sd Laplace fits of
    # notebook 06 gave p <= 0.0005 on 3 of 7 quantities (the Bonferroni level is 0.007).
    _, model = tiny
    over = run_calibration(model, DemonstrationSimulator(NUM_DEMOS), fit_fn=shrunk(svi_fit, 0.5),
                           num_simulations=30, num_rank_draws=49, seed=0, progress_bar=False)
    assert over.miscalibrated(), over.summary_table()


# ---------------------------------------------------------------- runner
def _count_simulations(monkeypatch, log):
    """Spy on the simulations run (in worker processes too: they fork, so a file)."""
    from bayes_irl.inference import calibration

    simulate_once = calibration.simulate_once

    def counting(model, simulator, index, **kwargs):
        with open(log, "a") as file:
            file.write(f"{index}\n")
        return simulate_once(model, simulator, index, **kwargs)

    monkeypatch.setattr(calibration, "simulate_once", counting)

    def take() -> list[int]:
        run = sorted(int(i) for i in log.read_text().split()) if log.exists() else []
        log.unlink(missing_ok=True)
        return run

    return take


def test_resume_workers_and_inference_data(tiny, tmp_path, monkeypatch):
    _, model = tiny
    options = dict(method="laplace", options={"optimizer": "lbfgs", "num_samples": 19},
                   num_rank_draws=19, seed=3, progress_bar=False)
    take = _count_simulations(monkeypatch, tmp_path / "simulations.log")
    first = run_calibration(model, DemonstrationSimulator(30), num_simulations=2,
                            directory=tmp_path, **options)
    assert take() == [0, 1]
    assert len(list(tmp_path.glob("simulation_*.npz"))) == 2
    # simulation 1's saved ranks altered: a resumed run returns the file's, a rerun could not
    saved = dict(np.load(tmp_path / "simulation_00001.npz"))
    altered = (saved["rank"] + 1) % 20
    np.savez(tmp_path / "simulation_00001.npz", **{**saved, "rank": altered})
    # resumed with 2 workers: the first two are loaded, two more are run in processes
    both = run_calibration(model, DemonstrationSimulator(30), num_simulations=4,
                           directory=tmp_path, num_workers=2, **options)
    assert take() == [2, 3]  # only the two new ones are run
    np.testing.assert_array_equal(both.rank[0], first.rank[0])
    np.testing.assert_array_equal(both.rank[1], altered)
    np.savez(tmp_path / "simulation_00001.npz", **saved)  # restored for what follows
    both.rank[1] = first.rank[1]
    # the same simulations in one process give the same ranks (seeded per simulation)
    again = run_calibration(model, DemonstrationSimulator(30), num_simulations=4, **options)
    np.testing.assert_array_equal(again.rank, both.rank)
    idata = both.to_inference_data()
    assert set(idata.groups()) == {"sbc", "sbc_summary"}
    assert idata["sbc"]["rank"].shape == (4, len(both.names))
    assert idata["sbc_summary"]["coverage"].dims == ("quantity", "level")
    path = tmp_path / "sbc.nc"
    idata.to_netcdf(str(path))
    import arviz as az

    back = CalibrationResult.from_inference_data(az.from_netcdf(str(path)))
    np.testing.assert_array_equal(back.rank, both.rank)
    assert back.names == both.names and back.num_rank_draws == 19
    with pytest.raises(ValueError, match="another configuration"):
        run_calibration(model, DemonstrationSimulator(30), num_simulations=2,
                        directory=tmp_path, **{**options, "seed": 4})


def test_runner_errors(tiny):
    _, model = tiny
    with pytest.raises(ValueError, match="num_simulations"):
        run_calibration(model, DemonstrationSimulator(10), num_simulations=1)
    with pytest.raises(ValueError, match="num_demonstrations"):
        DemonstrationSimulator(0)
    with pytest.raises(ValueError, match="rationality"):
        DemonstrationSimulator(10, rationality=-1.0)
    with pytest.raises(ValueError, match="num_rank_draws"):
        run_calibration(model, DemonstrationSimulator(10), num_simulations=2, method="laplace",
                        options={"optimizer": "lbfgs", "num_samples": 5}, num_rank_draws=9,
                        progress_bar=False)


def test_preference_simulator_and_prior_draws(tiny):
    world, _ = tiny
    items = world.sample_demonstrations(20, seed=0)
    model = PreferenceModel(world.reward_model, items)
    truth = draw_prior(model, 5)
    assert truth["weights"].shape == (2,)
    torch.testing.assert_close(draw_prior(model, 5)["weights"], truth["weights"])
    data = PreferenceSimulator(30)(model, truth, torch.Generator().manual_seed(0))
    assert model.prepare_data(data).num_observations == 30
    result = run_calibration(model, PreferenceSimulator(30), num_simulations=2,
                             method="laplace", options={"optimizer": "lbfgs", "num_samples": 9},
                             num_rank_draws=9, progress_bar=False)
    assert "log_likelihood" in result.names and "weights[feature_0]" in result.names


def test_rationality_latent_model(tiny):
    world, _ = tiny
    prior = dist.LogNormal(torch.tensor(0.0, dtype=torch.float64),
                           torch.tensor(0.5, dtype=torch.float64))
    model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp),
                               rationality_prior=prior)
    truth = draw_prior(model, 0)
    assert set(truth) == {"weights", "rationality"} and truth["rationality"].shape == (1,)
    # beta * R_theta: the likelihood with (theta, beta) equals the fixed-beta one at beta*theta
    data = model.prepare_data(world.sample_demonstrations(5, seed=0))
    plain = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
    theta, beta = torch.tensor([[0.3, -0.2]], dtype=torch.float64), torch.tensor([[2.0]])
    lik, _ = pointwise_log_likelihood(model, data, {"weights": theta, "rationality": beta})
    ref, _ = pointwise_log_likelihood(plain, data, {"weights": 2 * theta})
    torch.testing.assert_close(lik["demonstrations"], ref["demonstrations"])
    assert model.sufficient_statistics_potential(data) is None
    # Laplace still runs on the latent beta, but warns: its Gaussian misses the ridge
    with pytest.warns(UserWarning, match="rationality_importance"):
        post = fit(model, data, method="laplace", optimizer="lbfgs", num_samples=20, seed=0)
    assert post.samples["rationality"].shape == (1, 20, 1)
    assert "rationality" in post.to_inference_data().posterior
    with pytest.raises(ValueError, match="positive support"):
        DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp),
                           rationality_prior=dist.Normal(0.0, 1.0))
    pyro.clear_param_store()


@pytest.mark.slow  # ~20 s alone, 66 s measured on the loaded shared machine
def test_calibrate_command_writes_outputs_and_resumes(tmp_path, capsys, monkeypatch):
    from bayes_irl.app.cli import main

    take = _count_simulations(monkeypatch, tmp_path / "simulations.log")

    argv = ["calibrate", "--method", "laplace", "--option", 'optimizer="lbfgs"',
            "--option", "num_samples=9", "--simulations", "2", "--grid-size", "3",
            "--horizon", "4", "--num-features", "2", "--num-demos", "20", "--draws", "9",
            "--out", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    assert take() == [0, 1]
    for name in ("calibration.nc", "pit_ecdf.png", "ranks.png", "coverage.csv"):
        assert (tmp_path / name).stat().st_size > 0
    assert "cov90" in capsys.readouterr().out
    assert main(argv) == 2  # outputs exist: refused without --overwrite
    assert "already holds" in capsys.readouterr().err
    # resumed: both simulations are loaded from disk, nothing is refitted
    assert main([*argv, "--overwrite"]) == 0
    assert take() == []
    assert len(list((tmp_path / "simulations").glob("simulation_*.npz"))) == 2


def test_calibrate_random_mdp_with_the_importance_normaliser(tmp_path, capsys):
    # The random sparse MDP problem, fitted by SVI with a fresh importance normaliser per
    # simulation (ImportanceNormalizerFit); small sizes: this checks the wiring, the
    # benchmark (benchmarks/README.md) the calibration.
    from bayes_irl.app.cli import main

    argv = ["calibrate", "--problem", "random-mdp", "--normalizer", "importance",
            "--bank-size", "200", "--method", "svi", "--option", "num_steps=50",
            "--option", "num_samples=9", "--simulations", "2", "--horizon", "3",
            "--num-features", "2", "--num-demos", "10", "--draws", "9",
            "--out", str(tmp_path), "--no-progress"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 50 steps: the fits say they have not converged
        assert main(argv) == 0
    assert "svi+importance_normalizer(K=200)" in capsys.readouterr().out
    assert (tmp_path / "calibration.nc").stat().st_size > 0
    refused = ["calibrate", "--problem", "preferences", "--normalizer", "importance",
               "--simulations", "2", "--out", str(tmp_path / "p"), "--no-progress"]
    assert main(refused) == 2
    assert "--normalizer importance needs demonstrations" in capsys.readouterr().err
