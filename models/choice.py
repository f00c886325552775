r"""Choice distributions: Bradley-Terry (pairs, with ties) and Plackett-Luce (rankings).

Both are maxent choice models on the utilities (returns) of the items: an item is chosen
from a choice set C with probability P(x | C) ∝ exp(beta R(x)), i.e. the maxent trajectory
distribution of the one-step choice-set MDP (:func:`bayes_irl.choice_sets.choice_set_mdp`).

**Bradley-Terry** (Bradley & Terry 1952) with rationality temperature beta: for a pair
(x_1, x_2) and outcome y = 1 when x_1 is preferred, y = 0 when x_2 is,

    P(y = 1) = sigma(beta (R(x_1) - R(x_2)))
             = exp(beta R(x_1)) / (exp(beta R(x_1)) + exp(beta R(x_2))).

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
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.distributions.utils import broadcast_all

__all__ = ["TIE", "TIE_MODELS", "BradleyTerry", "PlackettLuce"]

TIE = 0.5
"""Outcome value of a tie (first preferred = 1.0, second preferred = 0.0)."""

TIE_MODELS = (None, "davidson", "rao_kupper")
"""The tie models of :class:`BradleyTerry`: none, Davidson (1970), Rao & Kupper (1967)."""


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
        if ties not in TIE_MODELS:
            raise ValueError(f"ties must be one of {TIE_MODELS}; got {ties!r}")
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

    def sample(
        self, sample_shape=(), *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw outcomes, shape ``sample_shape + batch_shape``.

        Args:
            sample_shape: leading shape of the draws.
            generator: private torch generator (default: the global RNG).
        """
        with torch.no_grad():
            probs = self.outcome_log_probs().exp()
            shape = torch.Size(sample_shape) + self.batch_shape
            flat = probs.expand(*shape, 3).reshape(-1, 3)
            index = torch.multinomial(flat, 1, generator=generator).squeeze(-1)
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

    def sample(
        self, sample_shape=(), *, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw rankings by the Gumbel-max trick, shape ``sample_shape + batch + (k,)``.

        Args:
            sample_shape: leading shape of the draws.
            generator: private torch generator (default: the global RNG).
        """
        with torch.no_grad():
            shape = torch.Size(sample_shape) + self.batch_shape + self.event_shape
            scaled = (self.beta * self.utilities).expand(shape)
            uniform = torch.rand(
                shape, dtype=scaled.dtype, device=scaled.device, generator=generator
            )
            gumbel = -torch.log(-torch.log(uniform.clamp_min(torch.finfo(scaled.dtype).tiny)))
            return torch.argsort(scaled + gumbel, dim=-1, descending=True)
