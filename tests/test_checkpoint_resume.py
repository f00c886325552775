"""Checkpoint and resume, each test held to the checkpoint it reads.

NUTS and HMC on the fast path (Laplace start, parallel chains of the pure kernels), NUTS
on the model-tracing path, Pyro's SVI loop and the command line (the NumPy SVI loop's is in
test_gaussian_vi.py). A run interrupted by SIGTERM (or between chains) saves its state; every
resume test checks three things:

* the resumed run did only the remaining work: spies count the warm-up steps and draws
  (NUTS) or the steps (SVI) it ran, and those of the uninterrupted run, so a resumed run
  that started over fails;
* it ends with exactly the draws, divergences and per-draw statistics (SVI: the losses) of
  an uninterrupted run with the same seed (bit-identical: ``torch.equal`` /
  ``assert_array_equal``, no tolerance);
* it continues what the file holds: resumed from a copy of the checkpoint with one thing
  changed (the chains' step sizes, the RNG state, a chain's saved draws) it keeps the saved
  part and gives other draws after it, which a run that ignored the file could not.
"""

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter

import arviz as az
import numpy as np
import pytest
import torch

from bayes_irl import GridWorld
from bayes_irl.app.cli import main
from bayes_irl.app.fit_checks import COMPLETE_MARKER
from bayes_irl.inference import ExactNormalizer, fit
from bayes_irl.inference.backends import adaptation, hmc_kernel, nuts_kernel
from bayes_irl.inference.checkpoint import FitInterrupted, MCMCCheckpoint, SVICheckpoint
from bayes_irl.models import DemonstrationModel
from tests.helpers import wait_for_file


@pytest.fixture(scope="module")
def tiny():
    world = GridWorld.create(size=3, horizon=4, seed=0)
    demos = world.sample_demonstrations(50, seed=0)
    return DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp)), demos


class _TransitionLog:
    """Spies on the samplers: the warm-up steps and draws actually run, summed over chains.

    The kernels take a warm-up step as ``step`` then ``adaptation.update`` and a draw as
    ``step`` alone. The spies append to a file: chains in worker processes (fork) inherit
    them, not this process's memory.
    """

    def __init__(self, monkeypatch, path) -> None:
        self.path = path
        steps = {kernel: kernel.step for kernel in (nuts_kernel, hmc_kernel)}
        update = adaptation.update

        def note(event: str) -> None:
            with open(path, "a") as file:
                file.write(event + "\n")

        def counting_step(kernel):
            def step(state, potential):
                note("kernel_step")
                return steps[kernel](state, potential)
            return step

        def counting_update(state, acceptance_rate):
            note("kernel_adapt")
            return update(state, acceptance_rate)

        for kernel in steps:
            monkeypatch.setattr(kernel, "step", counting_step(kernel))
        monkeypatch.setattr(adaptation, "update", counting_update)

    def take(self) -> dict:
        """The counts since the last call: ``{"warmup": steps, "draws": draws}``."""
        events = Counter(self.path.read_text().split()) if self.path.exists() else Counter()
        self.path.unlink(missing_ok=True)
        return {"warmup": events["kernel_adapt"],
                "draws": events["kernel_step"] - events["kernel_adapt"]}


def _saved_draws(path) -> int:
    """Draws per chain in a fast-path MCMC checkpoint (read from the file itself)."""
    progress = torch.load(path, weights_only=False)["progress"]
    return sum(progress["blocks"]) - progress["pending"]


def _halve_step_sizes(path, out) -> None:
    """Copy a fast-path MCMC checkpoint with every chain's adapted step size halved."""
    payload = torch.load(path, weights_only=False)
    payload["states"] = [state._replace(step_size=0.5 * state.step_size)
                         for state in payload["states"]]
    torch.save(payload, out)


class _SigtermAfter(MCMCCheckpoint):
    """Sends this process a real SIGTERM right after its ``kill_after``-th save."""

    def __init__(self, path, *, kill_after: int, **options) -> None:
        super().__init__(path, **options)
        self.saves, self.kill_after = 0, kill_after

    def save(self, states, progress) -> None:
        super().save(states, progress)
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
    """An uninterrupted run, a SIGTERM'd run, its resumption, and the resumption of a copy
    of its checkpoint with halved step sizes; the transitions counted in the first two
    runs that finish, and the draws per chain the checkpoint held."""
    options = dict(warmup_steps=20, progress_bar=False, seed=3, check=False, **options)
    options.setdefault("method", "nuts")
    log = _TransitionLog(monkeypatch, tmp_path / "transitions.log")
    uninterrupted = fit(model, demos, checkpoint=MCMCCheckpoint(tmp_path / "a.pt", every=10),
                        **options)
    counts = {"uninterrupted": log.take()}
    path, tampered = tmp_path / "b.pt", tmp_path / "c.pt"
    with pytest.raises(FitInterrupted, match="SIGTERM"):
        fit(model, demos, checkpoint=_SigtermAfter(path, kill_after=kill_after, every=10),
            **options)
    saved = _saved_draws(path)
    _halve_step_sizes(path, tampered)
    log.take()
    resumed = fit(model, demos, checkpoint=MCMCCheckpoint(path, every=10, resume=True),
                  **options)
    counts["resumed"] = log.take()
    other = fit(model, demos, checkpoint=MCMCCheckpoint(tampered, every=10, resume=True),
                **options)
    return uninterrupted, resumed, other, counts, saved


