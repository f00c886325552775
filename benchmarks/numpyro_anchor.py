"""The anchor for bayes-irl's NUTS: the same causal posterior hand-written in NumPyro.

Reads the benchmark's exchange files (benchmarks/imitation/make_example.py: dense
``transitions`` (S, A, S), ``initial``, state ``features`` (S, K), ``horizon``; demos
``states``/``actions``/``lengths``) with NumPy only, and samples

    theta ~ N(0, I_K),
    log p(demos | theta) = sum_{t, s, a} N[t, s, a] (Q_t(s, a) - V_t(s))     (causal maxent)
                         = theta . Phi + sum_t [ sum_{s,a} N[t,s,a] (P V_{t+1})(s, a)
                                                 - sum_s N[t, s] V_t(s) ],

with N the visit counts of the observed steps, r(s, a) = features[s] . theta, the soft
values V_T = 0, Q_t = r + P V_{t+1}, V_t = logsumexp_a Q_t (a jax.lax.scan over the
sparse successors), by NumPyro's NUTS with a dense mass matrix, 2 chains in parallel
(one XLA host device per chain), NumPyro's defaults otherwise (target accept 0.8, tree
depth 10), 500 warm-up + 1000 draws per chain, as a user would write it.

Prints the wall time (compilation included, as the user waits for it), the posterior mean
and sd, r_hat and the smallest bulk ESS, and bulk ESS per second; ``--json`` writes them.

    python benchmarks/numpyro_anchor.py --mdp MDP.npz --demos DEMOS.npz [--json out.json]

Needs the ``bench`` extra (``pip install -e .[bench]``: numpyro and jax).
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import numpy as np  # noqa: E402


def causal_tables(mdp_path: str, demos_path: str):
    """Successor lists, features, and the visit counts N[t, s, a] from the .npz files."""
    mdp = np.load(mdp_path)
    demos = np.load(demos_path)
    transitions = mdp["transitions"]  # (S, A, S)
    num_states, num_actions, _ = transitions.shape
    fan_out = int((transitions > 0).sum(-1).max())
    order = np.argsort(-transitions, axis=-1)[..., :fan_out]  # (S, A, F) successors
    probs = np.take_along_axis(transitions, order, -1)
    horizon = int(mdp["horizon"])
    states, actions = demos["states"], demos["actions"]
    lengths = demos["lengths"] if "lengths" in demos else np.full(len(states), horizon)
    counts = np.zeros((horizon, num_states, num_actions))
    for i in range(len(states)):
        for t in range(int(lengths[i])):
            counts[t, states[i, t], actions[i, t]] += 1
    features = mdp["features"]  # (S, K)
    true = mdp["true_weights"] if "true_weights" in mdp else None
    return order, probs, features, counts, true


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mdp", required=True)
    parser.add_argument("--demos", required=True)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    start = time.perf_counter()
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.diagnostics import effective_sample_size, split_gelman_rubin
    from numpyro.infer import MCMC, NUTS

    jax.config.update("jax_enable_x64", True)
    import_time = time.perf_counter() - start

    successors, probs, features, counts, true = causal_tables(args.mdp, args.demos)
    num_states, num_actions, _ = successors.shape
    horizon, num_features = counts.shape[0], features.shape[1]
    succ, prob = jnp.asarray(successors), jnp.asarray(probs)
    phi = jnp.asarray(features)
    visits_sa = jnp.asarray(counts)  # (T, S, A)
    visits_s = visits_sa.sum(-1)  # (T, S)
    feature_counts = jnp.einsum("tsa,sk->k", visits_sa, phi)

    def log_likelihood(theta):
        reward = (phi @ theta)[:, None]  # (S, 1): the same for every action

        def step(value, _):
            cont = (value[succ] * prob).sum(-1)  # (P V_{t+1})(s, a)
            new = jax.nn.logsumexp(reward + cont, axis=-1)
            return new, (new, cont)

        _, (values, conts) = jax.lax.scan(step, jnp.zeros(num_states), None, length=horizon)
        values, conts = values[::-1], conts[::-1]  # t = 0 .. T-1
        return (theta @ feature_counts + (visits_sa * conts).sum()
                - (visits_s * values).sum())

    def model():
        theta = numpyro.sample("theta", dist.Normal(0.0, 1.0).expand([num_features]).to_event(1))
        numpyro.factor("demonstrations", log_likelihood(theta))

    mcmc = MCMC(NUTS(model, dense_mass=True), num_warmup=args.warmup, num_samples=args.samples,
                num_chains=2, chain_method="parallel", progress_bar=False)
    mcmc.run(jax.random.PRNGKey(args.seed))
    draws = np.asarray(mcmc.get_samples(group_by_chain=True)["theta"])  # (2, draws, K)
    wall = time.perf_counter() - start
    ess = np.array([effective_sample_size(draws[..., k]) for k in range(num_features)])
    # NumPyro's ESS is the basic one; the bulk ESS (rank-normalised) is ArviZ's, as for ours
    try:
        import arviz as az

        ess = np.array([float(az.ess(draws[..., k], method="bulk")) for k in range(num_features)])
        r_hat = np.array([float(az.rhat(draws[..., k])) for k in range(num_features)])
    except ImportError:
        r_hat = np.array([float(split_gelman_rubin(draws[..., k])) for k in range(num_features)])
    mean = draws.reshape(-1, num_features).mean(0)
    result = {
        "wall_s": wall,
        "import_s": import_time,
        "min_ess_bulk": float(ess.min()),
        "ess_bulk_per_s": float(ess.min() / wall),
        # without the ~5 s import of jax/numpyro (compilation stays in): bayes-irl's
        # "fitted in" time also excludes its imports
        "ess_bulk_per_s_after_import": float(ess.min() / (wall - import_time)),
        "max_r_hat": float(r_hat.max()),
        "mean": mean.tolist(),
        "sd": draws.reshape(-1, num_features).std(0, ddof=1).tolist(),
        "num_divergences": int(mcmc.get_extra_fields()["diverging"].sum()),
        "pearson_vs_true": None if true is None else float(
            np.corrcoef(features @ mean, features @ true)[0, 1]),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
