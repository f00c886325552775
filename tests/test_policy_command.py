"""``bayes-irl policy``: outputs, refusal to overwrite, named errors."""

import arviz as az
import numpy as np
import pytest
import torch

from bayes_irl import GridWorld
from bayes_irl.app.cli import main
from bayes_irl.inference.decisions import reward_draws
from bayes_irl.io import save_mdp
from bayes_irl.policy_evaluation import expected_return


@pytest.fixture
def files(tmp_path):
    world = GridWorld.create(size=3, horizon=4, seed=0)
    mdp_path = save_mdp(tmp_path / "test.npz", world.mdp)
    g = np.random.default_rng(0)
    weights = world.true_weights.numpy() + 0.3 * g.standard_normal((1, 200, 4))
    posterior_path = tmp_path / "posterior.nc"
    az.from_dict(posterior={"weights": weights}).to_netcdf(str(posterior_path))
    return world, mdp_path, posterior_path, weights


def test_policy_command_writes_policy_and_return_distribution(files, tmp_path, capsys):
    world, mdp_path, posterior_path, weights = files
    out = tmp_path / "out"
    argv = ["policy", "--posterior", str(posterior_path), "--mdp", str(mdp_path),
            "--risk", "cvar:0.1", "--num-steps", "30", "--out", str(out)]
    assert main(argv) == 0
    saved = np.load(out / "policy.npz")
    assert saved["policy"].shape == (4, 9, 5) and str(saved["risk"]) == "cvar:0.1"
    np.testing.assert_allclose(saved["policy"].sum(-1), 1.0, atol=1e-12)
    # the saved returns are the exact returns of the saved policy under every draw
    draws = reward_draws(torch.as_tensor(weights[0]), world.mdp)
    exact = expected_return(world.mdp, torch.as_tensor(saved["policy"]), draws)
    np.testing.assert_allclose(saved["returns"], exact.numpy(), rtol=1e-12)
    assert (saved["regret"] >= -1e-12).all()
    assert (out / "return_distribution.png").stat().st_size > 0
    assert "5% quantile" in capsys.readouterr().out
    # never overwritten without --overwrite
    assert main(argv) == 2
    assert "already exist" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


@pytest.mark.parametrize(
    "extra, match",
    [(["--risk", "var:0.1"], "risk must be one of"),
     (["--risk", "cvar:2"], "alpha"),
     (["--site", "nope"], "site 'nope'")],
)
def test_policy_command_errors(files, tmp_path, capsys, extra, match):
    _, mdp_path, posterior_path, _ = files
    argv = ["policy", "--posterior", str(posterior_path), "--mdp", str(mdp_path),
            "--out", str(tmp_path / "o"), *extra]
    assert main(argv) == 2
    assert match in capsys.readouterr().err


def test_policy_command_rejects_mismatched_features(tmp_path, capsys):
    world = GridWorld.create(size=3, horizon=4, num_features=2, seed=0)
    mdp_path = save_mdp(tmp_path / "test.npz", world.mdp)
    posterior_path = tmp_path / "posterior.nc"
    az.from_dict(posterior={"weights": np.zeros((1, 10, 4))}).to_netcdf(str(posterior_path))
    argv = ["policy", "--posterior", str(posterior_path), "--mdp", str(mdp_path),
            "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "D = 4 parameters" in capsys.readouterr().err
    assert main([*argv[:2], str(tmp_path / "missing.nc"), *argv[3:]]) == 2
