"""Posterior predictive checks, PSIS-LOO and model comparison on small gridworlds.

All fits use the Laplace back-end (MAP + Hessian, ~1 s here; 100 demonstrations make the
posterior close to Gaussian, see test_backends.py) and fixed seeds.
"""

import arviz as az
import matplotlib
import numpy as np
import pytest
import torch

from bayes_irl import GridWorld, LinearReward
from bayes_irl.inference import ExactNormalizer, fit
from bayes_irl.inference.compare import compare, loo
from bayes_irl.inference.predictive import posterior_predictive_check
from bayes_irl.models import DemonstrationModel
from bayes_irl.models.preference_simulation import simulate_comparisons
from bayes_irl.models.preferences import PreferenceModel
from bayes_irl.soft_bellman import sample_maxent_trajectories

matplotlib.use("Agg")

LAPLACE = {"method": "laplace", "num_steps": 300, "num_samples": 400, "progress_bar": False}
WEIGHTS = [1.5, -1.0]


def _world(slip=0.1):
    return GridWorld.create(size=3, num_features=2, horizon=4, seed=1, slip=slip,
                            true_weights=WEIGHTS)


def _fit(world, demos, kind="global", reward=None):
    model = DemonstrationModel(reward or world.reward_model,
                               ExactNormalizer(world.mdp, kind=kind))
    return fit(model, demos, **LAPLACE)


@pytest.fixture(scope="module")
def well_specified():
    world = _world()
    post = _fit(world, world.sample_demonstrations(100, seed=0))
    return post, posterior_predictive_check(post, num_draws=200, seed=0)


def test_ppc_passes_on_data_from_the_model(well_specified):
    # Data simulated from the fitted model family: every observed statistic must lie in the
    # central 99% of its replicated distribution (p-values of a PPC are ~uniform or more
    # concentrated near 0.5 under the model, so p < 0.01 has probability <= 1% per
    # component; seeded, so the outcome is deterministic).
    _, ppc = well_specified
    assert not ppc.table["outside"].any(), ppc.table
    assert (ppc.table["p_value"] > 0.01).all()
    assert ppc.flagged() == []
    assert set(ppc.omnibus) == {"feature_counts", "state_visits"}


def test_ppc_table_and_posterior_predictive_group(well_specified):
    post, ppc = well_specified
    table = ppc.table
    assert list(table.columns) == ["statistic", "component", "observed", "replicated_mean",
                                   "replicated_sd", "lower", "upper", "p_value", "outside"]
    assert len(table) == 2 + 9  # K features + S states
    idata = ppc.idata
    pp = idata.posterior_predictive["feature_counts"]
    assert pp.dims == ("chain", "draw", "demo", "feature")
    assert pp.shape == (1, 200, 100, 2)
    assert idata.observed_data["feature_counts"].dims == ("demo", "feature")
    # the observed statistic in observed_data equals the trajectories' feature counts
    counts = post.data  # (n, T + 1, 2)
    mdp = post.model.mdp
    phi = mdp.features[counts[:, :-1, 0], counts[:, :-1, 1]].sum(1)
    np.testing.assert_allclose(idata.observed_data["feature_counts"].values, phi.numpy())
    # replicated demos are exact maxent samples: their mean feature counts per draw match
    # the exact expectation of that draw within 5 Monte Carlo sds (100 demos per replicate).
    draw = idata.posterior_predictive["draw"].values[0]
    theta = post.samples["weights"][0, draw]
    r = mdp.features @ theta  # (S, A)
    many = sample_maxent_trajectories(mdp, r, 20000, generator=torch.Generator().manual_seed(0))
    phi_many = mdp.features[many[:, :-1, 0], many[:, :-1, 1]].sum(1)
    rep = pp.values[0, 0].mean(0)
    se = phi_many.std(0).numpy() / np.sqrt(100)
    assert (np.abs(rep - phi_many.mean(0).numpy()) < 5 * se).all()


def test_plot_ppc_and_bpv_work(well_specified):
    _, ppc = well_specified
    ax = az.plot_ppc(ppc.idata, var_names=["feature_counts"],
                     coords={"feature": ["feature_0"]}, num_pp_samples=20, random_seed=0)
    assert ax is not None
    assert az.plot_bpv(ppc.idata, var_names=["feature_counts"], kind="t_stat",
                       t_stat="mean") is not None
    matplotlib.pyplot.close("all")


