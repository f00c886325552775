"""Do the model checks flag misspecification? PPC, PSIS-LOO k-hat and ``compare``, measured.

Same tiny problem as ``benchmarks/misspecification.py`` (3x3 gridworld, horizon 4, two
features, theta* ~ N(0, I), n = 100 exact demonstrations per data set), ``--datasets``
data sets per case (theta* and the data seeded by the data set's number). Each data set is
fitted by Laplace (L-BFGS, 400 draws) with the case's model, and checked by

* PPC: :func:`bayes_irl.inference.predictive.posterior_predictive_check` (200 replicates,
  prob 0.99): flagged when an omnibus p-value (feature counts or state visits) < 0.01;
* LOO: :func:`bayes_irl.inference.compare.loo`: flagged when some demonstration's
  PSIS k-hat > 0.7 (ArviZ's ``warning``);
* compare: :func:`bayes_irl.inference.compare.compare` of the fitted model against an
  alternative that can express the data-generating process: flagged when the
  alternative ranks first with elpd_diff > 2 dse.

Cases (data -> fitted model; alternative in ``compare``):

* ``correct``: global maxent, beta = 1 -> the same model; alternative: the global model
  with a reward that can take any value per (s, a) (the two features plus one indicator
  per (s, a), N(0, 1) prior) — a control: nothing should fire;
* ``beta_3``: the demonstrator's beta = 3 -> beta fixed at 1; alternative: beta latent
  (LogNormal(0, 0.5)), fitted by ``method="rationality_importance"``;
* ``beta_lognormal``: beta ~ LogNormal(0, 0.5) per data set -> beta fixed at 1; same
  alternative;
* ``causal_data``: a maximum-causal-entropy demonstrator -> the global model; alternative:
  the causal model;
* ``causal_correct``: a maximum-causal-entropy demonstrator -> the causal model (a control
  for the causal model's checks); alternative: the global model;
* ``global_data_causal_fit``: a global maxent demonstrator -> the causal model;
  alternative: the global model;
* ``outside_span``: global maxent of beta R_theta plus a fixed N(0, 1) offset per (s, a)
  -> the global model; alternative: the per-(s, a) reward above.

    nice .venv/bin/python benchmarks/misspecification_checks.py --datasets 20
"""

import argparse
import dataclasses
import time
import warnings

import numpy as np
import pyro.distributions as dist
import torch

from bayes_irl import GridWorld
from bayes_irl.inference import ExactNormalizer, fit
from bayes_irl.inference.calibration import (
    DemonstrationSimulator,
    LogNormalRationality,
    draw_prior,
)
from bayes_irl.inference.compare import compare, loo
from bayes_irl.inference.predictive import posterior_predictive_check
from bayes_irl.models import DemonstrationModel
from bayes_irl.rewards import LinearReward

NUM_DEMOS = 100


def build_cases():
    world = GridWorld.create(size=3, num_features=2, horizon=4, seed=1)
    mdp = world.mdp
    glob = DemonstrationModel(world.reward_model, ExactNormalizer(mdp))
    causal = DemonstrationModel(world.reward_model, ExactNormalizer(mdp, kind="causal"))
    prior = dist.LogNormal(torch.tensor(0.0, dtype=torch.float64),
                           torch.tensor(0.5, dtype=torch.float64))
    latent = DemonstrationModel(world.reward_model, ExactNormalizer(mdp),
                                rationality_prior=prior)
    num_sa = mdp.num_states * mdp.num_actions
    indicators = torch.eye(num_sa, dtype=torch.float64).reshape(
        mdp.num_states, mdp.num_actions, num_sa)
    rich_features = torch.cat([world.reward_model.features.to(torch.float64), indicators], -1)
    # the MDP itself carries the rich features (the data summaries follow the MDP's)
    names = tuple(mdp.feature_names) + tuple(f"sa_{i}" for i in range(num_sa))
    rich_mdp = dataclasses.replace(mdp, features=rich_features, state_features=False,
                                   feature_names=names)
    rich = DemonstrationModel(LinearReward(rich_features), ExactNormalizer(rich_mdp))
    offset = torch.randn(mdp.num_states, mdp.num_actions,
                         generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    return {
        "correct": (glob, DemonstrationSimulator(NUM_DEMOS), rich),
        "beta_3": (glob, DemonstrationSimulator(NUM_DEMOS, rationality=3.0), latent),
        "beta_lognormal": (glob, DemonstrationSimulator(
            NUM_DEMOS, rationality=LogNormalRationality()), latent),
        "causal_data": (glob, DemonstrationSimulator(NUM_DEMOS, kind="causal"), causal),
        "causal_correct": (causal, DemonstrationSimulator(NUM_DEMOS), glob),
        "global_data_causal_fit": (causal, DemonstrationSimulator(NUM_DEMOS, kind="global"),
                                   glob),
        "outside_span": (glob, DemonstrationSimulator(NUM_DEMOS, reward_offset=offset), rich),
    }


def fit_one(model, raw, seed):
    if getattr(model, "rationality_prior", None) is not None:
        return fit(model, raw, method="rationality_importance", num_samples=400, seed=seed)
    return fit(model, raw, method="laplace", optimizer="lbfgs", num_samples=400, seed=seed,
               progress_bar=False)


def check_one(model, simulator, alternative, index):
    """PPC / LOO / compare flags for data set ``index``."""
    truth = draw_prior(model, 1000 + index)
    raw = simulator(model, truth, torch.Generator().manual_seed(2000 + index))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = fit_one(model, raw, index)
        idata = post.to_inference_data()
        ppc = posterior_predictive_check(post, idata=idata, num_draws=200, seed=index)
        elpd = loo(idata)
        other = fit_one(alternative, raw, index).to_inference_data()
        table = compare({"fitted": idata, "alternative": other})
    best = table.index[0]
    diff = float(table.loc["alternative", "elpd_diff"]) if best == "fitted" else float(
        table.loc["fitted", "elpd_diff"])
    dse = float(table.loc["alternative" if best == "fitted" else "fitted", "dse"])
    return {
        "ppc_feature": ppc.omnibus["feature_counts"],
        "ppc_visits": ppc.omnibus["state_visits"],
        "ppc_flag": bool(ppc.flagged()),
        "max_khat": float(np.max(elpd.pareto_k.values)),
        "loo_flag": bool(elpd.warning),
        "alt_first": best == "alternative",
        "elpd_gap": diff if best == "alternative" else -diff,  # alternative minus fitted
        "compare_flag": best == "alternative" and diff > 2 * dse,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", type=int, default=20)
    parser.add_argument("--cases", nargs="+", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = build_cases()
    print("| case | data sets | PPC flags (omnibus p < 0.01) | median PPC p: features / "
          "visits | LOO flags (k-hat > 0.7) | median max k-hat | compare flags "
          "(alternative better by > 2 dse) | median elpd(alternative) - elpd(fitted) | s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.cases or list(cases):
        model, simulator, alternative = cases[name]
        start = time.perf_counter()
        rows = [check_one(model, simulator, alternative, i) for i in range(args.datasets)]
        col = {k: np.array([r[k] for r in rows]) for k in rows[0]}
        n = args.datasets
        print(f"| {name} | {n} | {col['ppc_flag'].sum()}/{n} | "
              f"{np.median(col['ppc_feature']):.3f} / {np.median(col['ppc_visits']):.3f} | "
              f"{col['loo_flag'].sum()}/{n} | {np.median(col['max_khat']):.2f} | "
              f"{col['compare_flag'].sum()}/{n} | {np.median(col['elpd_gap']):.1f} | "
              f"{time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
