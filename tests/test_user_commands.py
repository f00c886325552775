"""Every user command at a small size with its defaults, checked against what it writes.

``bayes-irl fit`` (default NUTS with ESS-sized draws, ``--method svi`` and ``laplace``,
``--preferences`` on the Bradley-Terry potential), ``calibrate``, ``ask`` in a
pseudo-terminal and ``policy`` on the posterior.nc of a real fit; and the reward map's
arrows against the soft policy they claim to show. No convergence warning is silenced
here: a default fit must pass the library's own checks, asserted from what it wrote.

The fits run on the built-in gridworld at its default size (5x5, 200 demonstrations,
horizon 10) and seed 0, in process, like a user's ``bayes-irl fit --out DIR``.
"""

import contextlib
import io
import json
import os
import sys
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import arviz as az  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.quiver import Quiver  # noqa: E402

from bayes_irl import GridWorld  # noqa: E402
from bayes_irl.app import ask_command, calibrate_command, policy_command  # noqa: E402
from bayes_irl.app.cli import OUTPUT_FILES, REWARD_MAP_FILE, _parser, main  # noqa: E402
from bayes_irl.app.fit_checks import COMPLETE_MARKER  # noqa: E402
from bayes_irl.app.plots import plot_reward_map  # noqa: E402
from bayes_irl.gridworld import ACTION_NAMES  # noqa: E402
from bayes_irl.inference import fit  # noqa: E402
from bayes_irl.inference.convergence import ConvergenceWarning  # noqa: E402
from bayes_irl.io import load_mdp, save_demonstrations  # noqa: E402
from bayes_irl.models import (  # noqa: E402
    PreferenceModel,
    load_preferences,
    save_preferences,
    simulate_comparisons,
)
from bayes_irl.soft_bellman import soft_policy  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
R_HAT_MAX = 1.01
TARGET_ESS = 400  # the ESS-sized draws' target (--num-samples default None)