def test_ppc_flags_a_reward_the_model_cannot_express():
    # Demonstrations from a random per-state reward (sd 1.5) that two random features
    # cannot express. State visits reveal it (omnibus p = 0.0 measured: 4 of 9 states
    # outside the 99% band). Feature counts do NOT: they are the sufficient statistic
    # of the linear maxent model and the fit matches their mean (measured p = 0.99); we
    # assert that too, so nobody reads a passing feature-count check as evidence of a good
    # reward.
    world = _world()
    g = torch.Generator().manual_seed(3)
    r = 1.5 * torch.randn(9, generator=g, dtype=torch.float64)[:, None].expand(9, 5)
    demos = sample_maxent_trajectories(world.mdp, r, 100, generator=g)
    ppc = posterior_predictive_check(_fit(world, demos), num_draws=200, seed=0)
    assert ppc.flagged() == ["state_visits"]
    assert ppc.omnibus["state_visits"] < 0.01
    assert ppc.omnibus["feature_counts"] > 0.5


def test_causal_vs_global_mismatch_is_caught_by_loo_not_by_ppc():
    # Causal demonstrator, slip 0.5, fitted with both models. Measured: az.compare puts
    # the causal model first with elpd_diff 107.5 and dse 12.9 (8 dse: clear-cut), while
    # the PPC on the global fit does not flag (state-visit omnibus p = 0.825): these
    # statistics are not sensitive to the transition tilt of the global model. Asserted so
    # that the limitation stays documented.
    world = _world(slip=0.5)
    demos = world.sample_demonstrations(100, seed=0, kind="causal")
    post_global = _fit(world, demos, kind="global")
    post_causal = _fit(world, demos, kind="causal")
    table = compare({"global": post_global, "causal": post_causal})
    assert table.index[0] == "causal"
    assert table.loc["global", "elpd_diff"] > 5 * table.loc["global", "dse"]
    ppc = posterior_predictive_check(post_global, num_draws=200, seed=0)
    assert ppc.flagged() == []


def test_loo_gives_khat_per_demonstration(well_specified):
    post, ppc = well_specified
    result = loo(ppc.idata)
    assert result.pareto_k.dims == ("demo",)
    assert result.pareto_k.shape == (100,)
    assert np.isfinite(result.pareto_k.values).all()
    # 100 demos, 2 parameters: no single demonstration dominates (k-hat < 0.7 for all)
    assert (result.pareto_k.values < 0.7).all()
    assert result.loo_i.shape == (100,)
    # the same on the Posterior directly
    assert np.isclose(loo(post).elpd_loo, result.elpd_loo)


def test_compare_ranks_true_features_first():
    # Same demonstrations, the true features vs the features of another random world:
    # measured elpd_diff 107 with dse 13 (8 dse), so the ranking is not a coin flip.
    world = _world()
    demos = world.sample_demonstrations(100, seed=0)
    other = GridWorld.create(size=3, num_features=2, horizon=4, seed=7)
    wrong = LinearReward(other.mdp.features, num_actions=5)
    table = compare({"true": _fit(world, demos), "wrong": _fit(world, demos, reward=wrong)})
    assert list(table.index) == ["true", "wrong"]
    assert table.loc["wrong", "elpd_diff"] > 5 * table.loc["wrong", "dse"]
    assert table.loc["true", "weight"] > 0.9


def test_ppc_preference_agreement():
    # Bradley-Terry comparisons simulated from the model: the observed agreement of the
    # outcomes with the fitted reward's ordering lies inside the replicated 99% band.
    world = _world()
    items = world.sample_demonstrations(30, seed=1)
    model = PreferenceModel(world.reward_model, items)
    data = simulate_comparisons(model, world.true_weights, 200, seed=0)
    post = fit(model, data, **LAPLACE)
    ppc = posterior_predictive_check(post, num_draws=200, seed=0)
    row = ppc.table.set_index("statistic").loc["preference_agreement"]
    assert 0.5 < row["observed"] <= 1 and row["p_value"] > 0.01
    pp = ppc.idata.posterior_predictive["preference_agreement"]
    assert pp.dims == ("chain", "draw", "comparison") and pp.shape == (1, 200, 200)
    assert set(np.unique(pp.values)) <= {0.0, 0.5, 1.0}


@pytest.mark.parametrize(
    "kwargs, match",
    [({"num_draws": 1}, "num_draws"), ({"prob": 1.0}, "prob"), ({"prob": 0}, "prob")],
)
def test_ppc_validation(well_specified, kwargs, match):
    post, _ = well_specified
    with pytest.raises(ValueError, match=match):
        posterior_predictive_check(post, **kwargs)


def test_ppc_unknown_model_raises(well_specified):
    post, _ = well_specified

    class Other:
        pass

    odd = type(post)(samples=post.samples, method="x", model=Other(), data=post.data)
    with pytest.raises(ValueError, match="no replicator"):
        posterior_predictive_check(odd)


def test_compare_and_loo_validation(well_specified):
    post, ppc = well_specified
    with pytest.raises(ValueError, match="at least two"):
        compare({"one": post})
    with pytest.raises(ValueError, match="var_name"):
        loo(ppc.idata, var_name="nope")
    with pytest.raises(ValueError, match="Posterior or an arviz.InferenceData"):
        loo(3)
