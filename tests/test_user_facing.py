"""Reward maps and other plots, CLI prior options, fit option names, reprs, feature checks."""

from dataclasses import replace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from bayes_irl import GridWorld, LinearReward  # noqa: E402
from bayes_irl.app.cli import REWARD_MAP_FILE, main  # noqa: E402
from bayes_irl.app.plots import (  # noqa: E402
    plot_action_posterior,
    plot_khat,
    plot_reward_map,
    plot_reward_maps,
    plot_svi_loss,
    state_reward_statistic,
)
from bayes_irl.inference import ExactNormalizer, fit  # noqa: E402
from bayes_irl.inference.fit import backend_options  # noqa: E402
from bayes_irl.models import DemonstrationModel  # noqa: E402


@pytest.fixture(scope="module")
def small_fit():
    world = GridWorld.create(size=3, num_features=2, horizon=4, seed=0)
    demos = world.sample_demonstrations(40, seed=0)
    model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
    post = fit(model, demos, method="svi", num_steps=60, num_samples=200, progress_bar=False)
    return world, demos, model, post


def test_state_reward_statistics_against_hand_computation():
    g = torch.Generator().manual_seed(0)
    step = torch.randn(400, 5, 1, generator=g, dtype=torch.float64).expand(400, 5, 3)
    r = step[..., 0].numpy()
    np.testing.assert_allclose(state_reward_statistic(step, "mean"), r.mean(0))
    np.testing.assert_allclose(state_reward_statistic(step, "sd"), r.std(0, ddof=1))
    np.testing.assert_allclose(state_reward_statistic(step, "prob_positive"), (r > 0).mean(0))
    best = np.bincount(r.argmax(1), minlength=5) / 400
    np.testing.assert_allclose(state_reward_statistic(step, "prob_best"), best)
    assert state_reward_statistic(step, "prob_best").sum() == pytest.approx(1.0)
    width = np.quantile(r, 0.95, 0) - np.quantile(r, 0.05, 0)
    np.testing.assert_allclose(state_reward_statistic(step, "interval_width"), width)
    with pytest.raises(ValueError, match="statistic must be one of"):
        state_reward_statistic(step, "median")


def test_reward_maps_and_plots(small_fit):
    world, demos, model, post = small_fit
    fig = plot_reward_maps(world.mdp, world.reward_model, post, demonstrations=demos)
    assert len(fig.axes) == 6  # three maps and their colour bars
    mean_map = fig.axes[0].images[0].get_array()
    expected = state_reward_statistic(
        world.reward_model.step_rewards(post.flat_samples()["weights"]), "mean"
    ).reshape(3, 3)
    np.testing.assert_allclose(np.asarray(mean_map), expected)
    visits = [t.get_text() for t in fig.axes[0].texts]
    counts = np.bincount(demos.states[demos.states >= 0].numpy(), minlength=9)
    assert visits == [str(c) for c in counts]
    plt.close(fig)
    ax = plot_reward_map(
        world.mdp,
        world.reward_model,
        post.flat_samples()["weights"][:50],
        statistic="prob_best",
        arrows=False,
    )
    plt.close(ax.figure)
    ax = plot_action_posterior(world.mdp, world.reward_model, post, states=[0, 4], kind="global")
    assert len(ax.patches) == 2 * world.mdp.num_actions
    plt.close(ax.figure)
    plt.close(plot_svi_loss(post).figure)
    plt.close(plot_khat(post).figure)
    with pytest.raises(ValueError, match="2-D layout"):
        plot_reward_map(replace(world.mdp, layout=None), world.reward_model, post)
    with pytest.raises(ValueError, match="layout .* has 4 cells"):
        plot_reward_map(world.mdp, world.reward_model, post, layout=(2, 2))
    with pytest.raises(ValueError, match="time must lie"):
        plot_action_posterior(world.mdp, world.reward_model, post, states=[0], time=9)


# 200 prior proposals on purpose (only the error of plot_svi_loss is tested): k-hat warns
@pytest.mark.filterwarnings("ignore:NOT CONVERGED:UserWarning")
def test_svi_loss_needs_svi(small_fit):
    world, demos, model, _ = small_fit
    post = fit(model, demos, method="importance", num_proposals=200, num_samples=20, warn=False)
    with pytest.raises(ValueError, match="no SVI loss trace"):
        plot_svi_loss(post)


def test_fit_lists_valid_options(small_fit):
    world, demos, model, _ = small_fit
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['lr'\].*'learning_rate'\?"):
        fit(model, demos, method="svi", lr=0.1)
    with pytest.raises(ValueError, match=r"did you mean 'warmup_steps'.*valid options: .*"):
        fit(model, demos, method="nuts", num_warmup=10)
    with pytest.raises(ValueError, match=r"\['kernel'\]"):
        fit(model, demos, method="hmc", kernel="nuts")  # fixed by the method
    assert "learning_rate" in backend_options("laplace")  # passed on to run_svi
    assert "optimizer" in backend_options("laplace")
    assert "warmup_steps" in backend_options("nuts") and "kernel" not in backend_options("nuts")
    with pytest.raises(ValueError, match="method must be one of"):
        backend_options("vi")


def test_reprs_are_short(small_fit):
    world, demos, _, post = small_fit
    assert repr(demos) == "TrajectoryBatch(n=40, horizon=4, lengths 4)"
    text = repr(post)
    assert text.startswith("Posterior(method='svi', chains=1, draws=200, sites: weights (2,)")
    assert len(text) < 200 and "tensor" not in text


def test_reward_feature_mismatch_warns_or_raises():
    world = GridWorld.create(size=3, num_features=2, horizon=4, seed=0)
    other = LinearReward(torch.randn(9, 5, 3, dtype=torch.float64))
    with pytest.warns(UserWarning, match="K = 3 features but the MDP has K = 2"):
        DemonstrationModel(other, ExactNormalizer(world.mdp))
    wrong_states = LinearReward(torch.randn(8, 5, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(S, A\) = \(9, 5\)"):
        DemonstrationModel(wrong_states, ExactNormalizer(world.mdp))


def test_cli_prior_options_and_reward_map(tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "fit",
        "--grid-size",
        "3",
        "--num-features",
        "2",
        "--horizon",
        "4",
        "--num-demos",
        "30",
        "--method",
        "svi",
        "--num-steps",
        "40",
        "--num-samples",
        "50",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert main([*args, "--prior-scale", "3", "--prior-family", "laplace"]) == 0
    assert (out / REWARD_MAP_FILE).stat().st_size > 0
    assert REWARD_MAP_FILE in capsys.readouterr().out
    # a second run must not overwrite the map either
    assert main([*args, "--prior-scale", "3"]) == 2
    assert "reward_map.png" in capsys.readouterr().err
    assert main([*args, "--prior-scale", "-1", "--overwrite"]) == 2
    assert "--prior-scale must be a positive number" in capsys.readouterr().err
