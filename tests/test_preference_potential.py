"""The Bradley-Terry sufficient-statistics potential against the Pyro model's log joint."""

import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from bayes_irl import GridWorld
from bayes_irl.inference import fit
from bayes_irl.models import PreferenceModel
from bayes_irl.models.preference_potential import BradleyTerryPotential
from bayes_irl.models.preference_simulation import simulate_comparisons


@pytest.fixture(scope="module")
def problem():
    world = GridWorld.create(size=3, horizon=4, num_features=3, seed=0)
    items = world.sample_demonstrations(12, seed=1)
    model = PreferenceModel(world.reward_model, items)
    data = model.prepare_data(simulate_comparisons(model, world.true_weights, 80, seed=2))
    return model, data


def _log_joint(model, data, theta: torch.Tensor) -> float:
    site = model.reward_model.site_name
    conditioned = poutine.condition(model, data={site: theta})
    return float(poutine.trace(conditioned).get_trace(data).log_prob_sum())


def test_potential_equals_negative_log_joint(problem):
    """U(theta) + log p(theta, y) is the same constant at every theta (here 0: the
    Bernoulli outcomes have no normaliser), to float64 round-off (1e-9 relative)."""
    model, data = problem
    potential = model.sufficient_statistics_potential(data)
    assert isinstance(potential, BradleyTerryPotential)
    # 80 comparisons among 12 items: many repeat, so the statistics are shorter
    assert potential._differences.shape[0] <= 80
    site = model.reward_model.site_name
    rng = np.random.default_rng(0)
    for theta in rng.normal(scale=2.0, size=(5, 3)):
        point = torch.tensor(theta)
        joint = _log_joint(model, data, point)
        value, grad = potential.value_and_grad(theta)
        assert value == pytest.approx(-joint, rel=1e-9, abs=1e-9)
        torch_value = potential({site: point})
        assert float(torch_value) == pytest.approx(value, rel=1e-12)
        # the NumPy gradient against autograd through the Pyro model
        with torch.enable_grad():
            leaf = point.clone().requires_grad_(True)
            conditioned = poutine.condition(model, data={site: leaf})
            (auto,) = torch.autograd.grad(
                poutine.trace(conditioned).get_trace(data).log_prob_sum(), leaf)
        np.testing.assert_allclose(grad, -auto.numpy(), rtol=1e-9, atol=1e-9)
    # a batch of thetas goes through the torch reference
    batch = torch.tensor(rng.normal(size=(4, 3)))
    values = potential({site: batch})
    assert values.shape == (4,)
    np.testing.assert_allclose(
        values.numpy(), [potential.value_and_grad(t)[0] for t in batch.numpy()], rtol=1e-12)


def test_declines_where_the_statistics_do_not_apply(problem):
    model, data = problem
    latent_beta = PreferenceModel(model.reward_model, model.items,
                                  beta_prior=dist.LogNormal(0.0, 0.5))
    assert latent_beta.sufficient_statistics_potential(data) is None
    ties = PreferenceModel(model.reward_model, model.items, ties="davidson")
    assert ties.sufficient_statistics_potential(data) is None


def test_bad_statistics_are_refused():
    prior = dist.Normal(torch.zeros(2, dtype=torch.float64), 1.0).to_event(1)
    with pytest.raises(ValueError, match="differences must have shape"):
        BradleyTerryPotential(differences=torch.zeros(3, 2), counts=torch.ones(2),
                              prior=prior, site="w")
    with pytest.raises(ValueError, match="finite"):
        BradleyTerryPotential(differences=torch.full((1, 2), float("nan")),
                              counts=torch.ones(1), prior=prior, site="w")


@pytest.mark.slow
def test_nuts_on_the_potential_matches_the_model_trace_path(problem):
    """NUTS on the NumPy potential (the default) against NUTS on the Pyro model trace
    (sufficient_statistics=False): means within 0.15 posterior sd and sds within 15%.
    Tolerance: with >= 400 bulk ESS per fit, the Monte-Carlo s.e. of a mean is <= 0.05 sd
    per fit and of an sd <= ~4%, so the difference of two fits stays within 3 s.e."""
    model, data = problem
    pyro.clear_param_store()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = fit(model, data, method="nuts", seed=0, progress_bar=False)
        slow = fit(model, data, method="nuts", seed=1, progress_bar=False,
                   sufficient_statistics=False, num_samples=1000, warmup_steps=300)
    assert fast.attrs["sampler"] == "numpy_nuts"
    a, b = fast.flat_samples(), slow.flat_samples()
    site = model.reward_model.site_name
    sd = b[site].std(0)
    assert ((a[site].mean(0) - b[site].mean(0)).abs() / sd).max() < 0.15
    assert ((a[site].std(0) / sd) - 1).abs().max() < 0.15
