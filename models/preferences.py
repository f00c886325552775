r"""Preference likelihoods (Bradley-Terry, Plackett-Luce) and the preference models.

Items are trajectories of a tabular MDP; an item's utility is its return under the SAME
reward models as the demonstrations (:mod:`bayes_irl.rewards`):

    R_theta(x) = sum_{t < L} r_theta(s_t, a_t)          (step rewards r[..., s, a])

**Bradley-Terry** (Bradley & Terry 1952) with rationality temperature beta: for a pair
(x_1, x_2) and outcome y = 1 when x_1 is preferred, y = 0 when x_2 is,

    P(y = 1) = sigma(beta (R(x_1) - R(x_2)))
             = exp(beta R(x_1)) / (exp(beta R(x_1)) + exp(beta R(x_2))).

This IS the maxent model P(x | C) ∝ exp(beta R(x)) on the two-element choice set
C = {x_1, x_2} with uniform base measure (:func:`choice_set_mdp` makes that executable).
beta is not a free scale: with beta fixed, the comparisons identify the scale of theta.

Ties (outcome y = 0.5), with pi_i = exp(beta R(x_i)) and Delta = beta (R(x_1) - R(x_2)):

* Davidson (1970), nu >= 0 (``tie_strength``):
  P(1) = pi_1 / D, P(0) = pi_2 / D, P(tie) = nu sqrt(pi_1 pi_2) / D,
  D = pi_1 + pi_2 + nu sqrt(pi_1 pi_2).  nu = 0 recovers Bradley-Terry.
* Rao & Kupper (1967), theta_RK >= 1 (``tie_strength``):
  P(1) = sigma(Delta - log theta_RK), P(0) = sigma(-Delta - log theta_RK),
  P(tie) = (theta_RK^2 - 1) P(1) P(0).  theta_RK = 1 recovers Bradley-Terry.

**Plackett-Luce** (Luce 1959, Plackett 1975) for a ranking rho of k items (best first):

    log P(rho) = sum_{j=1}^{k} [ beta u_{rho_j} - log sum_{l >= j} exp(beta u_{rho_l}) ],

i.e. a sequence of maxent choices from the shrinking set of remaining items; with k = 2 it
is Bradley-Terry.

Shapes: :class:`BradleyTerry` has ``batch_shape = broadcast(first, second, beta)``
(one entry per comparison), ``event_shape = ()``; values are float outcomes in
{0, 1} (or {0, 0.5, 1} with ties). :class:`PlackettLuce` has
``batch_shape = utilities.shape[:-1]`` and ``event_shape = (k,)``; a value is a
permutation of 0..k-1 (int64), the positions of the items in ``utilities`` from best to
worst.

The models follow the protocol of :mod:`bayes_irl.models.demonstrations`, so
``bayes_irl.inference.fit`` and ``Posterior.to_inference_data`` work unchanged; the
log-likelihood group has one value per comparison (or ranking).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyro
import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all

from bayes_irl.mdp import TabularMDP
from bayes_irl.models.demonstrations import DemonstrationModel
from bayes_irl.rewards import RewardModel
from bayes_irl.trajectories import TrajectoryBatch, as_int_tensor

__all__ = [
    "BradleyTerry",
    "PlackettLuce",
    "PairwiseComparisons",
    "Rankings",
    "PreparedPreferences",
    "PreferenceModel",
    "CombinedModel",
    "trajectory_returns",
    "choice_set_mdp",
    "simulate_comparisons",
    "simulate_rankings",
    "TIE",
]

TIE = 0.5
"""Outcome value of a tie (first preferred = 1.0, second preferred = 0.0)."""

_TIE_MODELS = (None, "davidson", "rao_kupper")


# ---------------------------------------------------------------------------- constraints
class _PairwiseOutcome(constraints.Constraint):
    """Outcomes in {0, 1}, or {0, 0.5, 1} when ties are modelled."""

    is_discrete = True
    event_dim = 0

    def __init__(self, allow_ties: bool) -> None:
        self.allow_ties = allow_ties
        super().__init__()

    def check(self, value: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ok = (value == 0) | (value == 1)
        if self.allow_ties:
            ok = ok | (value == TIE)
        return ok


class _Permutation(constraints.Constraint):
    """Permutations of 0..k-1 along the last dimension."""

    is_discrete = True
    event_dim = 1

    def __init__(self, size: int) -> None:
        self.size = size
        super().__init__()

    def check(self, value: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if value.shape[-1:] != (self.size,) or value.is_floating_point():
            return torch.zeros(value.shape[:-1], dtype=torch.bool, device=value.device)
        target = torch.arange(self.size, device=value.device)
        return (value.sort(-1).values == target).all(-1)


# ---------------------------------------------------------------------------- distributions
class BradleyTerry(TorchDistribution):
    """Bradley-Terry pairwise-comparison likelihood, optionally with ties.

    Args:
        first: utility (return) of the first item, shape ``batch_shape``.
        second: utility of the second item, broadcastable with ``first``.
        beta: rationality temperature beta > 0 (scalar or broadcastable); beta -> inf is a
            perfectly rational judge, beta -> 0 a coin flip.
        ties: ``None`` (no ties), ``"davidson"`` or ``"rao_kupper"``.
        tie_strength: nu >= 0 (Davidson) or theta_RK >= 1 (Rao-Kupper); required with ties.
        validate_args: check arguments and values.

    A value is a float outcome per comparison: 1.0 = first preferred, 0.0 = second
    preferred, 0.5 (:data:`TIE`) = tie. ``log_prob(value)`` has shape
    ``broadcast(value.shape, batch_shape)``.

    Example:
        >>> import torch
        >>> d = BradleyTerry(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]))
        >>> d.log_prob(torch.tensor([1.0, 0.0])).exp()
        tensor([0.7311, 0.5000])
    """

    arg_constraints = {
        "first": constraints.real,
        "second": constraints.real,
        "beta": constraints.positive,
        "tie_strength": constraints.nonnegative,
    }
    has_rsample = False

    def __init__(
        self,
        first,
        second,
        *,
        beta=1.0,
        ties: str | None = None,
        tie_strength=None,
        validate_args: bool | None = None,
    ) -> None:
        if ties not in _TIE_MODELS:
            raise ValueError(f"ties must be one of {_TIE_MODELS}; got {ties!r}")
        if ties is None:
            tie_strength = 0.0 if tie_strength is None else tie_strength
        elif tie_strength is None:
            raise ValueError(f"tie_strength is required with ties={ties!r}")
        self.first, self.second, self.beta, self.tie_strength = broadcast_all(
            first, second, beta, tie_strength
        )
        if ties == "rao_kupper" and validate_args is not False and (self.tie_strength < 1).any():
            raise ValueError(
                "tie_strength must be >= 1 for Rao-Kupper ties (1 = no ties); got min "
                f"{self.tie_strength.min().item():.4g}"
            )
        if validate_args is not False and (
            torch.isnan(self.first).any() or torch.isnan(self.second).any()
        ):
            raise ValueError("first/second utilities contain NaN; check the reward parameters")
        self.ties = ties
        super().__init__(batch_shape=self.first.shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self):  # noqa: D102
        return _PairwiseOutcome(self.ties is not None)

    def expand(self, batch_shape, _instance=None):  # noqa: D102
        new = self._get_checked_instance(BradleyTerry, _instance)
        batch_shape = torch.Size(batch_shape)
        for name in ("first", "second", "beta", "tie_strength"):
            setattr(new, name, getattr(self, name).expand(batch_shape))
        new.ties = self.ties
        super(BradleyTerry, new).__init__(batch_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def outcome_log_probs(self) -> torch.Tensor:
        """Return log P(y) for y = (second, first, tie), shape ``batch_shape + (3,)``.

        Without ties the tie entry is -inf.
        """
        delta = self.beta * (self.first - self.second)
        if self.ties is None:
            tie = torch.full_like(delta, -torch.inf)
            return torch.stack([F.logsigmoid(-delta), F.logsigmoid(delta), tie], -1)
        if self.ties == "davidson":
            half = delta / 2
            log_nu = self.tie_strength.log()
            log_norm = torch.logsumexp(torch.stack([half, -half, log_nu], -1), -1)
            return torch.stack([-half - log_norm, half - log_norm, log_nu - log_norm], -1)
        log_theta = self.tie_strength.log()
        lp_first = F.logsigmoid(delta - log_theta)
        lp_second = F.logsigmoid(-delta - log_theta)
        lp_tie = torch.log(self.tie_strength.square() - 1) + lp_first + lp_second
        return torch.stack([lp_second, lp_first, lp_tie], -1)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Return log P(value), shape ``broadcast(value.shape, batch_shape)``."""
        if self._validate_args:
            self._validate_sample(value)
        table = self.outcome_log_probs()
        value = torch.as_tensor(value, dtype=table.dtype, device=table.device)
        index = torch.where(value == TIE, 2, value.round().long().clamp(0, 1))
        shape = torch.broadcast_shapes(value.shape, self.batch_shape)
        table = table.expand(*shape, 3)
        return table.gather(-1, index.expand(shape).unsqueeze(-1)).squeeze(-1)

    def sample(self, sample_shape=()) -> torch.Tensor:
        """Draw outcomes, shape ``sample_shape + batch_shape`` (global torch RNG)."""
        with torch.no_grad():
            probs = self.outcome_log_probs().exp()
            shape = torch.Size(sample_shape) + self.batch_shape
            flat = probs.expand(*shape, 3).reshape(-1, 3)
            index = torch.multinomial(flat, 1).squeeze(-1)
            codes = torch.tensor([0.0, 1.0, TIE], dtype=probs.dtype, device=probs.device)
            return codes[index].reshape(shape)

    @property
    def mean(self) -> torch.Tensor:
        """Expected outcome E[y] = P(1) + 0.5 P(tie), shape ``batch_shape``."""
        p = self.outcome_log_probs().exp()
        return p[..., 1] + TIE * p[..., 2]


