"""Checkpoint and resume: NUTS on the fast path (Laplace start, parallel chains); SVI callbacks.

A run interrupted by SIGTERM saves every chain's adapted sampler, RNG state and draws so
far; the resumed run reuses the saved draws, runs no new warm-up, and ends with exactly
the draws, divergences and per-draw statistics of an uninterrupted run with the same seed
(bit-identical: ``torch.equal`` / ``assert_array_equal``, no tolerance).
"""

import os
import signal
import subprocess
import sys

import arviz as az
import numpy as np
import pytest
import torch

from bayes_irl import GridWorld
from bayes_irl.app.cli import main
from bayes_irl.app.fit_checks import COMPLETE_MARKER
from bayes_irl.inference import ExactNormalizer, fit
from bayes_irl.inference.backends.lean_nuts import LeanNUTS
from bayes_irl.inference.checkpoint import FitInterrupted, MCMCCheckpoint
from bayes_irl.inference.sampler_stats import SamplerStatsRecorder
from bayes_irl.models import DemonstrationModel
from tests.helpers import wait_for_file


@pytest.fixture(scope="module")
def tiny():
    world = GridWorld.create(size=3, horizon=4, seed=0)
    demos = world.sample_demonstrations(50, seed=0)
    return DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp)), demos


class _SigtermAfter(MCMCCheckpoint):
    """Sends this process a real SIGTERM right after its ``kill_after``-th save."""

    def __init__(self, path, *, kill_after: int, **options) -> None:
        super().__init__(path, **options)
        self.saves, self.kill_after = 0, kill_after

    def save_run(self, key, state) -> None:
        super().save_run(key, state)
        self.saves += 1
        if self.saves == self.kill_after:
            os.kill(os.getpid(), signal.SIGTERM)


def _assert_same_run(resumed, uninterrupted):
    assert torch.equal(resumed.samples["weights"], uninterrupted.samples["weights"])
    assert set(resumed.sample_stats) == set(uninterrupted.sample_stats)
    for name, values in uninterrupted.sample_stats.items():
        np.testing.assert_array_equal(resumed.sample_stats[name], values, err_msg=name)
    assert resumed.attrs["acceptance_rate"] == uninterrupted.attrs["acceptance_rate"]
    assert resumed.attrs["draw_blocks"] == uninterrupted.attrs["draw_blocks"]


def _interrupt_and_resume(model, demos, tmp_path, monkeypatch, *, kill_after, **options):
    """Uninterrupted run, a SIGTERM'd run and its resumption; warm-up steps of the latter."""
    options = dict(method="nuts", warmup_steps=20, progress_bar=False, seed=3, check=False,
                   **options)
    uninterrupted = fit(model, demos, checkpoint=MCMCCheckpoint(tmp_path / "a.pt", every=10),
                        **options)
    path = tmp_path / "b.pt"
    with pytest.raises(FitInterrupted, match="SIGTERM"):
        fit(model, demos, checkpoint=_SigtermAfter(path, kill_after=kill_after, every=10),
            **options)
    warmup_steps = []
    hook = SamplerStatsRecorder.hook

    def counting_hook(self, kernel, samples, stage, i):
        if stage == "Warmup":
            warmup_steps.append(i)
        return hook(self, kernel, samples, stage, i)

    adapt = LeanNUTS.adapt

    def counting_adapt(self, accept):  # the NumPy sampler's warm-up step
        warmup_steps.append(len(warmup_steps))
        return adapt(self, accept)

    monkeypatch.setattr(SamplerStatsRecorder, "hook", counting_hook)
    monkeypatch.setattr(LeanNUTS, "adapt", counting_adapt)
    resumed = fit(model, demos, checkpoint=MCMCCheckpoint(path, every=10, resume=True),
                  **options)
    return uninterrupted, resumed, warmup_steps


@pytest.mark.parametrize("adapt_mass_matrix, sampler", [(False, "numpy_nuts"), (True, "pyro")])
def test_sigterm_mid_sampling_then_resume_is_bit_identical(tiny, tmp_path, monkeypatch,
                                                           adapt_mass_matrix, sampler):
    model, demos = tiny
    # saves: 1 after the warm-up, 2 after 10 draws per chain -> SIGTERM with 10 of 20 done.
    # Chains in this process, so the spy sees every warm-up step of the resumed run. Both
    # samplers of the fast path: the NumPy NUTS (fixed mass matrix, the default) and
    # Pyro's kernel (mass-matrix adaptation).
    uninterrupted, resumed, warmup_steps = _interrupt_and_resume(
        model, demos, tmp_path, monkeypatch, kill_after=2, num_samples=20, parallel=False,
        adapt_mass_matrix=adapt_mass_matrix)
    assert uninterrupted.attrs["sampler"] == resumed.attrs["sampler"] == sampler
    assert warmup_steps == []  # the saved adaptation is used: no new warm-up
    assert resumed.attrs["resumed_draws"] == 10
    assert resumed.samples["weights"].shape == (2, 20, 4)  # the final draw count
    _assert_same_run(resumed, uninterrupted)


