"""Active (EIG) vs random preference queries answered by a B-Pref teacher.

The teacher is B-Pref's stressed judge (Lee et al. 2021): rationality beta = 1, myopic
(gamma = 0.9: step t of an L-step item weighs gamma^(L-1-t)) and wrong 10% of the time
(answers flipped). The model does not know any of this: it is the plain Bradley-Terry
PreferenceModel (beta = 1). Problems as in ``active_queries.py`` (seed s: 4x4 gridworld
with K = 4 random features and secret weights theta*, a pool of 30 trajectories); both
strategies refit a Laplace approximation after every answer, and the teacher of a seed
draws the same random numbers for both strategies.

Printed (and written to ``--out`` as JSON): mean ± standard error over seeds of the error
||theta_hat - theta*|| and of the cosine between theta_hat and theta*, at equal query
counts, and the paired per-seed difference of the errors (EIG - random; same world, pool
and teacher per seed). ``--summarise FILE`` prints the tables of a saved run again.

Run: ``nice .venv/bin/python benchmarks/bpref_active_queries.py [--seeds 10] [--queries 30]``
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from active_queries import make_problem

from bayes_irl.inference.active import run_active_learning
from bayes_irl.models import BPrefTeacher


def run(seeds: int, queries: int, *, beta: float, gamma: float, mistake_rate: float) -> dict:
    """Return strategy -> metric -> (seeds, queries + 1) nested lists."""
    results: dict = {s: {"error": [], "cosine": []} for s in ("eig", "random")}
    for seed in range(seeds):
        model, truth = make_problem(seed)
        for strategy in results:
            teacher = BPrefTeacher(model.reward_model, truth, beta=beta, gamma=gamma,
                                   mistake_rate=mistake_rate, seed=20_000 + seed)
            record = run_active_learning(model, truth, num_queries=queries, strategy=strategy,
                                         seed=seed, teacher=teacher.answer)
            results[strategy]["error"].append(record.error.tolist())
            results[strategy]["cosine"].append(record.cosine.tolist())
    return results


def summary(values: list[list[float]], q: int) -> tuple[float, float]:
    """Mean and standard error over seeds at query count q."""
    column = torch.tensor([v[q] for v in values], dtype=torch.float64)
    return float(column.mean()), float(column.std() / math.sqrt(len(column)))


def paired(results: dict, q: int) -> tuple[float, float]:
    """Mean and standard error over seeds of error(EIG) - error(random) at q queries."""
    eig, rnd = (torch.tensor([v[q] for v in results[s]["error"]], dtype=torch.float64)
                for s in ("eig", "random"))
    diff = eig - rnd
    return float(diff.mean()), float(diff.std() / math.sqrt(len(diff)))


def report(results: dict, queries: int) -> None:
    """Print the markdown table of a run."""
    print("| queries | error, EIG | error, random | error EIG - random (paired) "
          "| cosine, EIG | cosine, random |")
    print("|---|---|---|---|---|---|")
    for q in range(0, queries + 1, 5):
        cells = [summary(results[s]["error"], q) for s in ("eig", "random")]
        cells.append(paired(results, q))
        cells += [summary(results[s]["cosine"], q) for s in ("eig", "random")]
        print(f"| {q} | " + " | ".join(f"{m:.3f} ± {e:.3f}" for m, e in cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--beta", type=float, default=1.0)
    parser.add_argument("--gamma", type=float, default=0.9)
    parser.add_argument("--mistake-rate", type=float, default=0.1)
    parser.add_argument("--out", type=Path, default=None, help="write the raw results (JSON)")
    parser.add_argument("--summarise", type=Path, default=None,
                        help="print the tables of a saved run (no new run)")
    args = parser.parse_args()
    if args.summarise is not None:
        saved = json.loads(args.summarise.read_text())
        print(f"{saved['args']}; {saved['seconds']:.0f} s")
        report(saved["results"], saved["args"]["queries"])
        return
    torch.set_num_threads(1)
    start = time.perf_counter()
    results = run(args.seeds, args.queries, beta=args.beta, gamma=args.gamma,
                  mistake_rate=args.mistake_rate)
    elapsed = time.perf_counter() - start
    print(f"B-Pref teacher beta={args.beta}, gamma={args.gamma}, mistakes={args.mistake_rate}; "
          f"{args.seeds} seeds, mean ± s.e. ({elapsed:.0f} s)")
    report(results, args.queries)
    if args.out is not None:
        args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out),
                                                              "summarise": None},
                                        "seconds": elapsed, "results": results}))


if __name__ == "__main__":
    main()
