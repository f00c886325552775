"""The ELBO-stationarity guard: SVI that ran off under a very wide prior is flagged.

A silent-wrong case of benchmarks/guard_cases.py: SVI from the guide's own start
(``init="prior"``) under a
N(0, 1e6) prior starts its mean at prior-median draws of order 1e5, where the policy is
deterministic and the log-likelihood gradient is constant, so a loss that falls linearly
by a tiny relative amount passes the loss-drift check and the fit reports weights of
order -1e5 with sd ~0.2 as "converged". The guard measures how far the guide's mean is
from a stationary point of the ELBO, in the guide's own sds (see
:mod:`bayes_irl.inference.convergence`); a correct fit scores 0 after the 3-s.e. margin.
"""

import pyro.distributions as dist
import pytest
import torch

from bayes_irl import GridWorld
from bayes_irl.inference import ExactNormalizer, fit
from bayes_irl.inference.convergence import (
    THRESHOLDS,
    ConvergenceError,
    ConvergenceWarning,
    enforce,
)
from bayes_irl.models import DemonstrationModel
from bayes_irl.rewards import LinearReward


def _model(world, prior_sd):
    prior = dist.Normal(torch.tensor(0.0, dtype=torch.float64), prior_sd)
    return DemonstrationModel(LinearReward(world.mdp.features, prior=prior),
                              ExactNormalizer(world.mdp))


@pytest.fixture(scope="module")
def world_and_demos():
    world = GridWorld.create(size=3, horizon=4, seed=0)
    return world, world.sample_demonstrations(50, seed=0)


SVI = dict(method="svi", num_steps=300, num_samples=200, progress_bar=False, seed=0)


def test_wide_prior_runaway_is_flagged(world_and_demos):
    world, demos = world_and_demos
    with pytest.warns(ConvergenceWarning, match="not an ELBO optimum"):
        post = fit(_model(world, 1e6), demos, init="prior", **SVI)
    assert post.mean().abs().min() > 1e3  # the wrong answer itself
    report = post.extra["convergence"]
    # only this guard sees it: the loss-drift check passes on the flat loss
    assert [c.name for c in report.failures] == ["elbo_stationarity"]
    assert post.attrs["convergence_elbo_stationarity"] > 10 * THRESHOLDS["elbo_stationarity"]
    with pytest.raises(ConvergenceError, match="ELBO"):
        enforce(report, strict=True)


def test_correct_fit_passes(world_and_demos):
    world, demos = world_and_demos
    post = fit(_model(world, 1.0), demos, **SVI)  # the default Laplace start
    assert post.attrs["convergence_elbo_stationarity_threshold"] == 1.0
    assert post.attrs["convergence_elbo_stationarity"] <= 1.0, post.attrs["convergence_verdict"]


@pytest.mark.slow  # five 1500-step SVI fits: the guard stays quiet on correct answers
@pytest.mark.parametrize("seed, options", [
    (0, {}), (1, {}), (2, {}), (1, {"guide": "normal"}), (2, {"init": "prior"})])
def test_no_false_alarm_on_converged_fits(seed, options):
    world = GridWorld.create(size=3, horizon=4, seed=seed)
    demos = world.sample_demonstrations(50, seed=seed)
    post = fit(_model(world, 1.0), demos, method="svi", num_steps=1500, num_samples=1000,
               progress_bar=False, **options)
    assert post.attrs["convergence_elbo_stationarity"] <= 1.0, post.attrs["convergence_verdict"]
