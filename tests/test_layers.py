"""The layers import one way and each layer imports on its own.

``lint-imports`` (run by ``.ci/run``) checks the contracts statically, for every module;
this test checks the behaviour they protect: every core module, ``bayes_irl.models``,
``bayes_irl.inference`` and the CLI, each imported first in a fresh interpreter, load
without relying on another module having been imported before them (the import-order bug
an import cycle hides), and importing a lower layer never loads a higher one.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {
    "bayes_irl": ROOT / "bayes_irl",
    "bayes_irl.models": ROOT / "models",
    "bayes_irl.inference": ROOT / "inference",
}
UPPER = {
    "core": ("bayes_irl.models", "bayes_irl.inference", "bayes_irl.app"),
    "bayes_irl.models": ("bayes_irl.inference", "bayes_irl.app"),
    "bayes_irl.inference": ("bayes_irl.app",),
    "bayes_irl.app": (),
}


def _modules() -> list[tuple[str, str]]:
    """(module name, its layer): every core module, the two upper packages and the CLI."""
    found = [
        ("bayes_irl.models", "bayes_irl.models"),
        ("bayes_irl.inference", "bayes_irl.inference"),
    ]
    for package, folder in LAYERS.items():
        if package != "bayes_irl":
            continue
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([package, *parts])
            if parts[:1] == ["app"]:
                if parts == ["app", "cli"]:
                    found.append((name, "bayes_irl.app"))
                continue
            found.append((name, "core"))
    return found


MODULES = _modules()

PROBE = """
import importlib, sys
importlib.import_module({name!r})
loaded = [m for m in {upper!r} if m in sys.modules]
print("UPPER:" + ",".join(loaded))
"""


def _import_alone(name: str, layer: str) -> subprocess.CompletedProcess:
    code = PROBE.format(name=name, upper=UPPER[layer])
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )


def test_every_layer_and_module_is_listed():
    names = {name for name, _ in MODULES}
    for required in ("bayes_irl", "bayes_irl.models", "bayes_irl.inference", "bayes_irl.app.cli"):
        assert required in names
    # the three layers below the application each have modules of their own
    assert {layer for _, layer in MODULES} == set(UPPER)


def test_each_module_imports_alone_in_a_fresh_interpreter():
    # one fresh interpreter per module (two at a time: importing torch and pyro dominates)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda item: (item, _import_alone(*item)), MODULES))
    failures = [
        f"{name}: exit {proc.returncode}\n{proc.stderr[-2000:]}"
        for (name, _), proc in results
        if proc.returncode != 0
    ]
    assert not failures, "\n\n".join(failures)
    upward = [
        f"{name} ({layer}) loaded {proc.stdout.split('UPPER:')[-1].strip()}"
        for (name, layer), proc in results
        if proc.stdout.split("UPPER:")[-1].strip()
    ]
    assert not upward, "importing a lower layer loaded a higher one:\n" + "\n".join(upward)
