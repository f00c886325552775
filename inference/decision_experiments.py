r"""Two seeded experiments on acting under the reward posterior (benchmarks and notebook 07).

**Lava transfer** (after Inverse Reward Design, Hadfield-Menell et al. 2017). An N×N
gridworld with three state features: closeness to the goal corner, "dirt" patches and
"lava". The demonstrations come from the *training* map, where no cell is lava (the
lava column is zero), so the data say nothing about the lava weight and its posterior is
its prior. The policies act in the *test* map: the same grid with a 2×2 block of lava cells
near the centre, on the way from the start corner to the goal, and a larger slip
probability. Every
policy is scored on the true reward, in which lava is bad (weight ``lava_weight``).
:func:`run_lava_transfer` compares the posterior-mean policy, lower-confidence-bound and
CVaR policies, and the imitation-style mean - k std of an ensemble of MAP fits on
bootstrap resamples (whose members all put the lava weight at the prior mode 0: an
ensemble of point estimates has no spread where the data are silent).

**RLHF over-optimisation** (after Gao et al. 2023; Coste et al. 2024). A token
environment (:class:`bayes_irl.TokenSequenceEnv`) whose last token is *rare* under
pi_ref (probability ``rare_prob`` at every step) and *looks good* on the well-measured
feature 0 but carries feature 2, which the gold reward penalises (weight -2). A reward
posterior is fitted (Laplace) from N Bradley-Terry comparisons of responses sampled from
pi_ref, so the rare token is almost never compared and the posterior of weight 2 stays
near its prior. Policies optimise a proxy score of a response x — (a) the posterior mean
of R_theta(x), (b) the lower confidence bound mean - k sd, (c) the posterior expected
exponential utility E[-exp(-lambda R_theta(x))], reported as its certainty equivalent
-(1/lambda) log E exp(-lambda R_theta(x)) — by best-of-n (n = 1..1024) or the
KL-regularised optimum pi ∝ pi_ref exp(score / beta). Responses are few enough to
enumerate, so every curve is exact: the best-of-n distribution is
``P(x) = F(x)^n - F(x^-)^n`` with F the pi_ref-CDF of the score, and KL(pi || pi_ref),
the gold reward and the proxy are sums over all responses (no sampling).

The construction is deliberate: it isolates the mechanism by which a posterior can delay
over-optimisation (uncertainty where the data are silent). With ``rare_prob`` large
enough for the comparisons to cover the rare token, the proxies agree and the effect
vanishes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from bayes_irl.gridworld import GridWorld
from bayes_irl.inference.decisions import (
    bootstrap_map_ensemble,
    lcb_policy,
    mean_reward_policy,
    return_distribution,
    reward_draws,
    risk_averse_policy,
)
from bayes_irl.inference.fit import fit
from bayes_irl.inference.normalizers import ExactNormalizer
from bayes_irl.mdp import TabularMDP
from bayes_irl.models import DemonstrationModel, PreferenceModel, simulate_comparisons
from bayes_irl.policy_evaluation import (
    expected_return,
    hard_optimal_policy,
    hitting_probability,
    sample_trajectories,
)
from bayes_irl.rewards import LinearReward
from bayes_irl.sequences import TokenSequenceEnv, enumerate_trajectories
from bayes_irl.soft_bellman import sample_maxent_trajectories
from bayes_irl.trajectories import trajectory_returns

__all__ = [
    "LavaWorlds",
    "LavaResult",
    "OveroptimisationResult",
    "lava_worlds",
    "run_lava_transfer",
    "hacking_token_env",
    "run_overoptimisation",
    "best_of_n_distribution",
]

LAVA_FEATURES = ("goal", "dirt", "lava")
BETAS = tuple(float(b) for b in np.logspace(-1.5, 1.5, 13))
"""Default KL weights of the over-optimisation sweep."""


# ---------------------------------------------------------------------------- lava
@dataclass(frozen=True)
class LavaWorlds:
    """Training and test maps of the lava experiment.

    Attributes:
        train_mdp: the demonstrations' map (no lava; slip ``train_slip``; uniform start).
        test_mdp: the map to act in (lava block; slip ``test_slip``; start near (0, 0)).
        true_weights: theta* = (goal, dirt, lava), shape (3,).
        lava: bool (S,), the lava cells of the test map.
    """

    train_mdp: TabularMDP
    test_mdp: TabularMDP
    true_weights: torch.Tensor
    lava: torch.Tensor


def lava_worlds(
    *,
    seed: int,
    size: int = 6,
    horizon: int | None = None,
    train_slip: float = 0.1,
    test_slip: float = 0.15,
    dirt_fraction: float = 0.3,
    true_weights=(1.5, -1.0, -2.0),
) -> LavaWorlds:
    """Build the seeded training and test maps (dirt layout and lava offset vary by seed).

    Args:
        seed: seeds the dirt cells and the position of the lava block.
        size: N >= 4.
        horizon: T of the test map (default 2N); the training map uses the same T.
        train_slip: slip of the training map.
        test_slip: slip of the test map.
        dirt_fraction: probability that a cell is dirt.
        true_weights: theta* (goal, dirt, lava), or ``"prior"`` for a Normal(0, I) draw
            (the well-specified case, for checking calibration).

    Returns:
        The :class:`LavaWorlds`.
    """
    if size < 4:
        raise ValueError(f"size must be >= 4; got {size}")
    rng = np.random.default_rng(seed)
    horizon = 2 * size if horizon is None else horizon
    rows, cols = np.divmod(np.arange(size * size), size)
    goal = np.exp(-((size - 1 - rows) + (size - 1 - cols)) / (size / 2))
    dirt = (rng.random(size * size) < dirt_fraction).astype(float)
    # a 2×2 lava block near the centre (shifted by the seed), off the start and goal cells
    top, left = (size - 2) // 2 + rng.integers(-1, 2, size=2)
    band = (rows >= top) & (rows < top + 2) & (cols >= left) & (cols < left + 2)
    if isinstance(true_weights, str):
        if true_weights != "prior":
            raise ValueError(f"true_weights must be 3 numbers or 'prior'; got {true_weights!r}")
        weights = torch.as_tensor(rng.standard_normal(3), dtype=torch.float64)
    else:
        weights = torch.as_tensor(np.asarray(true_weights, dtype=float))
    start = np.zeros(size * size)
    start[[0, 1, size]] = 1 / 3

    def build(slip, lava, initial):
        dynamics = GridWorld.create(size=size, num_features=1, slip=slip, seed=seed).mdp
        return TabularMDP.from_sparse(
            successors=dynamics.successors,
            successor_probs=dynamics.successor_log_probs.exp(),
            initial=initial,
            features=np.stack([goal, dirt, lava.astype(float)], -1),
            horizon=horizon,
            feature_names=list(LAVA_FEATURES),
        )

    uniform = np.full(size * size, 1 / size**2)
    train = build(train_slip, np.zeros(size * size, dtype=bool), uniform)
    test = build(test_slip, band, start)
    return LavaWorlds(train, test, weights, torch.as_tensor(band))


@dataclass(frozen=True)
class LavaResult:
    """Per-policy scores of one seed of the lava experiment, all on the TRUE reward.

    Attributes:
        names: policy names.
        lava_probability: exact probability that an episode enters lava, per policy.
        mean_return: exact expected true return, per policy.
        q10_return: 10% quantile of the true episode return (Monte Carlo episodes).
        lava_frequency: fraction of the Monte Carlo episodes that entered lava.
        posterior_q05: posterior 5% quantile of each policy's expected return.
        policies: name -> policy (T, S, A).
        draws: posterior draws of the step rewards on the test map, (N, S, A).
        worlds: the maps.
    """

    names: list[str]
    lava_probability: np.ndarray
    mean_return: np.ndarray
    q10_return: np.ndarray
    lava_frequency: np.ndarray
    posterior_q05: np.ndarray
    policies: dict
    draws: torch.Tensor
    worlds: LavaWorlds


def run_lava_transfer(
    seed: int,
    *,
    size: int = 6,
    num_demos: int = 40,
    num_draws: int = 500,
    num_members: int = 10,
    num_episodes: int = 4000,
    k: float = 1.0,
    alpha: float = 0.1,
    true_weights=(1.5, -1.0, -2.0),
    cvar_steps: int = 300,
) -> LavaResult:
    """Run one seed: fit on the training map, act in the test map, score on the truth.

    Policies: ``"posterior mean"`` (hard-optimal for the posterior-mean reward, i.e. the
    maximal posterior expected return), ``"LCB k"`` (reward mean - k sd over posterior
    draws), ``"CVaR alpha"`` (:func:`~bayes_irl.inference.decisions.risk_averse_policy`),
    ``"ensemble k"`` (mean - k std of ``num_members`` bootstrap MAP fits), and
    ``"true reward"`` (the oracle, for reference).

    Args:
        seed: seeds the maps, demonstrations, fit, ensemble and episodes.
        size: N.
        num_demos: demonstrations on the training map (maxent, global).
        num_draws: Laplace posterior draws.
        num_members: bootstrap MAP fits (0 leaves the ensemble policy out).
        num_episodes: Monte Carlo episodes for the 10% quantile of the true return.
        k: standard deviations subtracted by the LCB and ensemble policies.
        alpha: CVaR tail mass.
        true_weights: theta* or ``"prior"`` (see :func:`lava_worlds`).
        cvar_steps: optimisation steps of the CVaR policy.

    Returns:
        A :class:`LavaResult`.
    """
    worlds = lava_worlds(seed=seed, size=size, true_weights=true_weights)
    train, test = worlds.train_mdp, worlds.test_mdp
    reward = LinearReward(train.features, feature_names=list(LAVA_FEATURES))
    generator = torch.Generator().manual_seed(seed)
    truth_train = reward.step_rewards(worlds.true_weights)
    demos = sample_maxent_trajectories(train, truth_train, num_demos, generator=generator)
    model = DemonstrationModel(reward, ExactNormalizer(train))
    posterior = fit(
        model, demos, method="laplace", optimizer="lbfgs", num_samples=num_draws, seed=seed
    )
    draws = reward_draws(posterior, test)
    truth = LinearReward(test.features).step_rewards(worlds.true_weights)
    policies = {
        "posterior mean": mean_reward_policy(test, draws).policy,
        f"LCB k={k:g}": lcb_policy(test, draws, k=k).policy,
        f"CVaR {alpha:g}": risk_averse_policy(
            test, draws, alpha=alpha, num_steps=cvar_steps
        ).policy,
    }
    if num_members:
        members = bootstrap_map_ensemble(model, demos, num_members=num_members, seed=seed)
        policies[f"ensemble k={k:g}"] = lcb_policy(test, reward_draws(members, test), k=k).policy
    policies["true reward"] = hard_optimal_policy(test, truth).policy
    names = list(policies)
    stacked = torch.stack([policies[n] for n in names])
    lava_p = hitting_probability(test, stacked, worlds.lava).numpy()
    mean = expected_return(test, stacked, truth).detach().numpy()
    q10, freq, q05 = [], [], []
    for name in names:
        episodes = sample_trajectories(test, policies[name], num_episodes, generator=generator)
        returns = trajectory_returns(truth, episodes[..., 0], episodes[..., :-1, 1])
        q10.append(float(torch.quantile(returns, 0.1)))
        freq.append(float(worlds.lava[episodes[..., 0]].any(-1).double().mean()))
        q05.append(return_distribution(test, policies[name], draws).quantile(0.05))
    return LavaResult(names, lava_p, mean, np.asarray(q10), np.asarray(freq), np.asarray(q05),
                      policies, draws, worlds)


# ---------------------------------------------------------------------------- RLHF
def hacking_token_env(
    *,
    seed: int,
    num_contexts: int = 2,
    vocab_size: int = 6,
    max_length: int = 4,
    rare_prob: float = 0.003,
    hack: float = 2.5,
    gold_hack_weight: float = -2.0,
) -> tuple[TokenSequenceEnv, int]:
    """A token environment with a rare token that looks good but is bad under the gold reward.

    Starts from ``TokenSequenceEnv.create(..., num_features=3, seed=seed)`` (random pi_ref
    and random features 0 and 1), then: the last token v* gets pi_ref(v* | .) =
    ``rare_prob`` in every non-final state (the other tokens renormalised), feature 0 =
    ``hack`` and feature 2 = ``hack`` on v* (feature 2 is zero elsewhere). The gold
    weights are (1, N(0, 1) draw, ``gold_hack_weight``).

    Returns:
        ``(env, rare_token)``.
    """
    if not 0 < rare_prob < 1:
        raise ValueError(f"rare_prob must lie in (0, 1); got {rare_prob!r}")
    base = TokenSequenceEnv.create(
        num_contexts=num_contexts, vocab_size=vocab_size, max_length=max_length,
        num_features=3, seed=seed,
    )
    rare = vocab_size - 1
    mdp = base.mdp
    features = mdp.features.clone()
    features[..., 2] = 0.0
    probs = mdp.action_log_base.exp().clone()
    active = torch.isfinite(mdp.action_log_base[:, rare])  # every state but DONE
    for s in active.nonzero().flatten().tolist():
        others = probs[s].clone()
        others[rare] = 0.0
        probs[s] = others / others.sum() * (1 - rare_prob)
        probs[s, rare] = rare_prob
        features[s, rare, 0] = hack
        features[s, rare, 2] = hack
    with np.errstate(divide="ignore"):
        log_base = torch.as_tensor(np.log(probs.numpy()))
    new_mdp = TabularMDP.from_sparse(
        successors=mdp.successors,
        successor_probs=mdp.successor_log_probs.exp(),
        initial=mdp.initial,
        features=features,
        horizon=mdp.horizon,
        action_log_base=log_base,
        feature_names=list(mdp.feature_names),
    )
    rng = np.random.default_rng(seed + 10_000)
    gold = torch.tensor([1.0, float(rng.standard_normal()), gold_hack_weight], dtype=torch.float64)
    env = dataclasses.replace(
        base,
        mdp=new_mdp,
        reward_model=LinearReward(new_mdp.features, feature_names=list(mdp.feature_names)),
        true_weights=gold,
    )
    return env, rare


def best_of_n_distribution(scores: torch.Tensor, probs: torch.Tensor, n: int) -> torch.Tensor:
    """Exact distribution of the best of n i.i.d. draws from ``probs`` ranked by ``scores``.

    ``P(x) = F(x)^n - F(x^-)^n`` with ``F(x) = sum_{x': score(x') <= score(x)} p(x')``
    (ties broken by index, i.e. as if scores were distinct).

    Args:
        scores: shape (M,).
        probs: pi_ref over the M responses, shape (M,), sums to one.
        n: number of draws >= 1.

    Returns:
        Shape (M,), sums to one.
    """
    order = torch.argsort(scores, stable=True)
    cdf = probs[order].cumsum(0).clamp(max=1.0)
    previous = torch.cat([cdf.new_zeros(1), cdf[:-1]])
    out = torch.empty_like(probs)
    out[order] = cdf**n - previous**n
    return out


@dataclass(frozen=True)
class OveroptimisationResult:
    """Curves of one seed of the over-optimisation experiment (averaged over contexts).

    Attributes:
        objectives: proxy names (``"mean"``, ``"lcb"``, ``"eu"``, ``"gold"``).
        ns: best-of-n sizes, shape (B,).
        betas: KL weights, shape (G,).
        bon_gold, bon_proxy, bon_kl: best-of-n gold reward, proxy score and
            KL(pi || pi_ref), each objective -> (B,).
        kl_gold, kl_proxy, kl_kl: the same for the KL-regularised policies, -> (G,).
        rare_mass: pi_ref probability that a response contains the rare token.
    """

    objectives: list[str]
    ns: np.ndarray
    betas: np.ndarray
    bon_gold: dict
    bon_proxy: dict
    bon_kl: dict
    kl_gold: dict
    kl_proxy: dict
    kl_kl: dict
    rare_mass: float


def _kl(q: torch.Tensor, p: torch.Tensor) -> float:
    keep = q > 0
    return float((q[keep] * (q[keep].log() - p[keep].log())).sum())


def run_overoptimisation(
    seed: int,
    *,
    num_comparisons: int = 100,
    pool_size: int = 300,
    num_draws: int = 1000,
    k: float = 1.0,
    risk_aversion: float = 1.0,
    ns=tuple(2**i for i in range(11)),
    betas=BETAS,
    env_options: dict | None = None,
) -> OveroptimisationResult:
    """Run one seed of the RLHF over-optimisation experiment (see module docstring).

    Args:
        seed: seeds the environment, the comparison pool, the labels and the fit.
        num_comparisons: N Bradley-Terry comparisons (beta = 1, labelled by the gold reward).
        pool_size: responses sampled from pi_ref among which pairs are drawn.
        num_draws: Laplace posterior draws.
        k: standard deviations of the lower confidence bound.
        risk_aversion: lambda of the exponential utility.
        ns: best-of-n sizes.
        betas: KL weights of the KL-regularised policies.
        env_options: keyword arguments of :func:`hacking_token_env`.

    Returns:
        An :class:`OveroptimisationResult`.
    """
    env, rare = hacking_token_env(seed=seed, **(env_options or {}))
    mdp = env.mdp
    generator = torch.Generator().manual_seed(seed)
    zero = torch.zeros(mdp.num_states, mdp.num_actions, dtype=mdp.dtype)
    # zero reward: the maxent distribution is the base measure pi_ref itself
    pool = sample_maxent_trajectories(mdp, zero, pool_size, generator=generator)
    model = PreferenceModel(env.reward_model, pool)
    data = simulate_comparisons(model, env.true_weights, num_comparisons, seed=seed)
    posterior = fit(
        model, data, method="laplace", optimizer="lbfgs", num_samples=num_draws, seed=seed
    )
    theta = next(iter(posterior.flat_samples().values())).detach()  # (N, K)
    draws = env.reward_model.step_rewards(theta)  # (N, S, A)
    gold_rewards = env.true_step_rewards()
    objectives = ["mean", "lcb", "eu", "gold"]
    ns = np.asarray(ns, dtype=int)
    betas = np.asarray(betas, dtype=float)
    curves = {name: {o: np.zeros(len(grid)) for o in objectives}
              for name, grid in (("bon_gold", ns), ("bon_proxy", ns), ("bon_kl", ns),
                                 ("kl_gold", betas), ("kl_proxy", betas), ("kl_kl", betas))}
    rare_mass = 0.0
    for context in range(env.num_contexts):
        responses = enumerate_trajectories(mdp, env.state(context, None))
        states, actions = responses[..., 0], responses[..., :-1, 1]
        probs = env.reference_log_prob(responses).exp()
        rare_mass += float(probs[(actions == rare).any(-1)].sum()) / env.num_contexts
        returns = trajectory_returns(draws.unsqueeze(1), states, actions)  # (N, M)
        gold = trajectory_returns(gold_rewards, states, actions)  # (M,)
        mean = returns.mean(0)
        log_n = torch.log(torch.tensor(float(returns.shape[0]), dtype=returns.dtype))
        scores = {
            "mean": mean,
            "lcb": mean - k * returns.std(0),
            "eu": -(torch.logsumexp(-risk_aversion * returns, 0) - log_n) / risk_aversion,
            "gold": gold,
        }
        for o, score in scores.items():
            for i, n in enumerate(ns):
                q = best_of_n_distribution(score, probs, int(n))
                curves["bon_gold"][o][i] += float(q @ gold) / env.num_contexts
                curves["bon_proxy"][o][i] += float(q @ score) / env.num_contexts
                curves["bon_kl"][o][i] += _kl(q, probs) / env.num_contexts
            for i, beta in enumerate(betas):
                q = torch.softmax(probs.log() + score / beta, 0)
                curves["kl_gold"][o][i] += float(q @ gold) / env.num_contexts
                curves["kl_proxy"][o][i] += float(q @ score) / env.num_contexts
                curves["kl_kl"][o][i] += _kl(q, probs) / env.num_contexts
    return OveroptimisationResult(objectives, ns, betas, rare_mass=rare_mass, **curves)