def _run(argv):
    """``bayes-irl ARGV`` in process: (exit code, stdout)."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), warnings.catch_warnings():
        # a fit that fails a check must fail the test (the CLI prints the verdict instead
        # of warning, and the assertions below read it from the files)
        warnings.simplefilter("error", ConvergenceWarning)
        code = main([str(a) for a in argv])
    return code, printed.getvalue()


def _assert_fit_outputs(out: Path, printed: str, method: str):
    """The outputs of ``bayes-irl fit`` exist, are complete, and say the fit converged."""
    names = (*OUTPUT_FILES, REWARD_MAP_FILE)  # the built-in gridworld has a 2-D layout
    for name in names:
        assert (out / name).stat().st_size > 0, name
    for name in names:
        if name.endswith(".png"):
            assert (out / name).read_bytes()[:8] == PNG_MAGIC, name
    idata = az.from_netcdf(str(out / "posterior.nc"))
    attrs = idata.posterior.attrs
    assert attrs["method"] == method
    assert attrs["convergence_ok"] == 1, attrs["convergence_verdict"]
    verdict = attrs["convergence_verdict"]
    assert verdict.startswith(f"converged ({method}:")
    assert f"convergence: {verdict}" in printed  # what the user was told
    marker = json.loads((out / COMPLETE_MARKER).read_text())
    assert marker == {"files": list(names), "convergence": verdict}
    # summary.csv holds the posterior means of the written draws
    summary = pd.read_csv(out / "summary.csv", index_col=0)
    weights = idata.posterior["weights"].values
    np.testing.assert_allclose(summary["mean"].to_numpy(), weights.mean((0, 1)), rtol=1e-10)
    assert np.isfinite(weights).all()
    return idata


# --------------------------------------------------------------------------- fit (NUTS)


@pytest.fixture(scope="module")
def default_fit(tmp_path_factory):
    """``bayes-irl fit --out DIR`` with every default (NUTS, ESS-sized draws), and the
    same gridworld written by ``bayes-irl simulate`` (its MDP for ``bayes-irl policy``)."""
    root = tmp_path_factory.mktemp("default_fit")
    out = root / "run"
    code, printed = _run(["fit", "--out", out, "--no-progress"])
    assert code == 0
    mdp_path, demos_path = root / "mdp.npz", root / "demos.npz"
    assert _run(["simulate", "--out-mdp", mdp_path, "--out-demos", demos_path])[0] == 0
    return out, printed, mdp_path


def test_fit_default_nuts_converges_with_ess_sized_draws(default_fit):
    out, printed, _ = default_fit
    idata = _assert_fit_outputs(out, printed, "nuts")
    attrs = idata.posterior.attrs
    weights = idata.posterior["weights"]
    chains, draws, dims = weights.shape
    assert chains >= 2 and dims == 4
    # ESS-sized: the draws were not given, they were grown until bulk ESS >= 400
    assert attrs["target_ess"] == TARGET_ESS and attrs["num_samples"] == draws
    assert float(az.ess(idata, method="bulk")["weights"].min()) >= TARGET_ESS
    r_hat = az.rhat(idata)["weights"].values
    assert (r_hat < R_HAT_MAX).all(), r_hat
    assert attrs["convergence_r_hat"] == pytest.approx(r_hat.max(), rel=1e-9)
    assert not idata.sample_stats["diverging"].values.any()
    # the per-demonstration log-likelihood for LOO/WAIC: 200 default demonstrations
    assert idata.log_likelihood["demonstrations"].shape == (chains, draws, 200)
    assert "r_hat" in printed and "200 demonstrations; method nuts" in printed


# --------------------------------------------------------------------------- svi, laplace


@pytest.mark.parametrize("method", ["svi", "laplace"])
def test_fit_svi_and_laplace_defaults_converge(tmp_path, method):
    out = tmp_path / method
    code, printed = _run(["fit", "--method", method, "--out", out, "--no-progress"])
    assert code == 0
    idata = _assert_fit_outputs(out, printed, method)
    # independent draws from the fitted Gaussian: one chain of the default 1000
    assert idata.posterior["weights"].shape == (1, 1000, 4)
    if method == "svi":
        assert "elbo_stationarity" in idata.posterior.attrs["convergence_verdict"]
    else:
        assert idata.posterior.attrs["convergence_map_newton_decrement"] <= (
            idata.posterior.attrs["convergence_map_newton_decrement_threshold"])


# --------------------------------------------------------------------------- preferences


def test_fit_preferences_default_nuts_on_the_bradley_terry_potential(tmp_path):
    world = GridWorld.create(seed=0)  # the CLI's built-in gridworld at its defaults
    items = world.sample_demonstrations(20, seed=5)
    items_path = save_demonstrations(tmp_path / "items.npz", items)
    model = PreferenceModel(world.reward_model, items)
    prefs = save_preferences(tmp_path / "prefs.csv",
                             simulate_comparisons(model, world.true_weights, 100, seed=0))
    out = tmp_path / "run"
    code, printed = _run(["fit", "--preferences", prefs, "--items", items_path, "--out", out,
                          "--no-progress"])
    assert code == 0
    assert "100 comparisons from" in printed and "method nuts" in printed
    idata = _assert_fit_outputs(out, printed, "nuts")
    attrs = idata.posterior.attrs
    # the fast path: NumPy NUTS on the sufficient-statistics (Bradley-Terry) potential
    assert attrs["potential"] == "sufficient_statistics" and attrs["sampler"] == "numpy_nuts"
    assert idata.posterior["weights"].shape[0] >= 2
    assert (az.rhat(idata)["weights"].values < R_HAT_MAX).all()
    assert float(az.ess(idata, method="bulk")["weights"].min()) >= TARGET_ESS
    assert set(idata.log_likelihood.data_vars) == {"preferences"}
    assert idata.log_likelihood["preferences"].shape[-1] == 100


# --------------------------------------------------------------------------- policy


def _hard_optimal_values(mdp, rewards: np.ndarray):
    """Backward induction in NumPy: Q_t(s, a) = r(s, a) + sum_s' p(s'|s, a) V_{t+1}(s')."""
    p = mdp.dense_transitions().cpu().numpy()
    value = np.zeros(mdp.num_states)
    qs = []
    for _ in range(mdp.horizon):
        q = rewards + p @ value
        value = q.max(-1)
        qs.append(q)
    return np.stack(qs[::-1]), value  # Q (T, S, A) and V_0 (S,)


@pytest.mark.parametrize("risk", [None, "soft"])
def test_policy_on_the_posterior_of_a_real_fit(default_fit, tmp_path, risk):
    fit_out, _, mdp_path = default_fit
    out = tmp_path / "policy"
    extra = [] if risk is None else ["--risk", risk]
    code, printed = _run(["policy", "--posterior", fit_out / "posterior.nc", "--mdp", mdp_path,
                          "--out", out, *extra])
    assert code == 0
    for name in policy_command.OUTPUT_FILES:
        assert (out / name).stat().st_size > 0
    saved = np.load(out / "policy.npz")
    mdp, _ = load_mdp(mdp_path)
    policy = saved["policy"]
    assert policy.shape == (mdp.horizon, mdp.num_states, mdp.num_actions)
    np.testing.assert_allclose(policy.sum(-1), 1.0, atol=1e-12)
    # the posterior-mean reward of the draws the command uses (the first 1000, default)
    theta = az.from_netcdf(str(fit_out / "posterior.nc")).posterior["weights"].values
    theta = theta.reshape(-1, theta.shape[-1])[:1000]
    assert saved["returns"].shape == saved["regret"].shape == (theta.shape[0],)
    r_bar = mdp.features.cpu().numpy() @ theta.mean(0)  # r(s, a) = phi(s, a) . theta
    initial = mdp.initial.cpu().numpy()
    if risk is None:  # "mean": hard-optimal for the posterior-mean reward
        q, v0 = _hard_optimal_values(mdp, r_bar)
        assert set(np.unique(policy)) <= {0.0, 1.0}
        chosen = (policy * q).sum(-1)
        np.testing.assert_allclose(chosen, q.max(-1), atol=1e-10)
        # J is linear in r: the mean return over the draws is J(pi; r_bar) = E_s0 V_0
        assert saved["returns"].mean() == pytest.approx(initial @ v0, rel=1e-10)
        assert (saved["regret"] >= -1e-10).all()
    else:  # "soft" (tau = 1): the soft-optimal policy of the posterior-mean reward
        log_pi = soft_policy(mdp, torch.as_tensor(r_bar, dtype=mdp.dtype), kind="causal")
        np.testing.assert_allclose(policy, log_pi.exp().numpy(), atol=1e-12)
    assert "return over the posterior: mean" in printed


# --------------------------------------------------------------------------- calibrate


def test_calibrate_defaults_with_a_few_simulations(tmp_path):
    num = 4
    code, printed = _run(["calibrate", "--simulations", num, "--out", tmp_path,
                          "--no-progress"])
    assert code == 0
    for name in calibrate_command.OUTPUT_FILES:
        assert (tmp_path / name).stat().st_size > 0
    assert len(list((tmp_path / "simulations").glob("simulation_*.npz"))) == num
    idata = az.from_netcdf(str(tmp_path / "calibration.nc"))
    sbc, summary = idata.sbc, idata.sbc_summary
    assert sbc.attrs["method"] == "laplace" and sbc.attrs["num_simulations"] == num
    draws = int(sbc.attrs["num_rank_draws"])
    assert draws == 99  # the default
    rank, pit = sbc["rank"].values, sbc["pit"].values
    assert rank.shape[0] == num and rank.shape == pit.shape
    assert ((rank >= 0) & (rank <= draws)).all()
    # fractional ranks: pit = (rank + U) / (L + 1), U ~ U(0, 1)
    np.testing.assert_array_equal(np.floor(pit * (draws + 1)).astype(int), rank)
    # the prior draws of the truth differ between simulations
    weights = [q for q in sbc["quantity"].values if str(q).startswith("weights[")]
    assert len(weights) == 4
    truth = sbc["truth"].sel(quantity=weights).values
    assert np.unique(truth.round(12), axis=0).shape[0] == num
    # coverage is the share of central intervals holding the truth, recomputed from pit
    levels = summary["level"].values
    inside = np.abs(pit[:, :, None] - 0.5) <= levels / 2
    np.testing.assert_allclose(summary["coverage"].values, inside.mean(0))
    table = pd.read_csv(tmp_path / "coverage.csv", index_col=0)
    assert list(table.index) == [str(q) for q in sbc["quantity"].values]
    np.testing.assert_allclose(table["cov90"].to_numpy(),
                               summary["coverage"].sel(level=0.9).values)
    assert f"laplace: {num} simulations" in printed


# --------------------------------------------------------------------------- ask


def test_ask_in_a_pseudo_terminal_writes_the_answers(tmp_path):
    """``bayes-irl ask`` with its defaults (4x4 grid, 20 items, EIG) and a budget of 2."""
    pexpect = pytest.importorskip("pexpect")
    answers = tmp_path / "answers.jsonl"
    argv = ["ask", "--answers", str(answers), "--budget", "2"]
    transcript = io.StringIO()
    child = pexpect.spawn(sys.executable, ["-m", "bayes_irl.app.cli", *argv],
                          encoding="utf-8", timeout=300,  # wall-clock allowance on 2 cores
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    child.logfile_read = transcript
    child.expect(r"query 1/2: which trajectory is better\?")
    child.expect_exact(ask_command.PROMPT)
    child.send("l")  # one key, no Enter
    child.expect(r"query 2/2")
    child.expect_exact(ask_command.PROMPT)
    child.send("r")
    child.expect(r"done \(budget\): 2 queries, 2 answers")
    child.expect(r"posterior mean of the reward weights: \[([^\]]*)\]")
    printed_mean = [float(v) for v in child.match.group(1).split(",")]
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "NOT CONVERGED" not in transcript.getvalue()
    records = [json.loads(line) for line in answers.read_text().splitlines()]
    assert [r["query_id"] for r in records] == [0, 1]
    assert [(r["answer"], r["outcome"]) for r in records] == [("left", 1.0), ("right", 0.0)]
    assert all(r["strategy"] == "eig" and 0 <= r["first"] < 20 and 0 <= r["second"] < 20
               and r["first"] != r["second"] for r in records)
    # the printed posterior is the Laplace fit of the answers file, and that fit converged
    mdp, reward, items = ask_command._pool(_parser().parse_args(argv))
    model = PreferenceModel(reward, items, ties="davidson")
    post = fit(model, load_preferences(answers, items=items), method="laplace",
               optimizer="lbfgs", num_samples=10, progress_bar=False)
    assert post.attrs["convergence_ok"] == 1, post.attrs["convergence_verdict"]
    mean = post.extra["guide"].get_posterior().loc.detach().numpy()
    np.testing.assert_allclose(printed_mean, mean, atol=1e-3)


# --------------------------------------------------------------------------- reward map


def _centre_peaked_world(slip: float):
    """A 5x5 gridworld whose reward peaks at the centre cell (K = 24 features span it)."""
    world = GridWorld.create(size=5, num_features=24, slip=slip, horizon=6, seed=0)
    rows, cols = np.divmod(np.arange(25), 5)
    target = -(np.abs(rows - 2) + np.abs(cols - 2)).astype(float)
    features = world.mdp.features[:, 0].cpu().numpy()  # state features (S, K)
    theta, *_ = np.linalg.lstsq(features, target - target.mean(), rcond=None)
    g = np.random.default_rng(0)
    draws = torch.as_tensor(theta + 0.01 * g.standard_normal((40, theta.size)))
    return world, draws


@pytest.mark.parametrize("slip", [0.0, 0.1])
def test_reward_map_arrows_are_the_argmax_of_the_soft_policy(slip):
    world, draws = _centre_peaked_world(slip)
    mdp = world.mdp
    ax = plot_reward_map(mdp, world.reward_model, draws, kind="causal")
    (quiver,) = [c for c in ax.collections if isinstance(c, Quiver)]
    x, y = np.asarray(quiver.X), np.asarray(quiver.Y)
    u, v = np.asarray(quiver.U), np.asarray(quiver.V)
    rows, cols = np.divmod(np.arange(mdp.num_states), 5)
    np.testing.assert_array_equal(x, cols)  # one arrow per cell, at (column, row)
    np.testing.assert_array_equal(y, rows)
    np.testing.assert_array_equal(quiver.get_offsets(), np.c_[cols, rows])
    assert quiver.angles == "xy"  # the direction is drawn in data coordinates

    # independently: argmax at t = 0 of the soft policy of the posterior-mean reward
    r_bar = world.reward_model.step_rewards(draws).mean(0)
    best = soft_policy(mdp, r_bar, kind="causal")[0].argmax(-1).numpy()
    names = [ACTION_NAMES[a] for a in best]
    nominal = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1), "stay": (0, 0)}
    move = np.array([nominal[n] for n in names])  # (d_row, d_col) of the chosen action
    target = np.clip(np.c_[rows, cols] + move, 0, 4)  # walls keep the agent in place
    # its expected displacement: the chosen move with probability 1 - slip, and a uniform
    # random action with probability slip (the gridworld's slip)
    moves = np.array(list(nominal.values()))
    cells = np.c_[rows, cols]
    random_move = np.stack([np.clip(cells + m, 0, 4) - cells for m in moves]).mean(0)
    expected = (1 - slip) * (target - cells) + slip * random_move  # (S, 2) in (row, col)
    # the reward peaks at the centre: every greedy move points at it
    assert names[12] == "stay"
    assert {names[2], names[7]} == {"down"} and {names[17], names[22]} == {"up"}
    assert {names[10], names[11]} == {"right"} and {names[13], names[14]} == {"left"}

    # arrow = expected displacement (dx = column change, dy = row change on imshow's row
    # axis), one scale for all arrows: the longest move is one unit
    scale = np.abs(expected).max()
    np.testing.assert_allclose(u, expected[:, 1] / scale, atol=1e-12)
    np.testing.assert_allclose(v, expected[:, 0] / scale, atol=1e-12)

    # on screen: imshow puts row 0 at the top, so a move to the row above points up
    fig = ax.figure
    fig.canvas.draw()
    start = ax.transData.transform(np.c_[x, y])
    screen = ax.transData.transform(np.c_[x + u, y + v]) - start
    up, down = best == ACTION_NAMES.index("up"), best == ACTION_NAMES.index("down")
    assert up.any() and down.any()
    assert (screen[up, 1] > 0).all() and (screen[down, 1] < 0).all()
    # and every arrow points at the high-reward centre, as drawn (the arrow polygons that
    # matplotlib rendered, tail at the origin: tip = the vertex farthest from it, in
    # display units)
    to_centre = ax.transData.transform(np.array([[2.0, 2.0]])) - start
    paths = quiver.get_paths()
    assert len(paths) == mdp.num_states
    for s, path in enumerate(paths):
        if s == 12:
            continue
        verts = quiver.get_transform().transform(path.vertices)
        tip = verts[np.argmax(np.linalg.norm(verts, axis=1))]
        cosine = tip @ to_centre[s] / (np.linalg.norm(tip) * np.linalg.norm(to_centre[s]))
        assert cosine > 0.6, (s, names[s], tip, to_centre[s])
    plt.close(fig)
