r"""Active preference queries: ask about the pair whose answer tells most about theta.

For a candidate pair (i, j) of items and the current posterior p(theta | D), the expected
information gain of the outcome y is the mutual information

    I(y; theta) = H[ E_theta p(y | theta) ] - E_theta H[ p(y | theta) ],

estimated from (weighted) posterior draws theta_1..theta_N:
p_bar(y) = sum_k w_k p(y | theta_k), EIG = H(p_bar) - sum_k w_k H(p(. | theta_k)) (in nats;
p(y | theta) is the model's Bradley-Terry likelihood, ties included when modelled). It is
high where the draws disagree about the answer (first term) while each draw is confident
(second term) — the BALD criterion of Houlsby et al. (2011).

After each answer the posterior is updated by one of

* ``"laplace"``: ``fit(model, answers, method="laplace", optimizer="lbfgs")``: MAP by
  L-BFGS from the previous MAP, covariance = inverse Hessian of the negative log joint
  (fast, deterministic; for priors on the real line; before the first answer the prior's
  mean and variance);
* ``"importance"``: fixed prior draws reweighted by the likelihood of all answers, one
  factor per answer (fastest; the Kish effective sample size of
  :func:`bayes_irl.inference.diagnostics.importance_diagnostics` shrinks as the posterior
  narrows, see ``ess``);
* ``"fit"``: a full refit with :func:`bayes_irl.inference.fit` (any back-end,
  ``fit_options`` passed through).

Example:
    >>> import torch
    >>> from bayes_irl import GridWorld
    >>> from bayes_irl.models.preferences import PreferenceModel
    >>> world = GridWorld.create(size=3, horizon=4, seed=0)
    >>> model = PreferenceModel(world.reward_model, world.sample_demonstrations(12, seed=1))
    >>> result = run_active_learning(model, world.true_weights, num_queries=3, seed=0)
    >>> result.estimates.shape
    torch.Size([4, 4])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from pyro.util import get_rng_state, set_rng_state

from bayes_irl.inference.diagnostics import importance_diagnostics
from bayes_irl.inference.fit import fit
from bayes_irl.models.choice import BradleyTerry
from bayes_irl.models.preference_data import PairwiseComparisons
from bayes_irl.models.preferences import PreferenceModel
from bayes_irl.validation import positive_int

__all__ = [
    "expected_information_gain",
    "ActivePreferenceLearner",
    "ActiveLearningResult",
    "run_active_learning",
    "all_pairs",
    "cosine_similarity",
]

Update = Literal["laplace", "importance", "fit"]
_UPDATES = ("laplace", "importance", "fit")
_STRATEGIES = ("eig", "random")


def all_pairs(num_items: int) -> torch.Tensor:
    """Return every unordered pair (i < j) of ``num_items`` items, shape (m(m-1)/2, 2)."""
    num_items = positive_int(num_items, "num_items", minimum=2)
    return torch.combinations(torch.arange(num_items), r=2)


def _entropy(log_probs: torch.Tensor) -> torch.Tensor:
    probs = log_probs.exp()
    return -torch.where(probs > 0, probs * log_probs, torch.zeros_like(probs)).sum(-1)


def expected_information_gain(
    returns: torch.Tensor,
    pairs: torch.Tensor,
    *,
    beta: float = 1.0,
    log_weights: torch.Tensor | None = None,
    ties: str | None = None,
    tie_strength: float | None = None,
) -> torch.Tensor:
    """Estimate I(y; theta) for every candidate pair from posterior draws.

    Args:
        returns: item returns under each draw, ``R[k, i]``, shape (N, m).
        pairs: candidate pairs (P, 2) of item indices.
        beta: Bradley-Terry rationality temperature.
        log_weights: optional (N,) unnormalised log-weights of the draws (equal weights by
            default).
        ties: tie model of the likelihood (``None``, ``"davidson"``, ``"rao_kupper"``).
        tie_strength: its parameter.

    Returns:
        EIG in nats, shape (P,); in [0, log 2] without ties.

    Raises:
        ValueError: on mis-shaped inputs or NaN returns.
    """
    if returns.dim() != 2:
        raise ValueError(f"returns must have shape (N, m); got {tuple(returns.shape)}")
    if torch.isnan(returns).any():
        raise ValueError("returns contain NaN")
    if pairs.dim() != 2 or pairs.shape[-1] != 2:
        raise ValueError(f"pairs must have shape (P, 2); got {tuple(pairs.shape)}")
    num = returns.shape[0]
    if log_weights is None:
        weights = torch.full((num,), 1.0 / num, dtype=returns.dtype)
    else:
        if log_weights.shape != (num,):
            raise ValueError(
                f"log_weights must have shape ({num},); got {tuple(log_weights.shape)}"
            )
        weights = torch.softmax(log_weights.to(returns.dtype), 0)
    bt = BradleyTerry(returns[:, pairs[:, 0]], returns[:, pairs[:, 1]], beta=beta, ties=ties,
                      tie_strength=tie_strength)
    log_p = bt.outcome_log_probs()  # (N, P, 3)
    mean_p = torch.einsum("k,kpy->py", weights, log_p.exp())
    marginal = _entropy(torch.log(mean_p.clamp_min(torch.finfo(mean_p.dtype).tiny)))
    conditional = torch.einsum("k,kp->p", weights, _entropy(log_p))
    return (marginal - conditional).clamp_min(0.0)


def cosine_similarity(estimate: torch.Tensor, truth: torch.Tensor) -> float:
    """Return cos(angle) between two weight vectors of shape (D,)."""
    return float(torch.dot(estimate, truth) / (estimate.norm() * truth.norm()).clamp_min(1e-300))


class ActivePreferenceLearner:
    """Sequential design of pairwise queries over a fixed item pool.

    Args:
        model: a Bradley-Terry :class:`PreferenceModel` built on an item pool.
        update: posterior update after each answer (see module docstring).
        num_draws: posterior draws used for the EIG (and, for ``"importance"``, the number
            of prior draws that are reweighted).
        candidates: candidate pairs (P, 2); default every pair of the pool.
        fit_options: options for :func:`bayes_irl.inference.fit`: for ``update="fit"``
            e.g. ``{"method": "svi", "num_steps": 500}``; for ``update="laplace"`` extra
            options of the Laplace back-end (e.g. ``{"max_iter": 100}``).
        seed: seeds the draws and random queries (private generator).
    """

    def __init__(
        self,
        model: PreferenceModel,
        *,
        update: Update = "laplace",
        num_draws: int = 500,
        candidates: torch.Tensor | None = None,
        fit_options: dict | None = None,
        seed: int = 0,
    ) -> None:
        if not isinstance(model, PreferenceModel) or model.items is None:
            raise ValueError("model must be a PreferenceModel built on an item pool")
        if model.likelihood != "bradley_terry":
            raise ValueError("active queries need likelihood='bradley_terry'")
        if model.has_latent_judge:
            raise ValueError(
                "active queries need a fixed beta and tie strength (no beta_prior/tie_prior)"
            )
        if update not in _UPDATES:
            raise ValueError(f"update must be one of {_UPDATES}; got {update!r}")
        num_draws = positive_int(num_draws, "num_draws", minimum=2)
        m = model.items.shape[0]
        self.candidates = all_pairs(m) if candidates is None else torch.as_tensor(candidates)
        if self.candidates.dim() != 2 or self.candidates.shape[1] != 2:
            raise ValueError(
                f"candidates must have shape (P, 2); got {tuple(self.candidates.shape)}"
            )
        if (self.candidates < 0).any() or (self.candidates >= m).any():
            raise ValueError(f"candidates must index the m = {m} items")
        self.model, self.update, self.num_draws = model, update, int(num_draws)
        self.fit_options = dict(fit_options or {})
        self.generator = torch.Generator().manual_seed(seed)
        self.seed = seed
        self.first: list[int] = []
        self.second: list[int] = []
        self.outcomes: list[float] = []
        rm = model.reward_model
        self._prepared = None
        self._num_params = rm.num_params
        self._map = torch.zeros(rm.num_params, dtype=torch.float64)
        self._cov = torch.eye(rm.num_params, dtype=torch.float64)
        if update == "laplace":
            if rm.prior.support is not torch.distributions.constraints.real:
                raise ValueError(
                    "update='laplace' needs a prior on the real line; use 'importance'"
                )
            # no answers yet: the posterior is the prior (its mean and variance)
            self._map = rm.prior.mean.detach().to(torch.float64).expand(rm.num_params).clone()
            self._cov = torch.diag(rm.prior.variance.detach().to(torch.float64)
                                   .expand(rm.num_params))
        elif update == "importance":
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                self._prior_draws = rm.prior.sample((self.num_draws,)).to(torch.float64)
            self._prior_returns = self._returns(self._prior_draws)
            self._log_weights = torch.zeros(self.num_draws, dtype=torch.float64)
        self._fit_draws: torch.Tensor | None = None
        self._pending = 0  # answers recorded but not yet in the posterior

    # ------------------------------------------------------------------ posterior
    def _returns(self, theta: torch.Tensor) -> torch.Tensor:
        """Item returns R[..., i] of the pool, shape ``theta.shape[:-1] + (m,)``."""
        return self.model.returns(theta, self.model.items).detach()

    def _data(self) -> PairwiseComparisons:
        return PairwiseComparisons(
            first=torch.tensor(self.first, dtype=torch.int64),
            second=torch.tensor(self.second, dtype=torch.int64),
            outcomes=torch.tensor(self.outcomes, dtype=torch.float64),
        )

    def _neg_log_joint(self, theta: torch.Tensor) -> torch.Tensor:
        """-log p(theta, answers) (up to a constant) for theta of shape (D,)."""
        rm = self.model.reward_model
        value = -rm.prior.log_prob(theta).sum()
        if self._prepared is not None:
            value = value - self.model.log_likelihood(theta, self._prepared).sum()
        return value

    def _laplace(self) -> None:
        """Refit the Laplace approximation with the back-end, warm-started at the last MAP."""
        site = self.model.reward_model.site_name
        options = {"max_iter": 200, **self.fit_options}
        rng_state = get_rng_state()  # fit seeds the global RNGs; restore them
        try:
            post = fit(self.model, self._prepared, method="laplace", optimizer="lbfgs",
                       init_values={site: self._map}, num_samples=1,
                       seed=self.seed + len(self.outcomes), progress_bar=False, **options)
        finally:
            set_rng_state(rng_state)
        gaussian = post.extra["guide"].get_posterior()  # N(MAP, inverse Hessian)
        self._map = gaussian.loc.detach().to(torch.float64).clone()
        self._cov = gaussian.covariance_matrix.detach().to(torch.float64)

    def posterior_draws(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Return ``(draws (N, D), log_weights (N,) or None)`` of the current posterior."""
        if self.update == "importance":
            return self._prior_draws, self._log_weights
        if self.update == "fit" and self._fit_draws is not None:
            return self._fit_draws, None
        if self.update == "fit":  # no data yet: the prior
            with torch.random.fork_rng():
                torch.manual_seed(self.seed)
                draws = self.model.reward_model.prior.sample((self.num_draws,))
            return draws.to(torch.float64), None
        chol = torch.linalg.cholesky(self._cov)
        z = torch.randn(self.num_draws, self._num_params, generator=self.generator,
                        dtype=torch.float64)
        return self._map + z @ chol.T, None

    def posterior_entropy(self) -> float:
        """Differential entropy (nats) of the Gaussian fitted to the current posterior.

        ``0.5 log det(2 pi e Sigma)``: Sigma is the Laplace covariance, or the (weighted)
        covariance of the draws for the other updates. It falls as answers accumulate,
        which makes it a stop rule for query collection.
        """
        if self.update == "laplace":
            cov = self._cov
        else:
            draws, log_w = self.posterior_draws()
            w = (torch.full((draws.shape[0],), 1.0 / draws.shape[0], dtype=draws.dtype)
                 if log_w is None else torch.softmax(log_w, 0))
            centred = draws - w @ draws
            cov = (centred * w[:, None]).T @ centred
        d = cov.shape[0]
        return 0.5 * float(torch.logdet(cov) + d * (1.0 + torch.log(torch.tensor(2 * torch.pi))))

    def posterior_mean(self) -> torch.Tensor:
        """Return the current estimate of theta (posterior mean; the MAP for Laplace), (D,)."""
        if self.update == "laplace":
            return self._map.clone()
        draws, log_w = self.posterior_draws()
        if log_w is None:
            return draws.mean(0)
        return torch.softmax(log_w, 0) @ draws

    @property
    def ess(self) -> float:
        """Kish effective sample size of the importance weights (N for other updates)."""
        if self.update != "importance":
            return float(self.num_draws)
        return importance_diagnostics(self._log_weights).ess

    # ------------------------------------------------------------------ design loop
    def scores(self) -> torch.Tensor:
        """Return the EIG of every candidate pair under the current posterior, shape (P,)."""
        draws, log_w = self.posterior_draws()
        returns = self._prior_returns if self.update == "importance" else self._returns(draws)
        return expected_information_gain(
            returns, self.candidates, beta=self.model.beta, log_weights=log_w,
            ties=self.model.ties, tie_strength=self.model.tie_strength,
        )

    def select(self, strategy: Literal["eig", "random"] = "eig") -> tuple[int, int, float]:
        """Pick the next query.

        Args:
            strategy: ``"eig"`` (maximise expected information gain) or ``"random"``.

        Returns:
            ``(i, j, eig)``: the item indices and the EIG of the pair (NaN for random).
        """
        if strategy not in _STRATEGIES:
            raise ValueError(f"strategy must be one of {_STRATEGIES}; got {strategy!r}")
        if strategy == "random":
            k = int(torch.randint(len(self.candidates), (1,), generator=self.generator))
            i, j = self.candidates[k].tolist()
            return i, j, float("nan")
        eig = self.scores()
        k = int(eig.argmax())
        i, j = self.candidates[k].tolist()
        return i, j, float(eig[k])

    def exclude(self, first: int, second: int) -> None:
        """Remove the pair (first, second), in either order, from the candidates.

        For a query the judge skipped: it would otherwise stay the most informative.

        Raises:
            ValueError: if no candidate would remain.
        """
        pairs = self.candidates
        same = ((pairs[:, 0] == first) & (pairs[:, 1] == second)) | (
            (pairs[:, 0] == second) & (pairs[:, 1] == first))
        if same.all():
            raise ValueError("excluding this pair would leave no candidate query")
        self.candidates = pairs[~same]

    def observe(self, first: int, second: int, outcome: float, *, refit: bool = True) -> None:
        """Record an answer and update the posterior.

        Args:
            first: item index i.
            second: item index j.
            outcome: 1.0 (i preferred), 0.0 (j preferred) or 0.5 (tie, if modelled).
            refit: update the posterior now; False only records the answer (call
                :meth:`refit` later, e.g. every k answers).
        """
        self.first.append(int(first))
        self.second.append(int(second))
        self.outcomes.append(float(outcome))
        try:
            prepared = self.model.prepare_data(self._data())
        except ValueError:
            self.first.pop(), self.second.pop(), self.outcomes.pop()
            raise
        self._prepared = prepared
        self._pending += 1
        if refit:
            self.refit()

    def refit(self) -> None:
        """Update the posterior with every answer recorded since the last update."""
        if self._pending == 0:
            return
        prepared = self._prepared
        if self.update == "importance":
            last = torch.arange(len(self.outcomes) - self._pending, len(self.outcomes))
            likelihood = self.model.distribution(self._prior_returns, prepared, last)
            self._log_weights = self._log_weights + likelihood.log_prob(
                prepared.observations(last)).sum(-1)
        elif self.update == "laplace":
            self._laplace()
        else:
            options = {"method": "svi", "num_steps": 500, "progress_bar": False}
            options.update(self.fit_options)
            options.setdefault("num_samples", self.num_draws)
            post = fit(self.model, prepared, seed=self.seed + len(self.outcomes), **options)
            site = self.model.reward_model.site_name
            self._fit_draws = post.flat_samples()[site].detach().to(torch.float64)
        self._pending = 0