def _assert_resumed_from(saved, uninterrupted, resumed, other, counts, *, warmup_steps):
    """The resumed run ran no warm-up and only the draws after the ``saved`` ones, equals
    the uninterrupted run, and the run resumed with halved step sizes keeps the saved
    draws and differs after them."""
    chains, total = uninterrupted.samples["weights"].shape[:2]
    # the spies see every transition of the uninterrupted run ...
    assert counts["uninterrupted"] == {"warmup": chains * warmup_steps, "draws": chains * total}
    # ... and of the resumed one: the saved adaptation is used, the saved draws are kept
    assert counts["resumed"] == {"warmup": 0, "draws": chains * (total - saved)}
    assert resumed.attrs["resumed_draws"] == saved
    _assert_same_run(resumed, uninterrupted)
    # the chains continue the sampler state in the file: other step sizes, other draws
    mine, theirs = other.samples["weights"], uninterrupted.samples["weights"]
    assert torch.equal(mine[:, :saved], theirs[:, :saved])
    assert not torch.equal(mine[:, saved:], theirs[:, saved:])


@pytest.mark.parametrize("method, adapt_mass_matrix", [("nuts", False), ("nuts", True),
                                                       ("hmc", False)])
def test_sigterm_mid_sampling_then_resume_is_bit_identical(tiny, tmp_path, monkeypatch,
                                                           method, adapt_mass_matrix):
    model, demos = tiny
    # saves: 1 after the warm-up, 2 after 10 draws per chain -> SIGTERM with 10 of 20 done.
    # The kernels of the fast path: NUTS (the default), with the warm-up that adapts the
    # mass matrix too, and HMC.
    uninterrupted, resumed, other, counts, saved = _interrupt_and_resume(
        model, demos, tmp_path, monkeypatch, kill_after=2, num_samples=20, parallel=False,
        method=method, adapt_mass_matrix=adapt_mass_matrix)
    assert resumed.attrs["sampler"] == uninterrupted.attrs["sampler"]
    if not adapt_mass_matrix:
        assert resumed.attrs["sampler"] == f"numpy_{method}"
    assert saved == 10
    assert resumed.samples["weights"].shape == (2, 20, 4)  # the final draw count
    _assert_resumed_from(saved, uninterrupted, resumed, other, counts, warmup_steps=20)


def test_other_settings_start_afresh(tiny, tmp_path, monkeypatch):
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
    log = _TransitionLog(monkeypatch, tmp_path / "transitions.log")
    with pytest.warns(UserWarning, match=r"other settings \(seed\); starting afresh"):
        other = fit(model, demos, seed=2, checkpoint=MCMCCheckpoint(path, resume=True),
                    **options)
    assert "resumed_draws" not in other.attrs
    assert log.take() == {"warmup": 2 * 10, "draws": 2 * 10}  # all of it, from the start


@pytest.mark.slow  # ESS-sized draws in worker processes: four runs of 100-200 draws x 2 chains
def test_parallel_sized_run_resumes_bit_identically(tiny, tmp_path, monkeypatch):
    model, demos = tiny
    # kill after 4 saves: warm-up + 30 draws per chain, inside the first ESS-sized block;
    # the spies count the transitions of the worker processes too
    uninterrupted, resumed, other, counts, saved = _interrupt_and_resume(
        model, demos, tmp_path, monkeypatch, kill_after=4, num_samples=None, target_ess=100,
        max_samples=200, parallel=True)
    assert uninterrupted.attrs["parallel_chains"] == 1
    assert saved == 30
    _assert_resumed_from(saved, uninterrupted, resumed, other, counts, warmup_steps=20)


@pytest.mark.slow  # four CLI NUTS fits, one in a fresh interpreter killed from outside
def test_cli_nuts_sigterm_then_resume_is_bit_identical(tmp_path, monkeypatch):
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
    saved = _saved_draws(killed / "mcmc_checkpoint.pt")  # where the SIGTERM stopped it
    tampered = tmp_path / "tampered"  # the same folder, the chains' step sizes halved
    shutil.copytree(killed, tampered)
    _halve_step_sizes(tampered / "mcmc_checkpoint.pt", tampered / "mcmc_checkpoint.pt")
    log = _TransitionLog(monkeypatch, tmp_path / "transitions.log")
    assert main([*fit_args, "--out", str(killed), "--resume"]) == 0
    resumed_counts = log.take()
    clean = tmp_path / "clean"
    assert main([*fit_args, "--out", str(clean)]) == 0
    clean_counts = log.take()
    assert main([*fit_args, "--out", str(tampered), "--resume"]) == 0
    resumed = az.from_netcdf(str(killed / "posterior.nc"))
    uninterrupted = az.from_netcdf(str(clean / "posterior.nc"))
    other = az.from_netcdf(str(tampered / "posterior.nc"))
    chains = uninterrupted.posterior.sizes["chain"]
    assert clean_counts == {"warmup": chains * 30, "draws": chains * 100}
    # the resumed run: no warm-up, only the draws after the saved ones
    assert resumed_counts == {"warmup": 0, "draws": chains * (100 - saved)}
    assert resumed.posterior.attrs["resumed_draws"] == saved
    np.testing.assert_array_equal(resumed.posterior["weights"].values,
                                  uninterrupted.posterior["weights"].values)
    for name in ("diverging", "tree_depth", "n_steps", "energy"):
        np.testing.assert_array_equal(resumed.sample_stats[name].values,
                                      uninterrupted.sample_stats[name].values)
    # from the checkpoint with halved step sizes: the saved draws, then other ones
    mine, theirs = other.posterior["weights"].values, uninterrupted.posterior["weights"].values
    np.testing.assert_array_equal(mine[:, :saved], theirs[:, :saved])
    assert not np.array_equal(mine[:, saved:], theirs[:, saved:])