def test_other_settings_start_afresh(tiny, tmp_path):
    """A checkpoint written with another seed is not continued (the run starts over)."""
    model, demos = tiny
    options = dict(method="nuts", num_samples=10, warmup_steps=10, progress_bar=False,
                   check=False, parallel=False)
    path = tmp_path / "c.pt"
    first = fit(model, demos, seed=1, checkpoint=MCMCCheckpoint(path, every=5), **options)
    assert "resumed_draws" not in first.attrs
    with pytest.raises(FitInterrupted):  # leaves a checkpoint of seed 1 mid-run
        fit(model, demos, seed=1, checkpoint=_SigtermAfter(path, kill_after=2, every=5),
            **options)
    with pytest.warns(UserWarning, match=r"other settings \(seed\); starting afresh"):
        other = fit(model, demos, seed=2, checkpoint=MCMCCheckpoint(path, resume=True),
                    **options)
    assert "resumed_draws" not in other.attrs


@pytest.mark.slow  # ESS-sized draws in worker processes: three runs of 100-200 draws x 2 chains
def test_parallel_sized_run_resumes_bit_identically(tiny, tmp_path, monkeypatch):
    model, demos = tiny
    # kill after 4 saves: warm-up + 30 draws per chain, inside the first ESS-sized block
    uninterrupted, resumed, _ = _interrupt_and_resume(
        model, demos, tmp_path, monkeypatch, kill_after=4, num_samples=None, target_ess=100,
        max_samples=200, parallel=True)
    assert uninterrupted.attrs["parallel_chains"] == 1
    assert resumed.attrs["resumed_draws"] == 30
    _assert_same_run(resumed, uninterrupted)


@pytest.mark.slow  # three CLI NUTS fits, one in a fresh interpreter killed from outside
def test_cli_nuts_sigterm_then_resume_is_bit_identical(tmp_path):
    fit_args = ["fit", "--grid-size", "3", "--horizon", "4", "--num-demos", "30",
                "--no-progress", "--method", "nuts", "--num-samples", "100", "--warmup", "30",
                "--checkpoint-every", "10", "--seed", "3"]
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "bayes_irl.app.cli", *fit_args, "--out", str(killed)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wait_for_file(killed / "mcmc_checkpoint.pt", process)  # written after the warm-up
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "checkpoint saved to" in err and "--resume" in err
    assert not (killed / COMPLETE_MARKER).exists()
    assert main([*fit_args, "--out", str(killed), "--resume"]) == 0
    clean = tmp_path / "clean"
    assert main([*fit_args, "--out", str(clean)]) == 0
    resumed = az.from_netcdf(str(killed / "posterior.nc"))
    uninterrupted = az.from_netcdf(str(clean / "posterior.nc"))
    assert resumed.posterior.attrs["resumed_draws"] < 100  # it did continue a saved run
    np.testing.assert_array_equal(resumed.posterior["weights"].values,
                                  uninterrupted.posterior["weights"].values)
    for name in ("diverging", "tree_depth", "n_steps", "energy"):
        np.testing.assert_array_equal(resumed.sample_stats[name].values,
                                      uninterrupted.sample_stats[name].values)


def test_svi_resume_with_a_callback_says_what_to_do(tiny, tmp_path):
    """A callback's state (guide-policy training) is not checkpointed: a clear refusal."""
    from bayes_irl.inference.backends.svi import run_svi
    from bayes_irl.inference.checkpoint import SVICheckpoint

    model, demos = tiny
    data = model.prepare_data(demos)
    path = tmp_path / "svi.pt"
    options = dict(num_steps=10, num_samples=5, init="prior", progress_bar=False)
    run_svi(model, data, checkpoint=SVICheckpoint(path, every=5), **options)
    assert path.exists()  # saved after step 5 of 10
    with pytest.raises(ValueError, match="start afresh.*or fit without the callback"):
        run_svi(model, data, checkpoint=SVICheckpoint(path, resume=True),
                callback=lambda step, loss, guide: None, **options)
