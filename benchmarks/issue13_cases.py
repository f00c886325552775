"""Issue 13: replay the fast bad-input cases and print each one's outcome as a table row.

Run: ``nice python benchmarks/issue13_cases.py``. A case is "clean" when it raises a
ValueError (or the CLI exits 2 with a one-line message) naming the file/option, or when it
warns as documented; "SILENT" when it passes without a word; "CRASH" for any other
exception.
"""

import contextlib
import io
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from bayes_irl import GridWorld, TabularMDP
from bayes_irl.app.cli import main
from bayes_irl.identifiability import IdentifiabilityWarning
from bayes_irl.io import load_mdp, save_mdp

torch.set_num_threads(1)
folder = Path(tempfile.mkdtemp())
world = GridWorld.create(size=3, horizon=4, seed=0)
good = save_mdp(folder / "mdp.npz", world.mdp)
raw = good.read_bytes()
rows = []


def file_case(name, data=None, arrays=None):
    path = folder / f"{len(rows)}.npz"
    if data is not None:
        path.write_bytes(data)
    else:
        np.savez(path, **arrays)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            load_mdp(path)
        named = [w for w in caught if issubclass(w.category, IdentifiabilityWarning)]
        outcome = ("warns: " + str(named[0].message).split(": ", 1)[1][:90]) if named else "SILENT"
    except ValueError as err:
        outcome = "ValueError: " + str(err).replace(str(path), "<file>")[:110]
    except Exception as err:  # noqa: BLE001
        outcome = f"CRASH {type(err).__name__}: {err}"[:120]
    rows.append((name, outcome))


def edited(**changes):
    arrays = dict(np.load(good))
    arrays.update(changes)
    return arrays


crc = bytearray(raw)
crc[len(crc) // 3] ^= 0xFF
np.save(folder / "x.npy", np.zeros(3))
file_case("truncated .npz", raw[: len(raw) // 2])
file_case("bad CRC", bytes(crc))
file_case("empty file", b"")
file_case(".npy named .npz", (folder / "x.npy").read_bytes())
file_case("random bytes", os.urandom(500))
file_case("pickled object array", arrays=edited(initial=np.array([{}], dtype=object)))
for label, value in [("six", np.array("six")), ("NaN", np.array(np.nan)),
                     ("empty", np.array([], dtype=np.int64)), ("6.7", np.array(6.7)),
                     ("[6, 9]", np.array([6, 9]))]:
    file_case(f"horizon {label}", arrays=edited(horizon=value))
succ = np.load(good)["successors"].astype(float)
succ[0, 0, 0] = 2.6
file_case("sparse successor 2.6", arrays=edited(successors=succ))
feats = np.load(good)["features"]
names = np.array([f"f{i}" for i in range(5)])
file_case("constant feature column", arrays=edited(features=np.c_[feats, np.ones(len(feats))],
                                                   feature_names=names))
file_case("duplicated feature column", arrays=edited(features=np.c_[feats, feats[:, 0]],
                                                     feature_names=names))

mdp = world.mdp
for label, horizon, scale in [("float32, H = 500", 500, 1.0), ("float32, features x 1e4", 4, 1e4)]:
    try:
        TabularMDP.from_sparse(successors=mdp.successors,
                               successor_probs=mdp.successor_log_probs.exp(),
                               initial=mdp.initial, features=mdp.features * scale,
                               horizon=horizon, dtype=torch.float32)
        rows.append((label, "SILENT"))
    except ValueError as err:
        rows.append((label, "ValueError: " + str(err)[:110]))

small = ["--grid-size", "3", "--horizon", "4", "--num-demos", "30", "--no-progress"]
(folder / "a_file").write_text("x")
for label, extra in [
    ("--num-samples 0", ["--num-samples", "0"]), ("--num-samples -3", ["--num-samples", "-3"]),
    ("--threads 0", ["--threads", "0"]), ("--num-demos 0", ["--num-demos", "0"]),
    ("--chains 0", ["--chains", "0"]),
    ("--out an existing file", ["--out", str(folder / "a_file")]),
    ("--out under a file", ["--out", str(folder / "a_file" / "x")]),
    ("--method magic", ["--method", "magic"]),
]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        args = ["fit", *small, *extra]
        if "--out" not in extra:
            args += ["--out", str(folder / "o")]
        code = main(args)
    rows.append((f"CLI {label}", f"exit {code}: {err.getvalue().strip()[:110]}"))

print("| case | outcome |\n|---|---|")
for name, outcome in rows:
    print(f"| {name} | {outcome.replace('|', '/')} |")
clean = sum(not o.startswith(("SILENT", "CRASH")) for _, o in rows)
print(f"\n{len(rows)} cases tried, {clean} rejected or warned cleanly, "
      f"{len(rows) - clean} silent or crashing")