# ------------------------------------------------------------ the uniform start
def test_uniform_start_runs_the_same_kernels_and_resumes_bit_identically(tiny, tmp_path,
                                                                          monkeypatch):
    """``init="uniform"``: the library's NUTS from z ~ U(-2, 2) (identity mass matrix,
    adapted in the warm-up), through the same driver and checkpoint as the default."""
    model, demos = tiny
    uninterrupted, resumed, other, counts, saved = _interrupt_and_resume(
        model, demos, tmp_path, monkeypatch, kill_after=2, num_samples=20, parallel=False,
        init="uniform")
    assert uninterrupted.attrs["init"] == "uniform"
    assert uninterrupted.attrs["sampler"] == "numpy_nuts"
    assert saved == 10
    _assert_resumed_from(saved, uninterrupted, resumed, other, counts, warmup_steps=20)


# ------------------------------------------------------------ Pyro's SVI loop
class _SVISteps(SVICheckpoint):
    """Records the steps Pyro's SVI loop runs; a real SIGTERM after step ``after``."""

    def __init__(self, path, *, after: int | None = None, **options) -> None:
        super().__init__(path, **options)
        self.after, self.steps_run = after, []

    def step_done(self, done, total, snapshot) -> None:
        self.steps_run.append(done - 1)
        if done == self.after:
            os.kill(os.getpid(), signal.SIGTERM)
        super().step_done(done, total, snapshot)


def test_pyro_svi_sigterm_then_resume_is_bit_identical(tiny, tmp_path):
    model, demos = tiny
    # check=False: 100 steps is short on purpose (the guards are tested elsewhere)
    options = dict(method="svi", svi_backend="pyro", num_steps=100, num_samples=20, seed=1,
                   progress_bar=False, check=False)
    counted = _SVISteps(tmp_path / "a.pt", every=25)
    uninterrupted = fit(model, demos, checkpoint=counted, **options)
    assert counted.steps_run == list(range(100))
    path, tampered = tmp_path / "b.pt", tmp_path / "c.pt"
    with pytest.raises(FitInterrupted, match="SIGTERM after 60 steps"):
        fit(model, demos, checkpoint=_SVISteps(path, after=60, every=25), **options)
    payload = torch.load(path, weights_only=False)  # a copy with another torch RNG state
    payload["states"]["rng"]["torch"] = torch.Generator().manual_seed(12345).get_state()
    torch.save(payload, tampered)
    counted = _SVISteps(path, resume=True)
    resumed = fit(model, demos, checkpoint=counted, **options)
    assert counted.steps_run == list(range(60, 100))  # only the remaining steps
    assert counted.resumed_from == 60
    assert torch.equal(resumed.samples["weights"], uninterrupted.samples["weights"])
    np.testing.assert_array_equal(resumed.extra["losses"], uninterrupted.extra["losses"])
    # the loop continues the file's state: another RNG state, other losses from step 60 on
    other = fit(model, demos, checkpoint=SVICheckpoint(tampered, resume=True), **options)
    mine, theirs = other.extra["losses"], uninterrupted.extra["losses"]
    np.testing.assert_array_equal(mine[:60], theirs[:60])
    assert not np.array_equal(mine[60:], theirs[60:])
    assert not torch.equal(other.samples["weights"], uninterrupted.samples["weights"])


def test_svi_resume_with_a_callback_says_what_to_do(tiny, tmp_path):
    """A callback's state (guide-policy training) is not checkpointed: a clear refusal."""
    from bayes_irl.inference.backends.svi import run_svi

    model, demos = tiny
    data = model.prepare_data(demos)
    path = tmp_path / "svi.pt"
    options = dict(num_steps=10, num_samples=5, init="prior", progress_bar=False)
    run_svi(model, data, checkpoint=SVICheckpoint(path, every=5), **options)
    assert path.exists()  # saved after step 5 of 10
    with pytest.raises(ValueError, match="start afresh.*or fit without the callback"):
        run_svi(model, data, checkpoint=SVICheckpoint(path, resume=True),
                callback=lambda step, loss, guide: None, **options)
