"""Replay the fast bad-input cases and print each one's outcome as a table row.

Run: ``nice python benchmarks/guard_cases.py`` (results: ``benchmarks/guard_results.md``).
A case is "clean" when it raises a ValueError (or the CLI exits 2 with a one-line message)
naming the file/option, or when it warns as documented; "SILENT" when it passes without a
word; "CRASH" for any other exception.
"""

import contextlib
import io
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
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



def cli(args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


# Formerly a TypeError (num_steps) after the listing called it valid.
code, out, err = cli(["fit", *small, "--method", "importance", "--num-samples", "50",
                      "--out", str(folder / "imp")])
verdict = [line for line in out.splitlines() if line.startswith("convergence:")]
rows.append(("CLI --method importance",
             f"exit {code}: {verdict[0][:100]}" if code == 0 and verdict
             else f"CRASH exit {code}: {err.strip()[:100]}"))
# Formerly "SVI/Laplace draws" for a one-chain NUTS run.
code, out, err = cli(["fit", *small, "--method", "nuts", "--chains", "1", "--num-samples",
                      "50", "--warmup", "20", "--out", str(folder / "one")])
note = [line for line in out.splitlines() if line.startswith("note:")]
rows.append(("CLI --chains 1", f"exit {code}: {note[0]}" if note and "--chains 1" in note[0]
             else f"SILENT exit {code}: {note}"))

# SIGTERM mid-fit (formerly all work lost, and a half-written output set looked complete):
# the killed run leaves a checkpoint and no completion marker; --resume finishes it.
for method, extra, name in [
    ("svi", ["--num-steps", "1500", "--num-samples", "200", "--checkpoint-every", "50"],
     "svi_checkpoint.pt"),
    ("nuts", ["--num-samples", "200", "--warmup", "30", "--checkpoint-every", "10"],
     "mcmc_checkpoint.pt"),
]:
    out_dir = folder / f"killed_{method}"
    args = ["fit", *small, "--method", method, *extra, "--seed", "3", "--out", str(out_dir)]
    process = subprocess.Popen([sys.executable, "-m", "bayes_irl.app.cli", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not (out_dir / name).exists() and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=300)
    unfinished = not (out_dir / "COMPLETE.json").exists()
    code, out, _ = cli([*args, "--resume"])
    ok = (process.returncode == 128 + signal.SIGTERM and unfinished and code == 0
          and (out_dir / "COMPLETE.json").exists())
    rows.append((f"SIGTERM during CLI {method} fit, then --resume",
                 (f"exit {process.returncode}, checkpoint kept, no COMPLETE.json; --resume "
                  f"exit {code}, COMPLETE.json written") if ok
                 else f"SILENT/CRASH: exit {process.returncode}, {err.strip()[-100:]}"))

# fit() and run_svi leave the caller's RNG state and Pyro param store as they found them.
import pyro  # noqa: E402

from bayes_irl.inference import ExactNormalizer, Posterior, fit  # noqa: E402
from bayes_irl.inference.predictive import posterior_predictive_check  # noqa: E402
from bayes_irl.models import DemonstrationModel  # noqa: E402

model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
demos = world.sample_demonstrations(30, seed=0)
random.seed(5)
torch.manual_seed(5)
user = pyro.param("user_weight", torch.ones(2))
before = (random.getstate(), torch.random.get_rng_state().clone())
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    post = fit(model, demos, method="svi", num_steps=50, num_samples=100, progress_bar=False)
same = (random.getstate() == before[0] and torch.equal(torch.random.get_rng_state(), before[1])
        and torch.equal(pyro.param("user_weight"), user))
rows.append(("fit() resets the global RNG / clears the param store",
             "state equal before and after" if same else "SILENT: state changed"))
# A saved posterior is first-class: PPC from posterior.nc plus the model and data.
post.to_inference_data().to_netcdf(str(folder / "posterior.nc"))
try:
    ppc = posterior_predictive_check(
        Posterior.load(folder / "posterior.nc", model=model, data=demos), num_draws=10)
    rows.append(("PPC of a reloaded posterior (was AttributeError 'model')",
                 f"works: omnibus p-values for {sorted(ppc.omnibus)}"))
except Exception as err:  # noqa: BLE001
    rows.append(("PPC of a reloaded posterior", f"CRASH {type(err).__name__}: {err}"[:120]))

print("| case | outcome |\n|---|---|")
for name, outcome in rows:
    print(f"| {name} | {outcome.replace('|', '/')} |")
clean = sum(not o.startswith(("SILENT", "CRASH")) for _, o in rows)
print(f"\n{len(rows)} cases tried, {clean} rejected or warned cleanly, "
      f"{len(rows) - clean} silent or crashing")
