r"""Decisions under the reward posterior: policies, risk-averse planning, return distributions.

A fitted posterior p(theta | data) is used to *act* in a tabular MDP that may differ from
the one the data came from (other dynamics, horizon, start states, or features the data
never exercised): the reward model is evaluated on the target MDP's features, giving
posterior draws of the step rewards ``r_i[s, a]``, i = 1..N (:func:`reward_draws`). For
a policy pi the return under draw i is ``J_i(pi) = sum_t sum_{s,a} d_t^pi(s, a) r_i(s, a)``
(exact, :mod:`bayes_irl.policy_evaluation`), so its posterior return distribution is the
N values J_i(pi) (:func:`return_distribution`), and its regret distribution is
``max_pi' J_i(pi') - J_i(pi)`` (:func:`regret_distribution`). Its lower 5% quantile is a
high-confidence lower bound on the policy's true return (Brown et al. 2020, Bayesian
REX).

Policies:

* posterior-mean reward ``r_bar = (1/N) sum_i r_i``: hard-optimal or soft-optimal policy
  (:func:`mean_reward_policy`). Because J is linear in r, the hard-optimal policy of
  ``r_bar`` *is* the policy that maximises the posterior expected return
  ``(1/N) sum_i J_i(pi)`` over all policies (:func:`expected_return_policy`).
* lower-confidence-bound reward ``r_bar(s, a) - k sd_i r_i(s, a)`` per state-action
  (:func:`lcb_policy`), the "conservative reward" of reward ensembles.
* risk-averse: maximise the lower-tail CVaR_alpha or the alpha-quantile of the N
  returns J_i(pi) over stochastic time-dependent policies (:func:`risk_averse_policy`).
  CVaR of the empirical distribution (Rockafellar & Uryasev 2000):

      CVaR_alpha(J) = (1 / alpha) int_0^alpha F^{-1}(u) du
                    = max_eta  eta - (1 / (alpha N)) sum_i (eta - J_i)_+

  is concave in the occupancy measure d (a minimum of linear functions of d), and the
  occupancy measures form a polytope, so the problem is a linear programme. It is solved
  here by gradient ascent on softmax policy logits through the exact occupancy
  recursion; the tests check the optimum against the linear programme. The alpha-quantile
  is not concave; its optimiser starts from the CVaR policy and finds a local optimum.

:func:`policy_for_risk` dispatches on a short string (``"mean"``, ``"soft"``,
``"lcb:2"``, ``"cvar:0.1"``, ``"quantile:0.1"``), as the CLI does.
:func:`bootstrap_map_ensemble` fits the imitation-style baseline: MAP rewards on
bootstrap resamples of the data, whose spread (mean - k std) is the "conservative" reward
of reward ensembles; unlike the posterior it has no spread along parameters the data do
not inform.

Shapes: reward draws ``r[i, s, a]`` (N, S, A); policies ``pi[t, s, a]`` (T, S, A).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bayes_irl.inference.posterior import Posterior
from bayes_irl.mdp import TabularMDP
from bayes_irl.policy_evaluation import (
    PlanningResult,
    check_policy,
    expected_return,
    hard_optimal_policy,
    optimal_value,
    soft_optimal_policy,
)
from bayes_irl.rewards import LinearReward, RewardModel
from bayes_irl.soft_bellman import check_step_rewards
from bayes_irl.validation import positive_int

__all__ = [
    "ReturnDistribution",
    "RiskAverseResult",
    "RISKS",
    "bootstrap_map_ensemble",
    "cvar",
    "expected_return_policy",
    "lcb_policy",
    "lcb_reward",
    "lower_quantile",
    "mean_reward_policy",
    "parse_risk",
    "policy_for_risk",
    "regret_distribution",
    "return_distribution",
    "reward_draws",
    "risk_averse_policy",
]

RISKS = ("mean", "soft", "lcb", "cvar", "quantile")


# ---------------------------------------------------------------------------- draws
def _theta_draws(source: Any, site: str | None) -> tuple[torch.Tensor, str | None]:
    """Flattened theta draws (N, D) from a Posterior, InferenceData or tensor."""
    if isinstance(source, Posterior):
        flat = source.flat_samples()
        name = site or next(iter(flat))
        if name not in flat:
            raise ValueError(f"site {name!r} is not in the posterior; has {sorted(flat)}")
        return flat[name].detach(), name
    if hasattr(source, "posterior") and hasattr(source.posterior, "data_vars"):
        names = list(source.posterior.data_vars)
        name = site or names[0]
        if name not in names:
            raise ValueError(f"site {name!r} is not in the InferenceData posterior; has {names}")
        values = np.asarray(source.posterior[name].values)
        if values.ndim != 3:
            raise ValueError(f"{name} must have dims (chain, draw, param); got {values.shape}")
        return torch.as_tensor(values.reshape(-1, values.shape[-1])), name
    if torch.is_tensor(source) or isinstance(source, np.ndarray):
        theta = torch.as_tensor(source)
        if theta.dim() != 2:
            raise ValueError(f"theta draws must have shape (N, D); got {tuple(theta.shape)}")
        return theta, site
    raise ValueError(
        "posterior must be a bayes_irl Posterior, an arviz InferenceData or a (N, D) tensor "
        f"of draws; got {type(source).__name__}"
    )


def reward_draws(
    posterior: Any,
    mdp: TabularMDP,
    *,
    reward_model: RewardModel | None = None,
    site: str | None = None,
    max_draws: int | None = None,
) -> torch.Tensor:
    """Return posterior draws of the step rewards on ``mdp``, shape (N, S, A).

    Args:
        posterior: a :class:`Posterior`, an ``arviz.InferenceData`` (e.g. read with
            ``arviz.from_netcdf``) or theta draws of shape (N, D).
        mdp: the MDP to act in (possibly not the one the posterior was fitted on).
        reward_model: a tabular reward model on ``mdp``'s features (``step_rewards``
            theta (..., D) -> (..., S, A)). Default: a :class:`LinearReward` on
            ``mdp.features``, which transfers a linear posterior to a new MDP with the
            same K features.
        site: posterior variable of theta (default: the first one).
        max_draws: keep the first ``max_draws`` draws (thinning is the caller's choice).

    Returns:
        ``r[i, s, a]`` in the MDP's dtype.

    Raises:
        ValueError: for an unknown source or site, or theta of the wrong length D.
    """
    theta, _ = _theta_draws(posterior, site)
    if max_draws is not None:
        theta = theta[: positive_int(max_draws, "max_draws")]
    if not bool(torch.isfinite(theta).all()):
        raise ValueError("posterior draws must be finite (found NaN or inf)")
    if reward_model is None:
        reward_model = LinearReward(mdp.features, feature_names=mdp.feature_names)
    if theta.shape[-1] != reward_model.num_params:
        raise ValueError(
            f"theta draws have D = {theta.shape[-1]} parameters but the reward model on the "
            f"target MDP has {reward_model.num_params}; pass a matching reward_model"
        )
    rewards = reward_model.step_rewards(theta.to(mdp.dtype)).to(mdp.dtype)
    check_step_rewards(mdp, rewards)
    return rewards.detach()


def _check_draws(mdp: TabularMDP, draws: torch.Tensor) -> torch.Tensor:
    check_step_rewards(mdp, draws)
    if draws.dim() != 3:
        raise ValueError(f"reward draws must have shape (N, S, A); got {tuple(draws.shape)}")
    allowed = torch.isfinite(mdp.action_log_base)
    if not bool(torch.isfinite(draws.masked_fill(~allowed, 0.0)).all()):
        raise ValueError("reward draws must be finite (found NaN or inf)")
    return draws.to(mdp.dtype)


# ---------------------------------------------------------------------------- risk measures
def _check_alpha(alpha: float) -> float:
    alpha = float(alpha)
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must lie in (0, 1]; got {alpha!r}")
    return alpha


def cvar(values: torch.Tensor, alpha: float) -> torch.Tensor:
    """Lower-tail CVaR of the empirical distribution of ``values`` along the last dim.

    ``CVaR_alpha = (1 / alpha) int_0^alpha F^{-1}(u) du``: with the N values sorted
    ascending and m = alpha N = j + f (j integer, 0 <= f < 1),
    ``(sum_{i<j} x_(i) + f x_(j)) / m`` — the mean of the alpha N smallest values, with
    the boundary value weighted by its fraction. ``alpha = 1`` gives the mean.

    Args:
        values: shape (..., N).
        alpha: tail mass in (0, 1].

    Returns:
        Shape (...,); differentiable (a weighted sum of order statistics).
    """
    alpha = _check_alpha(alpha)
    num = values.shape[-1]
    ordered = values.sort(-1).values
    mass = alpha * num
    whole = min(int(math.floor(mass + 1e-12)), num)
    weights = values.new_zeros(num)
    weights[:whole] = 1.0
    if whole < num:
        weights[whole] = mass - whole
    return (ordered * weights).sum(-1) / mass


def lower_quantile(values: torch.Tensor, alpha: float) -> torch.Tensor:
    """The alpha-quantile of ``values`` along the last dim (linear interpolation), shape (...,)."""
    return torch.quantile(values, _check_alpha(alpha), dim=-1)


# ---------------------------------------------------------------------------- distributions
@dataclass(frozen=True)
class ReturnDistribution:
    """Posterior distribution of one policy's return (or regret) over N reward draws.

    Attributes:
        values: ``J_i`` (or the regret), shape (N,), one per posterior draw.
    """

    values: torch.Tensor

    @property
    def mean(self) -> float:
        """Posterior mean."""
        return float(self.values.mean())

    @property
    def std(self) -> float:
        """Posterior standard deviation."""
        return float(self.values.std())

    def quantile(self, q: float) -> float:
        """The q-quantile (linear interpolation)."""
        return float(lower_quantile(self.values, q))

    def cvar(self, alpha: float) -> float:
        """Lower-tail CVaR_alpha (see :func:`cvar`)."""
        return float(cvar(self.values, alpha))

    def lower_bound(self, confidence: float = 0.95) -> float:
        """High-confidence lower bound: the (1 - confidence)-quantile."""
        if not 0 < confidence < 1:
            raise ValueError(f"confidence must lie in (0, 1); got {confidence!r}")
        return self.quantile(1 - confidence)


def return_distribution(
    mdp: TabularMDP,
    policy: torch.Tensor,
    draws: torch.Tensor,
    *,
    initial: torch.Tensor | None = None,
) -> ReturnDistribution:
    """Return the posterior distribution of ``policy``'s expected return on ``mdp``.

    Args:
        mdp: the MDP to act in.
        policy: ``pi[t, s, a]`` (T, S, A) or stationary (S, A).
        draws: reward draws ``r[i, s, a]`` (N, S, A) from :func:`reward_draws`.
        initial: optional start distribution (S,).

    Returns:
        A :class:`ReturnDistribution` of the N exact returns ``J_i(pi)``.
    """
    draws = _check_draws(mdp, draws)
    with torch.no_grad():
        return ReturnDistribution(expected_return(mdp, policy, draws, initial=initial))


def regret_distribution(
    mdp: TabularMDP,
    policy: torch.Tensor,
    draws: torch.Tensor,
    *,
    initial: torch.Tensor | None = None,
) -> ReturnDistribution:
    """Posterior distribution of the regret ``max_pi' J_i(pi') - J_i(pi) >= 0``, shape (N,)."""
    draws = _check_draws(mdp, draws)
    with torch.no_grad():
        best = optimal_value(mdp, draws, initial=initial)
        return ReturnDistribution(best - expected_return(mdp, policy, draws, initial=initial))


# ---------------------------------------------------------------------------- policies
def mean_reward_policy(
    mdp: TabularMDP, draws: torch.Tensor, *, soft: bool = False, temperature: float = 1.0
) -> PlanningResult:
    """Hard- (default) or soft-optimal policy of the posterior-mean reward ``r_bar``.

    Args:
        mdp: the MDP to act in.
        draws: reward draws (N, S, A).
        soft: return the soft-optimal (maximum causal entropy) policy of ``r_bar / tau``.
        temperature: tau of the soft policy.

    Returns:
        A :class:`~bayes_irl.policy_evaluation.PlanningResult` (policy (T, S, A)).
    """
    mean = _check_draws(mdp, draws).mean(0)
    if soft:
        return soft_optimal_policy(mdp, mean, temperature=temperature)
    return hard_optimal_policy(mdp, mean)


def expected_return_policy(mdp: TabularMDP, draws: torch.Tensor) -> PlanningResult:
    """The policy maximising the posterior expected return ``(1/N) sum_i J_i(pi)``.

    J is linear in r, so ``(1/N) sum_i J(pi; r_i) = J(pi; r_bar)``: this is the
    hard-optimal policy of the posterior-mean reward, exactly.
    """
    return mean_reward_policy(mdp, draws)


def lcb_reward(draws: torch.Tensor, k: float) -> torch.Tensor:
    """Lower-confidence-bound reward ``mean_i r_i(s, a) - k sd_i r_i(s, a)``, shape (S, A)."""
    if not (isinstance(k, (int, float)) and np.isfinite(k) and k >= 0):
        raise ValueError(f"k must be a finite number >= 0; got {k!r}")
    if draws.dim() != 3 or draws.shape[0] < 2:
        raise ValueError(f"draws must have shape (N >= 2, S, A); got {tuple(draws.shape)}")
    return draws.mean(0) - k * draws.std(0)


def lcb_policy(
    mdp: TabularMDP,
    draws: torch.Tensor,
    *,
    k: float = 1.0,
    soft: bool = False,
    temperature: float = 1.0,
) -> PlanningResult:
    """Optimal policy of the lower-confidence-bound reward ``r_bar - k sd`` (per (s, a)).

    Args:
        mdp: the MDP to act in.
        draws: reward draws (N >= 2, S, A).
        k: number of posterior standard deviations subtracted, >= 0.
        soft: soft-optimal instead of hard-optimal.
        temperature: tau of the soft policy.
    """
    reward = lcb_reward(_check_draws(mdp, draws), k)
    if soft:
        return soft_optimal_policy(mdp, reward, temperature=temperature)
    return hard_optimal_policy(mdp, reward)


@dataclass(frozen=True)
class RiskAverseResult:
    """The result of :func:`risk_averse_policy`.

    Attributes:
        policy: ``pi[t, s, a]``, shape (T, S, A), stochastic in general.
        objective: the risk measure of the returns at ``policy`` (CVaR or quantile).
        returns: ``J_i(pi)`` for every draw, shape (N,).
        history: the objective at every optimisation step, shape (num_steps,).
    """

    policy: torch.Tensor
    objective: float
    returns: torch.Tensor
    history: np.ndarray


def _risk(values: torch.Tensor, risk: str, alpha: float) -> torch.Tensor:
    return cvar(values, alpha) if risk == "cvar" else lower_quantile(values, alpha)


def risk_averse_policy(
    mdp: TabularMDP,
    draws: torch.Tensor,
    *,
    risk: str = "cvar",
    alpha: float = 0.1,
    num_steps: int = 300,
    learning_rate: float = 0.3,
    initial: torch.Tensor | None = None,
    init_policy: torch.Tensor | None = None,
) -> RiskAverseResult:
    """Maximise the lower-tail CVaR_alpha or alpha-quantile of the returns over draws.

    Gradient ascent (Adam, cosine-decayed step size) on the logits of a stochastic
    time-dependent policy ``pi_t(a | s) = softmax(logits[t, s])`` through the exact return
    :func:`~bayes_irl.policy_evaluation.expected_return` of every draw. The best policy
    seen is returned. Deterministic (no sampling): the same inputs give the same policy.

    Args:
        mdp: the MDP to act in.
        draws: reward draws ``r[i, s, a]`` (N, S, A).
        risk: ``"cvar"`` (concave in the occupancy measure: the global optimum up to the
            optimiser's tolerance) or ``"quantile"`` (a local optimum; started from the
            CVaR_alpha policy unless ``init_policy`` is given).
        alpha: tail mass in (0, 1].
        num_steps: optimisation steps >= 1.
        learning_rate: Adam step size > 0.
        initial: optional start distribution (S,).
        init_policy: optional starting policy (T, S, A) (default: the hard-optimal
            policy of the posterior-mean reward, smoothed).

    Returns:
        A :class:`RiskAverseResult`.

    Raises:
        ValueError: for an unknown ``risk``, ``alpha`` outside (0, 1], or bad draws.
    """
    if risk not in ("cvar", "quantile"):
        raise ValueError(f"risk must be 'cvar' or 'quantile'; got {risk!r}")
    alpha = _check_alpha(alpha)
    num_steps = positive_int(num_steps, "num_steps")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0; got {learning_rate!r}")
    draws = _check_draws(mdp, draws)
    if init_policy is None and risk == "quantile":
        init_policy = risk_averse_policy(
            mdp, draws, risk="cvar", alpha=alpha, num_steps=num_steps,
            learning_rate=learning_rate, initial=initial,
        ).policy
    if init_policy is None:
        # the expected-return optimum, mixed with 10% uniform so that every action keeps
        # a gradient (a one-hot start would sit in a flat region of the softmax)
        start = mean_reward_policy(mdp, draws).policy
        start = 0.9 * start + 0.1 / mdp.num_actions
    else:
        start = check_policy(mdp, init_policy).clamp_min(1e-6)
    allowed = torch.isfinite(mdp.action_log_base)
    logits = start.log().masked_fill(~allowed, -torch.inf).detach().clone().requires_grad_()
    optimizer = torch.optim.Adam([logits], lr=learning_rate)
    # cosine decay to zero: CVaR is piecewise linear in the returns, so a constant step
    # size keeps oscillating between the kinks instead of settling on the optimum
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / num_steps))
    )
    best_value, best_logits, history = -math.inf, logits.detach().clone(), []
    for _ in range(num_steps):
        optimizer.zero_grad()
        policy = torch.softmax(logits, -1)
        value = _risk(expected_return(mdp, policy, draws, initial=initial), risk, alpha)
        current = float(value.detach())
        history.append(current)
        if current > best_value:
            best_value, best_logits = current, logits.detach().clone()
        (-value).backward()
        # forbidden actions hold -inf logits and get no gradient; keep them there
        logits.grad = torch.nan_to_num(logits.grad, nan=0.0)
        optimizer.step()
        schedule.step()
    policy = torch.softmax(best_logits, -1)
    with torch.no_grad():
        returns = expected_return(mdp, policy, draws, initial=initial)
        objective = float(_risk(returns, risk, alpha))
    return RiskAverseResult(policy, objective, returns, np.asarray(history))


def parse_risk(spec: str) -> tuple[str, float | None]:
    """Parse ``"mean"``, ``"soft[:tau]"``, ``"lcb:k"``, ``"cvar:alpha"`` or ``"quantile:alpha"``.

    Returns:
        ``(kind, parameter)`` with the parameter None for ``"mean"`` (``"soft"`` defaults
        to tau = 1).

    Raises:
        ValueError: for an unknown kind or a missing / out-of-range parameter.
    """
    kind, _, param = str(spec).partition(":")
    if kind not in RISKS:
        raise ValueError(f"risk must be one of {RISKS} (e.g. 'cvar:0.1'); got {spec!r}")
    if kind == "mean":
        if param:
            raise ValueError(f"risk 'mean' takes no parameter; got {spec!r}")
        return kind, None
    if not param:
        if kind == "soft":
            return kind, 1.0
        raise ValueError(f"risk {kind!r} needs a parameter, e.g. '{kind}:0.1'; got {spec!r}")
    try:
        value = float(param)
    except ValueError as err:
        raise ValueError(f"risk parameter must be a number; got {spec!r}") from err
    if kind in ("cvar", "quantile"):
        _check_alpha(value)
    elif not (np.isfinite(value) and value >= 0 and (kind == "lcb" or value > 0)):
        raise ValueError(f"risk parameter of {kind!r} must be finite and positive; got {spec!r}")
    return kind, value


def policy_for_risk(
    mdp: TabularMDP,
    draws: torch.Tensor,
    risk: str,
    *,
    initial: torch.Tensor | None = None,
    num_steps: int = 300,
) -> torch.Tensor:
    """Return the policy (T, S, A) for a risk specification (see :func:`parse_risk`).

    ``"mean"``: hard-optimal policy of the posterior-mean reward (= maximal posterior
    expected return); ``"soft:tau"``: its soft-optimal policy at temperature tau;
    ``"lcb:k"``: hard-optimal policy of ``r_bar - k sd``; ``"cvar:alpha"`` /
    ``"quantile:alpha"``: :func:`risk_averse_policy`.
    """
    kind, param = parse_risk(risk)
    if kind == "mean":
        return mean_reward_policy(mdp, draws).policy
    if kind == "soft":
        return mean_reward_policy(mdp, draws, soft=True, temperature=param).policy
    if kind == "lcb":
        return lcb_policy(mdp, draws, k=param).policy
    return risk_averse_policy(
        mdp, draws, risk=kind, alpha=param, initial=initial, num_steps=num_steps
    ).policy


# ---------------------------------------------------------------------------- ensembles
def bootstrap_map_ensemble(
    model,
    data,
    *,
    num_members: int = 10,
    seed: int = 0,
    max_iter: int = 200,
) -> torch.Tensor:
    """MAP reward parameters fitted on bootstrap resamples of the data, shape (M, D).

    The imitation-style reward ensemble: each member is the MAP (L-BFGS on the log joint,
    ``fit(..., method="laplace", optimizer="lbfgs")``) on n demonstrations drawn with
    replacement. ``reward_draws(members, mdp)`` then gives its step rewards, and
    :func:`lcb_reward` its "conservative" reward mean - k std.

    Args:
        model: a model whose prepared data is a tensor of n items on dim 0 (e.g.
            :class:`bayes_irl.models.DemonstrationModel`).
        data: the raw data (validated by ``model.prepare_data``).
        num_members: M >= 2.
        seed: seeds the resampling (a private generator).
        max_iter: L-BFGS iterations per member.

    Returns:
        theta of shape (M, D).
    """
    from bayes_irl.inference.fit import fit

    num_members = positive_int(num_members, "num_members", minimum=2)
    prepared = model.prepare_data(data)
    if not torch.is_tensor(prepared):
        raise ValueError("bootstrap_map_ensemble needs a model whose prepared data is a tensor")
    generator = torch.Generator().manual_seed(seed)
    members = []
    num = prepared.shape[0]
    for member in range(num_members):
        index = torch.randint(num, (num,), generator=generator)
        posterior = fit(
            model, prepared[index], method="laplace", optimizer="lbfgs", num_samples=2,
            seed=seed + member, max_iter=max_iter,
        )
        site = next(iter(posterior.samples))
        # the Laplace guide's location is the MAP (unconstrained = constrained for the
        # real-valued reward parameters of the default priors)
        loc = posterior.extra["guide"].loc.detach()
        members.append(loc.reshape(posterior.samples[site].shape[2:]))
    return torch.stack(members)
