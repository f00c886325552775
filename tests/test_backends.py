"""Every inference back-end on one small problem, against the exact posterior.

Problem: 3x3 slippery gridworld, horizon 4, two random features, 100 exact demonstrations.
With D = 2 the posterior is computed exactly by quadrature on a fine grid (the likelihood
by the exact recursion), so each back-end is compared with the truth, not with another
approximation; NUTS itself is checked against it as well.
"""

import math

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.distributions import constraints

from bayes_irl import GridWorld
from bayes_irl.inference import (
    BACKENDS,
    GUIDES,
    ExactNormalizer,
    ImportanceWarning,
    fit,
    neural_spline_guide,
    pointwise_log_likelihood,
)
from bayes_irl.inference.backends import run_importance
from bayes_irl.inference.convergence import ConvergenceWarning
from bayes_irl.models import DemonstrationModel
from tests.helpers import exact_posterior_moments

NUM_DEMOS = 100


def custom_guide(data, *, subsample=True):
    """A user-written mean-field guide: pyro.param + pyro.sample in the model's plate."""
    loc = pyro.param("custom_loc", torch.zeros(2, dtype=torch.float64))
    scale = pyro.param(
        "custom_scale", torch.full((2,), 0.2, dtype=torch.float64), constraint=constraints.positive
    )
    with pyro.plate("feature", 2, dim=-1):
        pyro.sample("weights", dist.Normal(loc, scale))


# method label -> (fit method, options). Sizes keep the default suite small: 500 SVI
# steps (the loss is flat after ~300 on this problem), 1000 independent draws. NUTS runs
# with the user's defaults (chains, warm-up, draws sized for a bulk ESS of 400).
SVI = {"num_steps": 500, "num_samples": 1000}
CASES = {
    "svi_normal": ("svi", {"guide": "normal", **SVI}),
    "svi_multivariate_normal": ("svi", {"guide": "multivariate_normal", **SVI}),
    "svi_iaf": ("svi", {"guide": "iaf", **SVI}),
    "svi_neural_spline": ("svi", {"guide": "neural_spline", **SVI}),
    "svi_custom": ("svi", {"guide": custom_guide, **SVI}),
    "laplace": ("laplace", SVI),
    "nuts": ("nuts", {}),
    "importance": ("importance", {"num_proposals": 100_000, "num_samples": 1000}),
}

# Tolerances on |mean - exact mean| in units of the exact posterior sd, and on the ratio
# sd / exact sd. Why:
# * Monte Carlo error of a mean from N effective draws is sd / sqrt(N): <= 0.07 sd for
#   N >= 200 (NUTS bulk ESS >= 400, importance ESS ~ 950, 1000 guide draws), so 0.3 sd is
#   > 4 standard errors for the Gaussian-like approximations (full-covariance normal,
#   Laplace = MAP + Hessian, NUTS, importance) whose bias is negligible at n = 100.
# * Mean-field guides (AutoNormal, the custom guide) find the right mean of a near-Gaussian
#   posterior but under-estimate the sd by up to sqrt(1 - rho^2) and the final SVI iterate
#   is noisy: 0.5 sd on the mean, sd ratio in [0.6, 1.2].
# * Flows (IAF, neural spline) after 500 steps are less converged (more parameters, one
#   particle per step): 0.6 sd on the mean, sd ratio in [0.7, 1.4].
MEAN_TOL = {
    "svi_normal": 0.5,
    "svi_custom": 0.5,
    "svi_multivariate_normal": 0.3,
    "svi_iaf": 0.6,
    "svi_neural_spline": 0.6,
    "laplace": 0.3,
    "nuts": 0.3,
    "importance": 0.3,
    "hmc": 0.3,
}
SD_RATIO = {
    "svi_normal": (0.6, 1.2),
    "svi_custom": (0.6, 1.2),
    "svi_iaf": (0.7, 1.4),
    "svi_neural_spline": (0.7, 1.4),
}
DEFAULT_SD_RATIO = (0.8, 1.2)  # 20%: sd of a sd estimate from N >= 200 draws is ~5%


@pytest.fixture(scope="module")
def problem():
    world = GridWorld.create(size=3, num_features=2, horizon=4, seed=1)
    model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
    demos = world.sample_demonstrations(NUM_DEMOS, seed=0)
    data = model.prepare_data(demos)
    return world, model, demos, data


