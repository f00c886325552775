"""Do the convergence guards fire on fits that would otherwise be silently wrong?

Each case is fitted with the stated change and the ConvergenceReport verdict is printed.
The samplers: Pyro's SVI loop (``init="prior"``, the guide's own start, or
``svi_backend="pyro"`` from the Laplace fit) and NUTS from a uniform start
(``init="uniform"``; the recorded table ran Pyro's NUTS there, which the former version
used), not the Gaussian-VI loop and the Laplace-started NUTS of the library's defaults.
Run: ``nice python benchmarks/guard_checks.py [CASE ...]`` (results:
``benchmarks/guard_results.md``).
"""

import sys
import time
import warnings

import pyro.distributions as dist
import torch

from bayes_irl import GridWorld, TabularMDP
from bayes_irl.inference import ExactNormalizer, fit
from bayes_irl.models import DemonstrationModel
from bayes_irl.rewards import LinearReward

torch.set_num_threads(1)


def model_for(world, *, scale=1.0, prior=None, mdp=None):
    mdp = mdp or world.mdp
    feats = mdp.features * scale
    mdp2 = TabularMDP.from_sparse(
        successors=mdp.successors, successor_probs=mdp.successor_log_probs.exp(),
        initial=mdp.initial, features=feats, horizon=mdp.horizon)
    reward = LinearReward(mdp2.features, prior=prior)
    return DemonstrationModel(reward, ExactNormalizer(mdp2)), mdp2


def run(name, model, demos, method, **options):
    start = time.perf_counter()
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        post = fit(model, demos, method=method, progress_bar=False, **options)
    mean = [round(x, 3) for x in post.mean().tolist()]
    extra = post.attrs.get("convergence_elbo_stationarity")
    name = name if extra is None else f"{name} (ELBO stationarity {extra:.3g})"
    sd = [round(x, 3) for x in post.std().tolist()]
    print(f"| {name} | {method} | {mean} | {sd} | {post.attrs['convergence_verdict'][:160]} | "
          f"{time.perf_counter() - start:.0f} s |", flush=True)


world = GridWorld.create(size=5, num_features=4, seed=1)
demos = world.sample_demonstrations(200, seed=1)
which = sys.argv[1:] or [
    "x1000_svi", "prior100_svi", "x1000_nuts", "prior1e6_svi", "prior1e6_svi_initprior"]
print("| case | method | mean | sd | verdict | time |\n|---|---|---|---|---|---|")
if "x1000_svi" in which:
    m, _ = model_for(world, scale=1000.0)
    run("features x1000", m, demos, "svi", num_samples=1000, init="prior")
if "prior100_svi" in which:
    m, _ = model_for(world, prior=dist.Normal(torch.tensor(0.0, dtype=torch.float64), 100.0))
    run("prior N(0, 100)", m, demos, "svi", num_samples=1000, init="prior")
if "x1000_nuts" in which:
    m, _ = model_for(world, scale=1000.0)
    run("features x1000", m, demos, "nuts", num_samples=300, warmup_steps=300,
        init="uniform")
if "prior1e6_svi" in which:
    m, _ = model_for(world, prior=dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1e6))
    run("prior N(0, 1e6)", m, demos, "svi", num_samples=1000, svi_backend="pyro")
if "prior1e6_svi_initprior" in which:  # the guide's own start
    m, _ = model_for(world, prior=dist.Normal(torch.tensor(0.0, dtype=torch.float64), 1e6))
    run("prior N(0, 1e6), init='prior'", m, demos, "svi", num_samples=1000, init="prior")
