"""Short check for a machine with a CUDA GPU: exact log Z on CPU vs CUDA, an SVI step, timings.

    .venv/bin/python scripts/gpu_check.py [--size 100] [--horizon 100]

Prints one JSON line per check and exits non-zero if CUDA is missing or a check fails.
Tolerances: float64 log Z on CPU and CUDA agree to 1e-9 relative (same recursion, different
summation order in the sparse products); float32 on CUDA to 1e-4 relative.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch


def timed(fn, repeats: int = 3) -> tuple[float, object]:
    """Return (best wall seconds over ``repeats``, last result), synchronising CUDA."""
    best, out = float("inf"), None
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out


def main(argv=None) -> int:
    """Run the checks; return 0 when all pass."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=100, help="grid side N (S = N^2)")
    p.add_argument("--horizon", type=int, default=100)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if not torch.cuda.is_available():
        print(json.dumps({"cuda": False, "error": "no CUDA device"}))
        return 1

    from bayes_irl import GridWorld
    from bayes_irl.inference import ExactNormalizer, run_svi
    from bayes_irl.models import DemonstrationModel

    ok = True
    results = {}
    for device in ("cpu", "cuda"):
        world = GridWorld.create(size=args.size, horizon=args.horizon, seed=0, device=device)
        norm = ExactNormalizer(world.mdp)
        theta = world.true_weights.clone().requires_grad_(True)

        def log_z_and_grad(world=world, norm=norm, theta=theta):
            theta.grad = None
            z = norm.log_normalizer(world.reward_model, theta)
            z.backward()
            return float(z), theta.grad.detach().cpu()

        seconds, (log_z, grad) = timed(log_z_and_grad)
        results[device] = (log_z, grad)
        print(json.dumps({"check": "log_z_and_grad", "device": device, "S": args.size**2,
                          "H": args.horizon, "seconds": seconds, "log_z": log_z}))
    rel = abs(results["cpu"][0] - results["cuda"][0]) / abs(results["cpu"][0])
    grad_err = float((results["cpu"][1] - results["cuda"][1]).abs().max())
    ok &= rel < 1e-9 and grad_err < 1e-6
    print(json.dumps({"check": "cpu_vs_cuda_float64", "log_z_rel_err": rel,
                      "grad_max_abs_err": grad_err, "ok": rel < 1e-9 and grad_err < 1e-6}))

    world32 = GridWorld.create(size=args.size, horizon=args.horizon, seed=0, device="cuda",
                               dtype=torch.float32)
    seconds, z32 = timed(lambda: float(ExactNormalizer(world32.mdp).log_normalizer(
        world32.reward_model, world32.true_weights)))
    rel32 = abs(z32 - results["cpu"][0]) / abs(results["cpu"][0])
    ok &= rel32 < 1e-4
    print(json.dumps({"check": "cuda_float32", "seconds": seconds, "log_z_rel_err": rel32,
                      "ok": rel32 < 1e-4}))

    world = GridWorld.create(size=min(args.size, 30), horizon=60, seed=0, device="cuda")
    model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
    data = model.prepare_data(world.sample_demonstrations(200, seed=1))
    try:
        start = time.perf_counter()
        post = run_svi(model, data, num_steps=20, num_samples=10, progress_bar=False)
        torch.cuda.synchronize()
        step = (time.perf_counter() - start) / 20
        finite = bool(torch.isfinite(post.samples["weights"]).all())
        ok &= finite
        print(json.dumps({"check": "svi_on_cuda", "seconds_per_step": step, "ok": finite}))
    except Exception as err:  # report, do not hide: e.g. a prior left on the CPU
        ok = False
        print(json.dumps({"check": "svi_on_cuda", "ok": False, "error": repr(err)[:500]}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