@pytest.fixture(scope="module")
def exact_posterior(problem):
    """Exact posterior mean and sd by quadrature: a coarse grid, then a fine one at +-8 sd."""
    _, model, _, data = problem
    return exact_posterior_moments(model, data)


_FITS = {}


@pytest.fixture(scope="module")
def fitted(problem):
    """Fit lazily and cache: each back-end runs once for all the tests of this module."""
    _, model, demos, _ = problem

    def get(label):
        if label not in _FITS:
            method, options = CASES[label]
            pyro.clear_param_store()
            post = fit(model, demos, method=method, seed=0, progress_bar=False, **options)
            _FITS[label] = (post, post.to_inference_data())
        return _FITS[label]

    return get


def test_every_backend_is_registered():
    assert {"svi", "laplace", "nuts", "hmc", "importance"} <= set(BACKENDS)
    assert {"iaf", "neural_spline", "normal", "multivariate_normal"} <= set(GUIDES)


@pytest.mark.parametrize("label", list(CASES))
def test_inference_data_contract(fitted, label):
    post, idata = fitted(label)
    summary = az.summary(idata, var_names=["weights"])
    assert summary.shape[0] == 2 and np.isfinite(summary["mean"]).all()
    assert np.isfinite(summary["ess_bulk"]).all()
    ll = idata.log_likelihood["demonstrations"]
    assert ll.dims == ("chain", "draw", "demo")
    assert ll.shape == (post.num_chains, post.num_draws, NUM_DEMOS)
    assert np.isfinite(ll.values).all()
    assert idata.attrs["method"] == CASES[label][0]
    for group in ("posterior", "sample_stats", "observed_data", "constant_data"):
        assert group in idata.groups()


@pytest.mark.parametrize("label", list(CASES))
def test_backend_agrees_with_exact_posterior(fitted, exact_posterior, label):
    post, _ = fitted(label)
    mean, sd = exact_posterior
    z = ((post.mean() - mean) / sd).abs()
    assert (z < MEAN_TOL[label]).all(), f"{label}: |mean - exact| / sd = {z.tolist()}"
    lo, hi = SD_RATIO.get(label, DEFAULT_SD_RATIO)
    ratio = post.std() / sd
    assert ((ratio > lo) & (ratio < hi)).all(), f"{label}: sd / exact sd = {ratio.tolist()}"


def test_nuts_mixes(fitted):
    # The default sampler on a 2-D near-Gaussian posterior passes the library's own checks
    # (r_hat < 1.01, ESS, no divergence, ...) with >= 2 chains.
    post, idata = fitted("nuts")
    assert post.attrs["convergence_ok"] == 1, post.attrs["convergence_verdict"]
    assert post.num_chains >= 2
    summary = az.summary(idata, var_names=["weights"], round_to="none")
    assert (summary["r_hat"] < 1.01).all(), summary


def test_importance_diagnostics_recorded(fitted):
    post, idata = fitted("importance")
    attrs = idata.attrs
    # prior proposal, 1e5 draws: ESS ~ 950 measured; k-hat well below 0.7
    assert attrs["khat"] < 0.7 and attrs["ess"] > 300
    assert post.extra["log_weights"].shape == (100_000,)
    assert idata.sample_stats["log_weight"].shape == (1, 1000)
    assert math.isfinite(attrs["log_marginal_likelihood"])


def test_importance_log_marginal_likelihood_matches_quadrature(problem, exact_posterior):
    # log p(x) = log int p(theta) p(x | theta) dtheta by quadrature on a wide grid vs the
    # importance estimate (delta-method se 0.03 measured): agree within 0.1 nats.
    _, model, demos, data = problem
    axes = [torch.linspace(-3.0, 3.0, 601, dtype=torch.float64)] * 2
    grid = torch.cartesian_prod(*axes)
    _, log_joint = pointwise_log_likelihood(model, data, {"weights": grid}, chunk_size=20_000)
    cell = (6.0 / 600) ** 2
    exact = torch.logsumexp(log_joint, 0).item() + math.log(cell)
    post = fit(model, demos, method="importance", num_proposals=50_000, num_samples=100)
    assert abs(post.attrs["log_marginal_likelihood"] - exact) < 0.1


def test_importance_warns_on_high_khat(problem):
    # 30 prior draws for a posterior ~10x narrower than the prior: a few weights dominate.
    _, model, demos, _ = problem
    # both the importance sampler and the convergence guard must say so
    with pytest.warns(ConvergenceWarning, match="NOT CONVERGED"), \
            pytest.warns(ImportanceWarning, match="k-hat"):
        post = fit(model, demos, method="importance", num_proposals=30, num_samples=50)
    assert post.attrs["khat"] > 0.7


