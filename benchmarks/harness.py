"""The harness of benchmarks/run.py: machine and load records, fresh-process workers.

Every benchmark records the 1-minute load average (:func:`load`) and the machine
(:func:`machine_info`); a configuration whose peak memory is reported runs alone in a fresh
process (:func:`run_worker`, which runs ``benchmarks/run.py --worker NAME``); the fits run
on the seeded gridworld of :func:`make_world`.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RUN_SCRIPT = ROOT / "benchmarks" / "run.py"
"""The entry point whose ``--worker NAME`` runs ``worker_NAME`` in a fresh process."""


def load() -> float:
    """1-minute load average."""
    return os.getloadavg()[0]


def pearson(x, y) -> float:
    x = torch.as_tensor(x).detach().cpu().numpy().astype(float)
    y = torch.as_tensor(y).detach().cpu().numpy().astype(float)
    x, y = x - x.mean(), y - y.mean()
    den = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / den) if den > 0 else float("nan")


def machine_info() -> dict:
    cpu = platform.processor()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "loadavg_at_start": list(os.getloadavg()),
        "why_one_thread": "shared 2-core machine: 2 threads measured 10-200x slower under "
        "contention; CPU time is then a load-robust cost measure",
    }


def run_worker(name: str, args: dict, timeout: float = 900) -> dict:
    """Run ``worker_<name>(**args)`` in a fresh process; return its JSON (+ peak RSS)."""
    cmd = [sys.executable, str(RUN_SCRIPT), "--worker", name, "--args", json.dumps(args)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if out.returncode != 0:
        return {"error": out.stderr[-2000:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- shared helpers
def make_world(size: int, horizon: int | None = None, seed: int = 0):
    from bayes_irl import GridWorld

    return GridWorld.create(size=size, horizon=horizon, seed=seed)