class PlackettLuce(TorchDistribution):
    """Plackett-Luce ranking likelihood over k items.

    Args:
        utilities: ``u[..., i]``, shape ``batch_shape + (k,)``, k >= 2.
        beta: rationality temperature beta > 0 (scalar).
        validate_args: check arguments and values.

    A value is a permutation rho of 0..k-1 (int64, shape ``... + (k,)``): ``rho[0]`` is the
    position in ``utilities`` of the best item. ``log_prob`` returns
    ``broadcast(value.shape[:-1], batch_shape)``.

    Example:
        >>> import torch
        >>> d = PlackettLuce(torch.tensor([2.0, 0.0, 1.0]))
        >>> d.sample((4,)).shape
        torch.Size([4, 3])
    """

    arg_constraints = {"utilities": constraints.real_vector, "beta": constraints.positive}
    has_rsample = False

    def __init__(self, utilities, *, beta=1.0, validate_args: bool | None = None) -> None:
        utilities = torch.as_tensor(utilities)
        if utilities.dim() < 1 or utilities.shape[-1] < 2:
            raise ValueError(
                f"utilities must have shape (..., k) with k >= 2; got {tuple(utilities.shape)}"
            )
        if validate_args is not False and torch.isnan(utilities).any():
            raise ValueError("utilities contain NaN; check the reward parameters")
        self.utilities = utilities
        self.beta = torch.as_tensor(beta, dtype=utilities.dtype, device=utilities.device)
        if self.beta.dim() != 0:
            raise ValueError(f"beta must be a scalar; got shape {tuple(self.beta.shape)}")
        super().__init__(
            batch_shape=utilities.shape[:-1],
            event_shape=utilities.shape[-1:],
            validate_args=validate_args,
        )

    @constraints.dependent_property(is_discrete=True, event_dim=1)
    def support(self):  # noqa: D102
        return _Permutation(self.event_shape[0])

    def expand(self, batch_shape, _instance=None):  # noqa: D102
        new = self._get_checked_instance(PlackettLuce, _instance)
        batch_shape = torch.Size(batch_shape)
        new.utilities = self.utilities.expand(batch_shape + self.event_shape)
        new.beta = self.beta
        super(PlackettLuce, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Return log P(rho), shape ``broadcast(value.shape[:-1], batch_shape)``."""
        if self._validate_args:
            self._validate_sample(value)
        shape = torch.broadcast_shapes(value.shape[:-1], self.batch_shape) + self.event_shape
        scaled = (self.beta * self.utilities).expand(shape)
        ordered = scaled.gather(-1, value.long().expand(shape))  # utilities best first
        tail = torch.logcumsumexp(ordered.flip(-1), -1).flip(-1)  # log sum_{l >= j}
        return (ordered - tail).sum(-1)

    def sample(self, sample_shape=()) -> torch.Tensor:
        """Draw rankings by the Gumbel-max trick, shape ``sample_shape + batch + (k,)``."""
        with torch.no_grad():
            shape = torch.Size(sample_shape) + self.batch_shape + self.event_shape
            scaled = (self.beta * self.utilities).expand(shape)
            uniform = torch.rand(shape, dtype=scaled.dtype, device=scaled.device)
            gumbel = -torch.log(-torch.log(uniform.clamp_min(torch.finfo(scaled.dtype).tiny)))
            return torch.argsort(scaled + gumbel, dim=-1, descending=True)


# ---------------------------------------------------------------------------- returns
def trajectory_returns(step_rewards: torch.Tensor, trajectories: torch.Tensor) -> torch.Tensor:
    """Return R(x_i) = sum_{t < L_i} r[..., s_t, a_t] for every trajectory.

    Args:
        step_rewards: ``r[..., s, a]``, shape ``batch + (S, A)``.
        trajectories: int64 trajectory encoding, shape ``(m, T + 1, 2)`` (padding -1).

    Returns:
        Returns of shape ``batch + (m,)``.

    Raises:
        ValueError: on a mis-shaped tensor or out-of-range states/actions.
    """
    if not torch.is_tensor(step_rewards) or step_rewards.dim() < 2:
        raise ValueError("step_rewards must be a tensor of shape (..., S, A)")
    if trajectories.dim() != 3 or trajectories.shape[-1] != 2:
        raise ValueError(
            f"trajectories must have shape (m, T + 1, 2); got {tuple(trajectories.shape)}"
        )
    num_states, num_actions = step_rewards.shape[-2:]
    states = trajectories[:, :-1, 0]
    actions = trajectories[:, :-1, 1]
    observed = actions >= 0
    if (states[observed] >= num_states).any() or (actions >= num_actions).any():
        raise ValueError(
            f"trajectories hold states >= S = {num_states} or actions >= A = {num_actions}"
        )
    flat_index = (states.clamp(min=0) * num_actions + actions.clamp(min=0)).to(step_rewards.device)
    flat = step_rewards.reshape(*step_rewards.shape[:-2], num_states * num_actions)
    gathered = flat[..., flat_index]  # batch + (m, T)
    mask = observed.to(step_rewards.device)
    return torch.where(mask, gathered, torch.zeros_like(gathered)).sum(-1)


def choice_set_mdp(num_items: int, *, dtype: torch.dtype = torch.float64) -> TabularMDP:
    """Return the one-step MDP whose trajectories are the choices from a set of items.

    State 0 is the start, state 1 the end; action i means "choose item i". With step
    rewards ``r[0, i] = beta R(x_i)`` (and ``r[1, :] = 0``) the maxent trajectory
    distribution of this MDP is the choice model P(i | C) ∝ exp(beta R(x_i)) with uniform
    base measure: on two items it is Bradley-Terry, and repeated choices without the
    chosen item give Plackett-Luce.

    Args:
        num_items: |C| >= 2.
        dtype: floating dtype.

    Returns:
        A :class:`TabularMDP` with S = 2, A = ``num_items``, horizon 1 and one dummy feature.
    """
    if int(num_items) < 2:
        raise ValueError(f"num_items must be >= 2; got {num_items}")
    successors = torch.ones(2, num_items, 1, dtype=torch.int64)
    return TabularMDP.from_sparse(
        successors=successors,
        successor_probs=torch.ones(2, num_items, 1),
        initial=torch.tensor([1.0, 0.0]),
        features=torch.tensor([[1.0], [0.0]]),
        horizon=1,
        dtype=dtype,
    )


# ---------------------------------------------------------------------------- data
@dataclass(frozen=True, eq=False)
class PairwiseComparisons:
    """Raw pairwise comparisons, validated by :meth:`PreferenceModel.prepare_data`.

    Attributes:
        first: the first item of each comparison: trajectories (a :class:`TrajectoryBatch`
            or an int tensor of shape (n, T + 1, 2)) for a model built on an MDP, or item
            indices of shape (n,) for a model built on an item pool.
        second: the second item, same form as ``first``.
        outcomes: shape (n,): 1.0 = first preferred, 0.0 = second preferred, 0.5 = tie.
    """

    first: object
    second: object
    outcomes: object


@dataclass(frozen=True, eq=False)
class Rankings:
    """Raw rankings of k items each (best first).

    Attributes:
        rankings: trajectories of shape (n, k, T + 1, 2) (model built on an MDP) or item
            indices of shape (n, k) (model built on an item pool), best item first.
    """

    rankings: object


@dataclass(frozen=True, eq=False)
class PreparedPreferences:
    """Validated preference data: an item table plus indices into it.

    Attributes:
        items: int64 trajectories of shape (m, T + 1, 2).
        first: int64 (n,) item index of the first item (pairwise) or None.
        second: int64 (n,) item index of the second item (pairwise) or None.
        outcomes: float (n,) outcomes (pairwise) or None.
        choice_sets: int64 (n, k) item indices of each ranked set, sorted (rankings) or None.
        orders: int64 (n, k) permutation of each set, best first (rankings) or None.
    """

    items: torch.Tensor
    first: torch.Tensor | None = None
    second: torch.Tensor | None = None
    outcomes: torch.Tensor | None = None
    choice_sets: torch.Tensor | None = None
    orders: torch.Tensor | None = None

    @property
    def num_observations(self) -> int:
        """Number of comparisons or rankings n."""
        return (self.outcomes if self.outcomes is not None else self.orders).shape[0]

    @property
    def is_pairwise(self) -> bool:
        """True for Bradley-Terry data, False for rankings."""
        return self.outcomes is not None


def _as_trajectories(value, name: str, mdp: TabularMDP | None) -> torch.Tensor:
    if isinstance(value, TrajectoryBatch):
        if mdp is not None:
            value.validate_against(mdp)
        return value.as_tensor()
    tensor = as_int_tensor(value, name, "(trajectory encoding)")
    if tensor.dim() != 3 or tensor.shape[-1] != 2:
        raise ValueError(f"{name} must have shape (n, T + 1, 2); got {tuple(tensor.shape)}")
    return TrajectoryBatch.from_tensor(tensor, mdp=mdp).as_tensor()


# ---------------------------------------------------------------------------- models
class PreferenceModel:
    """Pyro model of pairwise comparisons (Bradley-Terry) or rankings (Plackett-Luce).

        theta ~ prior                     (plate over the D reward parameters)
        R_i = sum_t r_theta(s_t, a_t)      for every item trajectory i
        y_j ~ BradleyTerry(R_first_j, R_second_j; beta)   j = 1..n   (plate "comparisons")

    Args:
        reward_model: the :class:`bayes_irl.RewardModel` (shared with demonstrations).
        mdp_or_items: a :class:`TabularMDP` (the data then carry the item trajectories
            themselves) or a fixed item pool, a :class:`TrajectoryBatch` or int tensor of
            shape (m, T + 1, 2) (the data then carry item indices).
        beta: rationality temperature > 0 (fixed, so theta's scale is identified).
        likelihood: ``"bradley_terry"`` (pairs) or ``"plackett_luce"`` (rankings).
        ties: ``None``, ``"davidson"`` or ``"rao_kupper"`` (Bradley-Terry only).
        tie_strength: nu >= 0 (Davidson) or theta_RK >= 1 (Rao-Kupper).
        subsample_size: comparisons per SVI step (``None`` = all).

    Example:
        >>> from bayes_irl import GridWorld
        >>> world = GridWorld.create(size=3, horizon=4, seed=0)
        >>> items = world.sample_demonstrations(10, seed=1)
        >>> model = PreferenceModel(world.reward_model, items)
        >>> data = simulate_comparisons(model, world.true_weights, 25, seed=0)
        >>> model.prepare_data(data).num_observations
        25
    """

    observed_site = "preferences"

    def __init__(
        self,
        reward_model: RewardModel,
        mdp_or_items,
        *,
        beta: float = 1.0,
        likelihood: str = "bradley_terry",
        ties: str | None = None,
        tie_strength: float | None = None,
        subsample_size: int | None = None,
    ) -> None:
        if not isinstance(reward_model, RewardModel):
            raise ValueError(
                f"reward_model must be a bayes_irl.RewardModel; got {type(reward_model).__name__}"
            )
        if likelihood not in ("bradley_terry", "plackett_luce"):
            raise ValueError(
                f"likelihood must be 'bradley_terry' or 'plackett_luce'; got {likelihood!r}"
            )
        if not (isinstance(beta, (int, float)) and np.isfinite(beta) and beta > 0):
            raise ValueError(f"beta must be a finite float > 0; got {beta!r}")
        if ties not in _TIE_MODELS:
            raise ValueError(f"ties must be one of {_TIE_MODELS}; got {ties!r}")
        if ties is not None and likelihood != "bradley_terry":
            raise ValueError("ties are modelled for likelihood='bradley_terry' only")
        if ties == "davidson" and not (tie_strength is not None and tie_strength >= 0):
            raise ValueError(f"tie_strength must be >= 0 for Davidson ties; got {tie_strength!r}")
        if ties == "rao_kupper" and not (tie_strength is not None and tie_strength >= 1):
            raise ValueError(f"tie_strength must be >= 1 for Rao-Kupper ties; got {tie_strength!r}")
        if subsample_size is not None and int(subsample_size) < 1:
            raise ValueError(f"subsample_size must be a positive int or None; got {subsample_size}")
        self.reward_model = reward_model
        features = getattr(reward_model, "features", None)
        dtype = features.dtype if torch.is_tensor(features) else torch.float64
        probe = reward_model.step_rewards(torch.zeros(reward_model.num_params, dtype=dtype))
        self.num_states, self.num_actions = probe.shape[-2:]
        if isinstance(mdp_or_items, TabularMDP):
            self.mdp, self.items = mdp_or_items, None
            if (self.mdp.num_states, self.mdp.num_actions) != (self.num_states, self.num_actions):
                raise ValueError(
                    f"mdp has (S, A) = ({self.mdp.num_states}, {self.mdp.num_actions}) but the "
                    f"reward model gives ({self.num_states}, {self.num_actions})"
                )
        else:
            self.mdp = None
            items = _as_trajectories(mdp_or_items, "mdp_or_items", None)
            self._check_item_ranges(items, "mdp_or_items")
            self.items = items
        self.beta = float(beta)
        self.likelihood = likelihood
        self.ties, self.tie_strength = ties, tie_strength
        self.subsample_size = subsample_size

    def _check_item_ranges(self, items: torch.Tensor, name: str) -> None:
        states, actions = items[..., 0], items[..., :-1, 1]
        if (states >= self.num_states).any() or (actions >= self.num_actions).any():
            raise ValueError(
                f"{name} holds states >= S = {self.num_states} or actions >= A = "
                f"{self.num_actions} of the reward model"
            )

    # ------------------------------------------------------------------ protocol
    @property
    def observed_sites(self) -> dict[str, str]:
        """Observed site name -> ArviZ dimension of its per-item log-likelihood."""
        dim = "comparison" if self.likelihood == "bradley_terry" else "ranking"
        return {self.observed_site: dim}

    @property
    def latent_dims(self) -> dict[str, tuple[str, list[str]]]:
        """Latent site name -> (dimension name, coordinate labels)."""
        rm = self.reward_model
        return {rm.site_name: (rm.dim_name, list(rm.param_names))}

    def prepare_data(self, data) -> PreparedPreferences:
        """Validate raw preferences and return them as an item table plus indices.

        Args:
            data: :class:`PairwiseComparisons` (Bradley-Terry) or :class:`Rankings`
                (Plackett-Luce), or an already prepared :class:`PreparedPreferences`.

        Returns:
            The :class:`PreparedPreferences`.

        Raises:
            ValueError: for the wrong data type, mismatched shapes, out-of-range indices,
                NaN or outcomes outside {0, 1} (or 0.5 without a tie model).
        """
        if isinstance(data, PreparedPreferences):
            return data
        if self.likelihood == "bradley_terry":
            if not isinstance(data, PairwiseComparisons):
                raise ValueError(
                    "data must be PairwiseComparisons for likelihood='bradley_terry'; got "
                    f"{type(data).__name__}"
                )
            return self._prepare_pairs(data)
        if not isinstance(data, Rankings):
            raise ValueError(
                f"data must be Rankings for likelihood='plackett_luce'; got {type(data).__name__}"
            )
        return self._prepare_rankings(data)

    def _prepare_pairs(self, data: PairwiseComparisons) -> PreparedPreferences:
        outcomes = torch.as_tensor(np.asarray(data.outcomes, dtype=np.float64))
        if outcomes.dim() != 1 or outcomes.numel() == 0:
            raise ValueError(f"outcomes must have shape (n,), n >= 1; got {tuple(outcomes.shape)}")
        if torch.isnan(outcomes).any():
            raise ValueError("outcomes contain NaN; use 1.0, 0.0 or 0.5 (tie)")
        allowed = (outcomes == 0) | (outcomes == 1)
        if self.ties is not None:
            allowed = allowed | (outcomes == TIE)
        if not allowed.all():
            i = int((~allowed).nonzero()[0, 0])
            expected = "{0, 1, 0.5}" if self.ties is not None else "{0, 1} (ties need ties=...)"
            raise ValueError(f"outcomes must lie in {expected}; outcomes[{i}] = {outcomes[i]}")
        n = outcomes.shape[0]
        if self.items is None:
            first = _as_trajectories(data.first, "first", self.mdp)
            second = _as_trajectories(data.second, "second", self.mdp)
            if first.shape[0] != n or second.shape[0] != n:
                raise ValueError(
                    f"first and second must hold n = {n} trajectories (one per outcome); got "
                    f"{first.shape[0]} and {second.shape[0]}"
                )
            items = torch.cat([first, second])
            index = torch.arange(n)
            first_i, second_i = index, index + n
        else:
            items = self.items
            first_i = self._check_indices(data.first, "first", (n,))
            second_i = self._check_indices(data.second, "second", (n,))
        return PreparedPreferences(
            items=items,
            first=first_i,
            second=second_i,
            outcomes=outcomes,
        )

    def _check_indices(self, value, name: str, shape: tuple[int, ...]) -> torch.Tensor:
        index = as_int_tensor(value, name, f"of shape {shape}")
        if tuple(index.shape) != shape:
            raise ValueError(
                f"{name} must be item indices of shape {shape}; got {tuple(index.shape)}"
            )
        m = self.items.shape[0]
        if (index < 0).any() or (index >= m).any():
            raise ValueError(f"{name} must index the m = {m} items, i.e. lie in [0, {m})")
        return index

    def _prepare_rankings(self, data: Rankings) -> PreparedPreferences:
        if self.items is None:
            if isinstance(data.rankings, TrajectoryBatch):
                raise ValueError("rankings must have shape (n, k, T + 1, 2)")
            raw = as_int_tensor(data.rankings, "rankings", "(n, k, T + 1, 2)")
            if raw.dim() != 4 or raw.shape[-1] != 2 or raw.shape[1] < 2:
                raise ValueError(
                    f"rankings must have shape (n, k, T + 1, 2), k >= 2; got {tuple(raw.shape)}"
                )
            n, k = raw.shape[:2]
            items = _as_trajectories(raw.reshape(n * k, *raw.shape[2:]), "rankings", self.mdp)
            ranked = torch.arange(n * k).reshape(n, k)
        else:
            items = self.items
            ranked = as_int_tensor(data.rankings, "rankings", "of shape (n, k)")
            if ranked.dim() != 2 or ranked.shape[1] < 2 or ranked.shape[0] == 0:
                raise ValueError(
                    f"rankings must be item indices of shape (n, k), k >= 2; got "
                    f"{tuple(ranked.shape)}"
                )
            ranked = self._check_indices(ranked, "rankings", tuple(ranked.shape))
            sorted_sets = ranked.sort(-1).values
            if (sorted_sets[:, 1:] == sorted_sets[:, :-1]).any():
                raise ValueError("rankings must not repeat an item within a ranking")
        choice_sets = ranked.sort(-1).values
        # orders[j, l] = position within choice_sets[j] of the l-th best item
        orders = (choice_sets.unsqueeze(-1) == ranked.unsqueeze(-2)).long().argmax(-2)
        return PreparedPreferences(items=items, choice_sets=choice_sets, orders=orders)

    def item_returns(self, step_rewards: torch.Tensor, data: PreparedPreferences) -> torch.Tensor:
        """Return R of every item, shape ``batch + (m,)`` for step rewards ``batch + (S, A)``."""
        return trajectory_returns(step_rewards, data.items.to(step_rewards.device))

    def distribution(
        self, returns: torch.Tensor, data: PreparedPreferences, index: torch.Tensor | None = None
    ) -> TorchDistribution:
        """Return the likelihood of the observations ``index`` given item returns.

        Args:
            returns: item returns, shape ``batch + (m,)``.
            data: the prepared data.
            index: observations to score (int64 (b,)); default all n.

        Returns:
            A :class:`BradleyTerry` with batch ``batch + (b,)`` or a :class:`PlackettLuce`
            with batch ``batch + (b,)`` and event (k,).
        """
        if index is None:
            index = torch.arange(data.num_observations)
        if data.is_pairwise:
            return BradleyTerry(
                returns[..., data.first[index]],
                returns[..., data.second[index]],
                beta=torch.tensor(self.beta, dtype=returns.dtype),
                ties=self.ties,
                tie_strength=None if self.ties is None else float(self.tie_strength),
            )
        return PlackettLuce(returns[..., data.choice_sets[index]], beta=self.beta)

    def observations(self, data: PreparedPreferences, index: torch.Tensor) -> torch.Tensor:
        """Return the observed values at ``index``: outcomes (b,) or orders (b, k)."""
        return data.outcomes[index] if data.is_pairwise else data.orders[index]

    def log_likelihood(self, step_rewards: torch.Tensor, data: PreparedPreferences) -> torch.Tensor:
        """Return log p(y_j | theta) for every observation, shape ``batch + (n,)``."""
        dist_ = self.distribution(self.item_returns(step_rewards, data), data)
        return dist_.log_prob(self.observations(data, torch.arange(data.num_observations)))

    def observe(
        self, step_rewards: torch.Tensor, data: PreparedPreferences, *, subsample: bool = True
    ) -> torch.Tensor:
        """Add the observation plate to the current Pyro program, given step rewards.

        Args:
            step_rewards: ``r[..., s, a]`` drawn by the caller.
            data: the prepared data.
            subsample: use ``subsample_size``.

        Returns:
            The observed values of the (sub)sampled observations.
        """
        size = self.subsample_size if subsample else None
        returns = self.item_returns(step_rewards, data)
        with pyro.plate("comparisons", data.num_observations, subsample_size=size, dim=-1) as idx:
            return pyro.sample(
                self.observed_site,
                self.distribution(returns, data, idx),
                obs=self.observations(data, idx),
            )

    def __call__(self, data: PreparedPreferences, *, subsample: bool = True) -> torch.Tensor:
        """Run the model on prepared data (see :meth:`prepare_data`).

        Returns:
            The observed outcomes (b,) or orders (b, k).
        """
        step_rewards = self.reward_model()
        return self.observe(step_rewards, data, subsample=subsample)

    def arviz_groups(self, data: PreparedPreferences) -> dict:
        """Return observed_data, constant_data, coords and dims for ArviZ."""
        items = data.items.cpu()
        m, horizon_plus_one = items.shape[:2]
        dim = self.observed_sites[self.observed_site]
        if data.is_pairwise:
            observed = {
                "outcomes": data.outcomes.cpu().numpy(),
                "first_item": data.first.cpu().numpy(),
                "second_item": data.second.cpu().numpy(),
            }
            dims = {k: [dim] for k in observed}
        else:
            observed = {
                "choice_sets": data.choice_sets.cpu().numpy(),
                "orders": data.orders.cpu().numpy(),
            }
            dims = {k: [dim, "rank"] for k in observed}
        dims.update({"item_states": ["item", "time"], "item_actions": ["item", "time"]})
        return {
            "observed_data": observed,
            "constant_data": {
                "item_states": items[..., 0].numpy(),
                "item_actions": items[..., 1].numpy(),
                "beta": np.asarray(self.beta),
            },
            "coords": {
                dim: np.arange(data.num_observations),
                "item": np.arange(m),
                "time": np.arange(horizon_plus_one),
            },
            "dims": dims,
        }


class CombinedModel:
    """Demonstrations and preferences explained by ONE reward draw.

        theta ~ prior
        x_i ~ MaxEntTrajectory(r_theta, normaliser)          (plate "demos")
        y_j ~ BradleyTerry / PlackettLuce on returns R_theta  (plate "comparisons")

    Two observed sites, so ArviZ's log_likelihood group has two variables
    (``demonstrations`` over ``demo`` and ``preferences`` over ``comparison``).

    Args:
        demonstrations: a :class:`DemonstrationModel` (its normaliser and options are used).
        preferences: a :class:`PreferenceModel` with the SAME reward model object.

    Data: a dict ``{"demonstrations": ..., "preferences": ...}`` or a pair
    ``(demonstrations, preferences)`` of raw data for the two models.
    """

    def __init__(self, demonstrations: DemonstrationModel, preferences: PreferenceModel) -> None:
        if not isinstance(demonstrations, DemonstrationModel):
            raise ValueError(
                f"demonstrations must be a DemonstrationModel; got {type(demonstrations).__name__}"
            )
        if not isinstance(preferences, PreferenceModel):
            raise ValueError(
                f"preferences must be a PreferenceModel; got {type(preferences).__name__}"
            )
        if demonstrations.reward_model is not preferences.reward_model:
            raise ValueError(
                "demonstrations and preferences must share one reward_model object (one "
                "reward draw explains both)"
            )
        self.demonstrations = demonstrations
        self.preferences = preferences
        self.reward_model = preferences.reward_model
        self.normalizer = demonstrations.normalizer

    @property
    def observed_sites(self) -> dict[str, str]:
        """Both observed sites with their ArviZ dimensions."""
        return {**self.demonstrations.observed_sites, **self.preferences.observed_sites}

    @property
    def latent_dims(self) -> dict[str, tuple[str, list[str]]]:
        """Latent site name -> (dimension name, coordinate labels)."""
        return self.preferences.latent_dims

    def prepare_data(self, data) -> dict:
        """Validate both parts.

        Args:
            data: dict with keys ``"demonstrations"`` and ``"preferences"``, or a pair.

        Returns:
            Dict with the prepared demonstrations (n, T + 1, 2) and PreparedPreferences.
        """
        if isinstance(data, (tuple, list)) and len(data) == 2:
            data = {"demonstrations": data[0], "preferences": data[1]}
        if not isinstance(data, dict) or set(data) != {"demonstrations", "preferences"}:
            raise ValueError(
                "data must be a dict with keys 'demonstrations' and 'preferences' (or a pair)"
            )
        demos = data["demonstrations"]
        if not torch.is_tensor(demos) or demos.dtype != torch.int64:
            demos = self.demonstrations.prepare_data(demos)
        return {
            "demonstrations": demos,
            "preferences": self.preferences.prepare_data(data["preferences"]),
        }

    def __call__(self, data: dict, *, subsample: bool = True):
        """Run the joint model on prepared data; returns (demonstrations, preferences)."""
        step_rewards = self.reward_model()
        x = self.demonstrations.observe(step_rewards, data["demonstrations"], subsample=subsample)
        y = self.preferences.observe(step_rewards, data["preferences"], subsample=subsample)
        return x, y

    def arviz_groups(self, data: dict) -> dict:
        """Merge the ArviZ groups of both parts."""
        a = self.demonstrations.arviz_groups(data["demonstrations"])
        b = self.preferences.arviz_groups(data["preferences"])
        b["coords"].pop("time")
        b["coords"]["item_time"] = np.arange(data["preferences"].items.shape[1])
        for name in ("item_states", "item_actions"):
            b["dims"][name] = ["item", "item_time"]
        return {
            key: {**a[key], **b[key]}
            for key in ("observed_data", "constant_data", "coords", "dims")
        }


# ---------------------------------------------------------------------------- simulation
def _true_returns(model: PreferenceModel, true_weights, items: torch.Tensor) -> torch.Tensor:
    weights = torch.as_tensor(true_weights, dtype=torch.float64)
    if weights.shape != (model.reward_model.num_params,):
        raise ValueError(
            f"true_weights must have shape ({model.reward_model.num_params},); got "
            f"{tuple(weights.shape)}"
        )
    return trajectory_returns(model.reward_model.step_rewards(weights).detach(), items)


def simulate_comparisons(
    model: PreferenceModel,
    true_weights,
    num: int,
    *,
    seed: int = 0,
    items=None,
    pairs=None,
) -> PairwiseComparisons:
    """Simulate comparisons from the true reward with the model's likelihood (seeded).

    Args:
        model: a Bradley-Terry :class:`PreferenceModel` (beta and ties are taken from it).
        true_weights: theta*, shape (D,).
        num: number of comparisons n.
        seed: seeds a private generator (global RNG untouched).
        items: for a model built on an MDP: the candidate trajectories (m, T + 1, 2) or
            a TrajectoryBatch; pairs are drawn among them. Ignored for an item-pool model.
        pairs: optional int (n, 2) item indices; default uniformly random distinct pairs.

    Returns:
        :class:`PairwiseComparisons` in the form the model's ``prepare_data`` expects
        (trajectories for an MDP model, indices for an item-pool model).
    """
    if model.likelihood != "bradley_terry":
        raise ValueError("simulate_comparisons needs a likelihood='bradley_terry' model")
    pool = model.items if model.items is not None else items
    if pool is None:
        raise ValueError("items are required for a model built on an MDP")
    pool = _as_trajectories(pool, "items", model.mdp)
    m = pool.shape[0]
    generator = torch.Generator().manual_seed(seed)
    if pairs is None:
        first = torch.randint(m, (num,), generator=generator)
        second = (first + 1 + torch.randint(m - 1, (num,), generator=generator)) % m
    else:
        pairs = as_int_tensor(pairs, "pairs", f"of shape ({num}, 2)")
        if tuple(pairs.shape) != (num, 2):
            raise ValueError(f"pairs must have shape ({num}, 2); got {tuple(pairs.shape)}")
        first, second = pairs[:, 0], pairs[:, 1]
    returns = _true_returns(model, true_weights, pool)
    bt = BradleyTerry(
        returns[first],
        returns[second],
        beta=model.beta,
        ties=model.ties,
        tie_strength=model.tie_strength,
    )
    probs = bt.outcome_log_probs().exp()
    index = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    outcomes = torch.tensor([0.0, 1.0, TIE], dtype=torch.float64)[index]
    if model.items is not None:
        return PairwiseComparisons(first=first, second=second, outcomes=outcomes)
    return PairwiseComparisons(first=pool[first], second=pool[second], outcomes=outcomes)


def simulate_rankings(
    model: PreferenceModel, true_weights, num: int, *, set_size: int, seed: int = 0, items=None
) -> Rankings:
    """Simulate Plackett-Luce rankings of random k-item sets from the true reward.

    Args:
        model: a ``likelihood="plackett_luce"`` :class:`PreferenceModel`.
        true_weights: theta*, shape (D,).
        num: number of rankings n.
        set_size: k >= 2 items per ranking.
        seed: seeds a private generator.
        items: candidate trajectories for an MDP model (ignored for an item-pool model).

    Returns:
        :class:`Rankings` (indices for an item-pool model, trajectories (n, k, T + 1, 2)
        for an MDP model).
    """
    if model.likelihood != "plackett_luce":
        raise ValueError("simulate_rankings needs a likelihood='plackett_luce' model")
    pool = model.items if model.items is not None else items
    if pool is None:
        raise ValueError("items are required for a model built on an MDP")
    pool = _as_trajectories(pool, "items", model.mdp)
    m = pool.shape[0]
    if not 2 <= set_size <= m:
        raise ValueError(f"set_size must lie in [2, {m}]; got {set_size}")
    generator = torch.Generator().manual_seed(seed)
    sets = torch.stack([torch.randperm(m, generator=generator)[:set_size] for _ in range(num)])
    returns = _true_returns(model, true_weights, pool)[sets] * model.beta
    uniform = torch.rand(sets.shape, generator=generator, dtype=returns.dtype)
    order = torch.argsort(returns - torch.log(-torch.log(uniform)), dim=-1, descending=True)
    ranked = sets.gather(-1, order)
    if model.items is not None:
        return Rankings(rankings=ranked)
    return Rankings(rankings=pool[ranked])
