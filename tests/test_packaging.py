"""models/ and inference/ import as bayes_irl.models / bayes_irl.inference from a wheel too."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import bayes_irl.inference
import bayes_irl.models

ROOT = Path(__file__).resolve().parents[1]


def test_editable_install_maps_subpackages():
    assert Path(bayes_irl.models.__file__).resolve().parent == ROOT / "models"
    assert Path(bayes_irl.inference.__file__).resolve().parent == ROOT / "inference"


def test_wheel_contains_and_imports_namespace(tmp_path):
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
    )
    if build.returncode != 0:
        pytest.fail(f"wheel build failed:\n{build.stderr[-2000:]}")
    (wheel,) = (tmp_path / "dist").glob("bayes_irl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "bayes_irl/models/maxent.py" in names
    assert "bayes_irl/inference/normalizers/exact.py" in names
    assert "bayes_irl/rewards/base.py" in names
    assert "bayes_irl/py.typed" in names
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = (
        "import bayes_irl.models, bayes_irl.inference, bayes_irl;"
        "print(bayes_irl.models.__file__); print(bayes_irl.inference.fit.__module__)"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0].startswith(str(target))