@dataclass
class ActiveLearningResult:
    """The record of one query sequence.

    Attributes:
        queries: asked pairs, int64 (n, 2).
        outcomes: answers, float64 (n,) (NaN where a teacher skipped).
        estimates: posterior mean of theta before any query and after each, (n + 1, D).
        eig: EIG of each chosen pair under the posterior at that time, (n,) (NaN for random).
        cosine: cosine between estimate and true theta, (n + 1,).
        error: Euclidean error ||estimate - theta*||, (n + 1,).
    """

    queries: torch.Tensor
    outcomes: torch.Tensor
    estimates: torch.Tensor
    eig: torch.Tensor
    cosine: torch.Tensor
    error: torch.Tensor


def run_active_learning(
    model: PreferenceModel,
    true_weights,
    *,
    num_queries: int,
    strategy: Literal["eig", "random"] = "eig",
    update: Update = "laplace",
    num_draws: int = 500,
    candidates: torch.Tensor | None = None,
    fit_options: dict | None = None,
    seed: int = 0,
    teacher: Callable[[torch.Tensor, torch.Tensor], float | None] | None = None,
) -> ActiveLearningResult:
    """Ask ``num_queries`` questions of a simulated judge with reward theta*.

    By default answers are drawn from the model's own likelihood (Bradley-Terry with the
    model's beta and tie model) at the true weights, with a generator seeded by ``seed``
    (separate from the learner's), so active and random runs with one seed face the same
    judge noise stream. A ``teacher`` (e.g. :meth:`bayes_irl.models.BPrefTeacher.answer`)
    replaces that judge; a query it skips counts as asked, is recorded with outcome NaN and
    is removed from the candidates.

    Args:
        model: a Bradley-Terry :class:`PreferenceModel` on an item pool.
        true_weights: theta*, shape (D,).
        num_queries: n >= 1.
        strategy: ``"eig"`` or ``"random"``.
        update: ``"laplace"``, ``"importance"`` or ``"fit"``.
        num_draws: posterior draws for the EIG.
        candidates: candidate pairs (P, 2); default all pairs.
        fit_options: passed to :func:`bayes_irl.inference.fit` for ``update="fit"``.
        seed: seeds the learner and the judge.
        teacher: optional judge ``teacher(first_item, second_item) -> outcome or None``
            (items (T + 1, 2); None = skipped).

    Returns:
        The :class:`ActiveLearningResult`.
    """
    num_queries = positive_int(num_queries, "num_queries")
    truth = torch.as_tensor(true_weights, dtype=torch.float64)
    if truth.shape != (model.reward_model.num_params,):
        raise ValueError(
            f"true_weights must have shape ({model.reward_model.num_params},); got "
            f"{tuple(truth.shape)}"
        )
    learner = ActivePreferenceLearner(model, update=update, num_draws=num_draws,
                                      candidates=candidates, fit_options=fit_options, seed=seed)
    judge = torch.Generator().manual_seed(10_000 + seed)
    true_returns = learner._returns(truth)
    estimates, eigs, queries, outcomes = [learner.posterior_mean()], [], [], []
    for _ in range(num_queries):
        i, j, eig = learner.select(strategy)
        if teacher is None:
            bt = BradleyTerry(true_returns[i], true_returns[j], beta=model.beta,
                              ties=model.ties, tie_strength=model.tie_strength)
            outcome = float(bt.sample(generator=judge))
        else:
            outcome = teacher(model.items[i], model.items[j])
        if outcome is None:
            learner.exclude(i, j)
            outcome = float("nan")
        else:
            learner.observe(i, j, float(outcome))
        queries.append((i, j))
        outcomes.append(float(outcome))
        eigs.append(eig)
        estimates.append(learner.posterior_mean())
    est = torch.stack(estimates)
    cosine = torch.tensor([cosine_similarity(e, truth) for e in est], dtype=torch.float64)
    return ActiveLearningResult(
        queries=torch.tensor(queries, dtype=torch.int64),
        outcomes=torch.tensor(outcomes, dtype=torch.float64),
        estimates=est,
        eig=torch.tensor(eigs, dtype=torch.float64),
        cosine=cosine,
        error=(est - truth).norm(dim=-1),
    )
