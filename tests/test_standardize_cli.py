"""``bayes-irl fit --standardize``: features x1000 give the weights of the unscaled data / 1000.

Standardising makes the fitted features the same whatever the user's units (centre and
scale per column), and the weights are mapped back as theta_k = theta~_k / s_k, so

* a fit of the data with every feature x1000 reports exactly the weights of the same fit
  of the unscaled data divided by 1000 (only float64 rounding differs between the two
  standardised feature arrays; L-BFGS then stops at its own tolerance, hence rtol 1e-5);
* the reported posterior is the posterior of the user-scale model (the user's features,
  prior N(0, 1 / s_k)): a Laplace fit of that model directly agrees to the same rtol;
* the saved ``posterior.nc`` and ``summary.csv`` carry the user-scale weights.

The Laplace method keeps the test fast and deterministic (the MAP and Hessian by L-BFGS,
draws seeded); the mapping is the same for every method.
"""

import arviz as az
import numpy as np
import pandas as pd
import pyro.distributions as dist
import pytest
import torch

from bayes_irl import GridWorld, TabularMDP
from bayes_irl.app.cli import main
from bayes_irl.inference import ExactNormalizer, fit
from bayes_irl.inference.standardize import standardized_features
from bayes_irl.io import load_demonstrations, load_mdp, save_demonstrations, save_mdp
from bayes_irl.models import DemonstrationModel
from bayes_irl.rewards import LinearReward

FACTOR = 1000.0
RTOL = 1e-5  # float64 rounding of the two standardised arrays, then L-BFGS's tolerance


def _scaled(mdp: TabularMDP, factor: float) -> TabularMDP:
    return TabularMDP.from_sparse(
        successors=mdp.successors, successor_probs=mdp.successor_log_probs.exp(),
        initial=mdp.initial, features=mdp.features * factor, horizon=mdp.horizon)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("standardize")
    world = GridWorld.create(size=3, horizon=4, seed=0)
    save_demonstrations(folder / "demos.npz", world.sample_demonstrations(60, seed=2))
    save_mdp(folder / "mdp.npz", _scaled(world.mdp, 1.0))
    save_mdp(folder / "mdp_x1000.npz", _scaled(world.mdp, FACTOR))
    return folder


def _fit(files, mdp_name, out, *extra):
    args = ["fit", "--mdp", str(files / mdp_name), "--demos", str(files / "demos.npz"),
            "--method", "laplace", "--num-samples", "2000", "--seed", "4", "--no-progress",
            "--out", str(out), *extra]
    assert main(args) == 0
    return az.from_netcdf(str(out / "posterior.nc"))


def test_standardize_reports_user_scale_weights(files, tmp_path, capsys):
    scaled = _fit(files, "mdp_x1000.npz", tmp_path / "x1000", "--standardize")
    unscaled = _fit(files, "mdp.npz", tmp_path / "x1", "--standardize")
    weights = scaled.posterior["weights"].values
    reference = unscaled.posterior["weights"].values / FACTOR
    # the user's scale: weights of order 1e-3, draw by draw the unscaled fit / 1000
    assert np.abs(weights.mean(axis=(0, 1))).max() < 0.05
    np.testing.assert_allclose(weights, reference, rtol=RTOL, atol=RTOL * np.abs(reference).max())
    assert scaled.posterior.attrs["standardized"] == 1
    scale = np.array([float(v) for v in scaled.posterior.attrs["feature_scale"].split(",")])
    unscaled_scale = [float(v) for v in unscaled.posterior.attrs["feature_scale"].split(",")]
    np.testing.assert_allclose(scale, FACTOR * np.array(unscaled_scale), rtol=1e-5)
    # summary.csv (what the user reads) holds the same user-scale means, not rounded to
    # 3 decimals (which showed these weights as 0.001 with sd 0.0)
    summary = pd.read_csv(tmp_path / "x1000" / "summary.csv", index_col=0)
    np.testing.assert_allclose(summary["mean"].to_numpy(), weights.mean(axis=(0, 1)),
                               rtol=1e-9)
    assert (summary["sd"] > 0).all()
    printed = f"{summary['mean'].iloc[0]:.4g}"  # 4 significant digits on screen
    assert printed.startswith("-0.000") and printed in capsys.readouterr().out

    # the same posterior as a direct fit of the user-scale model (prior N(0, 1 / s_k))
    mdp, _ = load_mdp(files / "mdp_x1000.npz")
    _, s = standardized_features(mdp.features)
    user_model = DemonstrationModel(
        LinearReward(mdp.features, prior=dist.Normal(torch.zeros_like(s), 1 / s)),
        ExactNormalizer(mdp))
    direct = fit(user_model, load_demonstrations(files / "demos.npz", mdp=mdp),
                 method="laplace", num_samples=2000, seed=4, progress_bar=False)
    # same seed: draws MAP + chol(Sigma) eps with the same eps, and
    # chol(D^-1 Sigma~ D^-1) = D^-1 chol(Sigma~) for D = diag(s): equal draw by draw
    direct_weights = direct.samples["weights"].numpy()
    np.testing.assert_allclose(weights, direct_weights, rtol=RTOL,
                               atol=RTOL * np.abs(direct_weights).max())
