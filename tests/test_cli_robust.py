"""bayes-irl fit: arguments and the output folder are checked before fitting, every expected
failure is one line with exit code 2, the verdict is printed, and a killed SVI fit resumes
bit-identically."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import arviz as az
import numpy as np
import pytest
import torch

from bayes_irl.app.cli import OUTPUT_FILES, REWARD_MAP_FILE, main
from bayes_irl.app.fit_checks import COMPLETE_MARKER
from bayes_irl.inference.checkpoint import Checkpoint
from tests.helpers import wait_for_file

SMALL = ["--grid-size", "3", "--horizon", "4", "--num-demos", "30", "--no-progress"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--num-samples", "0"], "--num-samples must be an integer >= 1; got 0"),
        (["--num-samples", "-3"], "--num-samples must be an integer >= 1; got -3"),
        (["--threads", "0"], "--threads must be an integer >= 1; got 0"),
        (["--num-demos", "0"], "--num-demos must be an integer >= 1; got 0"),
        (["--chains", "0"], "--chains must be an integer >= 1; got 0"),
        (["--warmup", "-1"], "--warmup must be an integer >= 0"),
        (["--num-steps", "0"], "--num-steps must be an integer >= 1"),
        (["--method", "magic"], "--method must be one of svi, laplace, nuts, hmc, importance"),
        (["--mdp", "m.npz"], "--mdp needs --demos or --preferences"),
        (["--demos", "d.npz"], "--demos needs --mdp"),
        (["--resume", "--method", "laplace"], "--resume works with --method svi, nuts or hmc"),
    ],
)
def test_bad_arguments_are_one_line_errors_before_fitting(tmp_path, capsys, extra, message):
    start = time.perf_counter()
    assert main(["fit", *SMALL, "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert time.perf_counter() - start < 5  # rejected before any fit


def test_output_folder_checked_before_fitting(tmp_path, capsys):
    file = tmp_path / "a_file"
    file.write_text("precious")
    assert main(["fit", *SMALL, "--out", str(file)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["fit", *SMALL, "--out", str(file / "sub")]) == 2
    assert "is not writable" in capsys.readouterr().err
    assert file.read_text() == "precious"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert main(["fit", *SMALL, "--out", str(folder)]) == 2
        assert "is not writable" in capsys.readouterr().err
    finally:
        folder.chmod(0o700)


def test_verdict_strict_marker_and_importance(tmp_path, capsys):
    out = tmp_path / "svi"
    args = ["fit", *SMALL, "--method", "svi", "--num-steps", "30", "--num-samples", "20"]
    assert main([*args, "--out", str(out)]) == 0  # not converged, but not asked to fail
    printed = capsys.readouterr().out
    assert "convergence: NOT CONVERGED (svi)" in printed
    assert "svi draws are independent" in printed
    marker = json.loads((out / COMPLETE_MARKER).read_text())
    assert marker["files"] == [*OUTPUT_FILES, REWARD_MAP_FILE]  # the gridworld has a layout
    assert "NOT CONVERGED" in marker["convergence"]
    assert not (out / "svi_checkpoint.pt").exists()  # superseded by the outputs
    assert main([*args, "--out", str(tmp_path / "strict"), "--strict"]) == 3
    assert "--strict" in capsys.readouterr().err
    assert (tmp_path / "strict" / COMPLETE_MARKER).exists()  # nothing lost even so
    code = main(["fit", *SMALL, "--method", "importance", "--num-samples", "50",
                 "--out", str(tmp_path / "imp")])
    assert code == 0
    assert "convergence:" in capsys.readouterr().out
    idata = az.from_netcdf(str(tmp_path / "imp" / "posterior.nc"))
    assert "convergence_khat" in idata.posterior.attrs


@pytest.mark.slow  # four CLI fits, one in a fresh interpreter (~1-2 min on 2 loaded cores)
def test_sigterm_then_resume_is_bit_identical(tmp_path, monkeypatch):
    # Pyro's SVI loop: the NumPy one stops at stationarity within a second here, before a
    # signal could reach it (its resume is tested in test_gaussian_vi)
    fit_args = ["fit", *SMALL, "--method", "svi", "--num-steps", "1500", "--num-samples",
                "200", "--checkpoint-every", "50", "--seed", "3", "--svi-backend", "pyro"]
    killed = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "bayes_irl.app.cli", *fit_args, "--out", str(killed)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wait_for_file(killed / "svi_checkpoint.pt", process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "checkpoint saved to" in err and "--resume" in err
    assert not (killed / COMPLETE_MARKER).exists()  # recognisably unfinished
    assert not (killed / "posterior.nc").exists()
    payload = torch.load(killed / "svi_checkpoint.pt", weights_only=False)
    saved = payload["progress"]["step"]  # where the SIGTERM stopped it
    tampered = tmp_path / "tampered"  # the same folder, another torch RNG state in the file
    shutil.copytree(killed, tampered)
    payload["states"]["rng"]["torch"] = torch.Generator().manual_seed(12345).get_state()
    torch.save(payload, tampered / "svi_checkpoint.pt")
    steps_run = []  # the steps each in-process run takes (the loop reports every one)
    step_done = Checkpoint.step_done

    def counting_step_done(self, done, total, snapshot):
        steps_run.append(done - 1)  # the 0-based step just done
        return step_done(self, done, total, snapshot)

    monkeypatch.setattr(Checkpoint, "step_done", counting_step_done)
    assert main([*fit_args, "--out", str(killed), "--resume"]) == 0
    resumed_steps, steps_run[:] = list(steps_run), []
    clean = tmp_path / "clean"
    assert main([*fit_args, "--out", str(clean)]) == 0
    clean_steps, steps_run[:] = list(steps_run), []
    assert main([*fit_args, "--out", str(tampered), "--resume"]) == 0
    resumed = az.from_netcdf(str(killed / "posterior.nc"))
    uninterrupted = az.from_netcdf(str(clean / "posterior.nc"))
    other = az.from_netcdf(str(tampered / "posterior.nc"))
    total = len(clean_steps)
    assert 0 < saved < total and clean_steps == list(range(total))
    assert resumed_steps == list(range(saved, total))  # only the remaining steps
    np.testing.assert_array_equal(resumed.posterior["weights"].values,
                                  uninterrupted.posterior["weights"].values)
    np.testing.assert_array_equal(resumed.sample_stats["loss"].values,
                                  uninterrupted.sample_stats["loss"].values)
    # from the file with another RNG state: the saved losses, then other ones
    mine = np.ravel(other.sample_stats["loss"].values)
    theirs = np.ravel(uninterrupted.sample_stats["loss"].values)
    np.testing.assert_array_equal(mine[:saved], theirs[:saved])
    assert not np.array_equal(mine[saved:], theirs[saved:])
    assert not np.array_equal(other.posterior["weights"].values,
                              uninterrupted.posterior["weights"].values)
