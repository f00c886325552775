"""The Posterior -> ArviZ converter: groups, dims, log_likelihood, NetCDF round trip."""

import arviz as az
import numpy as np
import pytest
import torch

from bayes_irl import GridWorld
from bayes_irl.inference import ExactNormalizer, fit, pointwise_log_likelihood
from bayes_irl.models import DemonstrationModel, MaxEntTrajectory


@pytest.fixture(scope="module")
def fitted():
    world = GridWorld.create(size=3, horizon=4, seed=2)
    demos = world.sample_demonstrations(40, seed=0)
    model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
    # the user's defaults (chains, warm-up, ESS-sized draws): the converter is tested on
    # the posterior people get
    post = fit(model, demos, method="nuts", progress_bar=False)
    assert post.attrs["convergence_ok"] == 1, post.attrs["convergence_verdict"]
    return world, demos, model, post


def test_groups_dims_and_coords(fitted):
    world, demos, _, post = fitted
    idata = post.to_inference_data()
    for group in ("posterior", "sample_stats", "log_likelihood", "observed_data", "constant_data"):
        assert group in idata.groups()
    assert idata.posterior["weights"].dims == ("chain", "draw", "feature")
    assert list(idata.posterior["feature"].values) == list(world.mdp.feature_names)
    chains, draws = post.num_chains, post.num_draws
    assert chains >= 2 and draws >= 100
    assert idata.posterior["weights"].shape == (chains, draws, 4)
    assert idata.log_likelihood["demonstrations"].shape == (chains, draws, 40)
    assert idata.observed_data["states"].shape == (40, 5)
    assert idata.sample_stats["diverging"].shape == (chains, draws)
    assert idata.posterior.attrs["method"] == "nuts"
    assert "ExactNormalizer" in idata.posterior.attrs["normalizer"]
    summary = az.summary(idata, var_names=["weights"])
    assert np.isfinite(summary["r_hat"]).all()
    loo = az.loo(idata, pointwise=True)
    assert loo.pareto_k.shape == (40,)


def test_log_likelihood_equals_direct_log_prob(fitted):
    world, demos, model, post = fitted
    flat = post.flat_samples()
    ll, joint = pointwise_log_likelihood(
        model, model.prepare_data(demos), {k: v[:5] for k, v in flat.items()}
    )
    for i in range(5):
        direct = MaxEntTrajectory(
            flat["weights"][i], world.reward_model, ExactNormalizer(world.mdp)
        ).log_prob(demos.as_tensor())
        assert torch.allclose(ll["demonstrations"][i], direct, atol=1e-10)
        prior = world.reward_model.prior.log_prob(flat["weights"][i]).sum()
        assert joint[i].item() == pytest.approx((prior + direct.sum()).item(), abs=1e-8)


def test_netcdf_round_trip(fitted, tmp_path):
    *_, post = fitted
    idata = post.to_inference_data()
    path = tmp_path / "posterior.nc"
    idata.to_netcdf(str(path))
    again = az.from_netcdf(str(path))
    np.testing.assert_allclose(again.posterior["weights"].values, idata.posterior["weights"].values)
    assert again.posterior.attrs["method"] == "nuts"


def test_svi_posterior_single_chain_with_loss_trace(fitted):
    _, demos, model, _ = fitted
    post = fit(model, demos, method="svi", num_steps=200, num_samples=50, progress_bar=False)
    idata = post.to_inference_data()
    assert idata.posterior["weights"].shape == (1, 50, 4)
    assert idata.sample_stats["loss"].shape == (200,)
    assert idata.posterior.attrs["guide"] == "AutoMultivariateNormal"


def test_reward_on_other_features_than_the_mdp_converts():
    # The MDP's constant_data holds its own 2 features under the dimension "feature"; the
    # reward model here has 5 other features, also labelled along "feature". The latent
    # keeps the name and the data's dimension becomes "data_feature" (it failed with
    # xarray's CoordinateValidationError before).
    from bayes_irl.rewards import LinearReward

    world = GridWorld.create(size=3, horizon=4, num_features=2, seed=0)
    features = torch.randn(world.mdp.num_states, world.mdp.num_actions, 5,
                           generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with pytest.warns(UserWarning, match="features"):
        model = DemonstrationModel(LinearReward(features), ExactNormalizer(world.mdp))
    post = fit(model, world.sample_demonstrations(20, seed=0), method="laplace",
               progress_bar=False)
    idata = post.to_inference_data()
    assert idata.posterior["weights"].sizes["feature"] == 5
    assert idata.constant_data["features"].sizes["data_feature"] == 2
