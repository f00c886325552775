"""``bayes-irl fit --preferences``: alone (inline items, ties) and with demonstrations (ids)."""

import arviz as az
import torch

from bayes_irl.app.cli import main
from bayes_irl.gridworld import GridWorld
from bayes_irl.io import load_demonstrations, save_demonstrations
from bayes_irl.models import PreferenceModel, save_preferences, simulate_comparisons


def test_fit_preferences_with_demos_by_id_and_alone_inline(tmp_path, capsys):
    mdp_path, demos_path = tmp_path / "mdp.npz", tmp_path / "demos.npz"
    args = ["--grid-size", "3", "--num-demos", "20", "--seed", "0"]
    assert main(["simulate", *args, "--out-mdp", str(mdp_path),
                 "--out-demos", str(demos_path)]) == 0
    world = GridWorld.create(size=3, seed=0)
    items = world.sample_demonstrations(10, seed=5)
    items_path = save_demonstrations(tmp_path / "items.npz", items)
    model = PreferenceModel(world.reward_model, items)
    by_id = save_preferences(tmp_path / "prefs.csv",
                             simulate_comparisons(model, world.true_weights, 30, seed=0))
    # Laplace by Adam: 300 steps converge on these small problems (the CLI default is 5000)
    fit_args = ["--method", "laplace", "--num-steps", "300", "--num-samples", "50", "--no-progress"]
    out = tmp_path / "combined"
    assert main(["fit", "--mdp", str(mdp_path), "--demos", str(demos_path), "--preferences",
                 str(by_id), "--items", str(items_path), "--out", str(out), *fit_args]) == 0
    assert "20 demonstrations + 30 comparisons" in capsys.readouterr().out
    idata = az.from_netcdf(out / "posterior.nc")
    assert set(idata.log_likelihood.data_vars) == {"demonstrations", "preferences"}
    assert idata.log_likelihood["preferences"].shape == (1, 50, 30)

    # preferences alone, inline trajectories with ties, on the built-in gridworld
    mdp_model = PreferenceModel(world.reward_model, world.mdp, ties="davidson")
    inline = simulate_comparisons(mdp_model, world.true_weights, 25, seed=1,
                                  items=load_demonstrations(items_path))
    assert (torch.as_tensor(inline.outcomes) == 0.5).any()
    path = save_preferences(tmp_path / "inline.jsonl", inline)
    out = tmp_path / "alone"
    assert main(["fit", *args, "--preferences", str(path), "--out", str(out), *fit_args]) == 0
    assert "; 25 comparisons from" in capsys.readouterr().out
    idata = az.from_netcdf(out / "posterior.nc")
    assert set(idata.log_likelihood.data_vars) == {"preferences"}


def test_fit_preferences_errors(tmp_path, capsys):
    ids = tmp_path / "ids.csv"
    ids.write_text("first,second,outcome\n0,1,1\n1,2,0\n")
    out = ["--out", str(tmp_path / "o"), "--grid-size", "3", "--method", "laplace"]
    assert main(["fit", "--preferences", str(ids), *out]) == 2
    assert "names items by id: pass --items" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("first,second,outcome\n0,1,1\n1,2,maybe\n")
    assert main(["fit", "--preferences", str(bad), *out]) == 2
    assert "bad.csv line 3: outcome must be 1" in capsys.readouterr().err
    assert main(["fit", "--mdp", str(tmp_path / "m.npz"), *out]) == 2
    assert "--mdp needs --demos or --preferences" in capsys.readouterr().err
