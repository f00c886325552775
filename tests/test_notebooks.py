"""Every notebook runs end to end on small settings (SMOKE_TEST=1), like Pyro's examples."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"

# Every notebook must be listed here; a notebook that is not listed fails the suite.
NOTEBOOKS = [
    "01_quickstart.ipynb",
    "02_guide_policy.ipynb",
    "03_preferences_rlhf.ipynb",
    "04_swap_inference.ipynb",
    "05_your_own_problem.ipynb",
    "06_calibration.ipynb",
    "07_acting_under_uncertainty.ipynb",
    "08_human_preferences.ipynb",
]


def test_every_notebook_is_listed():
    present = sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb"))
    unlisted = sorted(set(present) - set(NOTEBOOKS))
    assert not unlisted, f"add these notebooks to NOTEBOOKS in {__file__}: {unlisted}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes(name, tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    path = NOTEBOOK_DIR / name
    if not path.exists():
        pytest.fail(f"{name} is listed but missing from notebooks/")
    monkeypatch.setenv("SMOKE_TEST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONWARNINGS", "ignore::DeprecationWarning")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    errors = [
        o
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
    assert os.environ.get("SMOKE_TEST") == "1"