def test_importance_with_guide_proposal_is_more_efficient(problem):
    # A fitted full-covariance guide covers the posterior: the relative ESS must beat the
    # prior proposal's (~1% measured) by far.
    # Pyro's SVI loop: the NumPy loop's guide (the ELBO optimum within 0.05 sd) gives an
    # even higher ESS here (96% against Pyro's 80-95%) but PSIS k-hat 1.3-2.0 (4 seeds x 3
    # proposal seeds), Pyro's 300-step iterates 0.1-0.8: the near-exact fit leaves log
    # weights with sd 0.18 and a few draws +1.2 out in the posterior's heavier tail, a
    # relative tail that PSIS reads as heavy (the weights' variance is infinite for any
    # Gaussian guide much narrower than the prior)
    _, model, demos, data = problem
    svi = fit(model, demos, method="svi", num_steps=300, num_samples=10, progress_bar=False,
              svi_backend="pyro")
    guided = run_importance(model, data, proposal=svi.extra["guide"], num_proposals=2000,
                            num_samples=500)
    prior = run_importance(model, data, num_proposals=2000, num_samples=500, warn=False)
    assert guided.attrs["ess"] / 2000 > 0.3
    assert guided.attrs["ess"] > 5 * prior.attrs["ess"]
    assert guided.attrs["khat"] < 0.7


def test_importance_is_seeded(problem):
    _, model, _, data = problem
    a = run_importance(model, data, num_proposals=500, num_samples=20, seed=3, warn=False)
    b = run_importance(model, data, num_proposals=500, num_samples=20, seed=3, warn=False)
    assert torch.equal(a.samples["weights"], b.samples["weights"])


def test_custom_guide_is_fitted(fitted):
    post, _ = fitted("svi_custom")
    assert post.attrs["guide"] == "function"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_proposals": 0}, "num_proposals"),
        ({"num_samples": 2.5}, "num_samples"),
        ({"chunk_size": -1}, "chunk_size"),
        ({"proposal": "uniform"}, "proposal"),
        ({"proposal": 3}, "proposal"),
    ],
)
def test_importance_validation(problem, kwargs, match):
    _, model, _, data = problem
    with pytest.raises(ValueError, match=match):
        run_importance(model, data, **kwargs)


def test_neural_spline_validation(problem):
    with pytest.raises(ValueError, match="count_bins"):
        neural_spline_guide(problem[1], count_bins=1)


# 10 draws of one chain on purpose (a smoke test): the ESS guard fires
@pytest.mark.filterwarnings("ignore:NOT CONVERGED:UserWarning")
def test_hmc_runs_and_converts(problem):
    # Smoke test only: Pyro's HMC keeps the trajectory length num_leapfrog_steps x the
    # INITIAL step size (1.0) fixed, so after adaptation it takes ~10x more leapfrog steps
    # than asked (2 x 500 iterations took 117 s here); accuracy: the test below.
    _, model, demos, _ = problem
    # one leapfrog step at the initial step size 1 fixes the trajectory length to 1
    post = fit(model, demos, method="hmc", num_samples=10, warmup_steps=10, num_chains=1,
               num_leapfrog_steps=1, progress_bar=False)
    idata = post.to_inference_data()
    assert idata.log_likelihood["demonstrations"].shape == (1, 10, NUM_DEMOS)
    assert np.isfinite(az.summary(idata, var_names=["weights"])["mean"]).all()


def test_hmc_agrees_with_exact_posterior(problem, exact_posterior):
    # The user's HMC (defaults: Laplace start, 300 warm-up steps, ESS-sized draws; ~1 s
    # measured) passes its own checks and the same 0.3 sd / 20% rule.
    _, model, demos, _ = problem
    post = fit(model, demos, method="hmc", progress_bar=False)
    assert post.attrs["convergence_ok"] == 1, post.attrs["convergence_verdict"]
    mean, sd = exact_posterior
    assert (((post.mean() - mean) / sd).abs() < MEAN_TOL["hmc"]).all()
    ratio = post.std() / sd
    assert ((ratio > 0.8) & (ratio < 1.2)).all()
    summary = az.summary(post.to_inference_data(), var_names=["weights"], round_to="none")
    assert (summary["r_hat"] < 1.01).all()
