r"""The maximum-entropy trajectory distribution as a Pyro ``TorchDistribution``.

For a tabular MDP with base measure b(x) = p0(s_0) prod_t beta(a_t | s_t) p(s_{t+1} | s_t, a_t)
and step rewards r[s, a], the global maxent model (Ziebart et al. 2008) is

    log P(x) = R(x) + log b(x) - log Z,    R(x) = sum_{t<T} r(s_t, a_t).

A trajectory observed only for its first L < T actions (padding -1, see
:mod:`bayes_irl.trajectories`) has the exact marginal

    log P(x_{0:L}) = sum_{t<L} [r + log beta + log p](s_t, a_t, s_{t+1}) + log p0(s_0)
                     + V_L(s_L) - log Z,

where V is the soft value of :mod:`bayes_irl.soft_bellman`. With
``given_initial_state=True`` the start state is a context (conditioned on, not modelled):
log p0(s_0) - log Z is replaced by -V_0(s_0). The causal model (normaliser kind
``"causal"``) uses log P(x) = log p0(s_0) + sum_{t<L} [Q_t - V_t + log p](s_t, a_t, s_{t+1}).

Shapes: ``batch_shape = step_rewards.shape[:-2]``; ``event_shape = (T + 1, 2)``; a value
has shape ``sample_shape + batch_shape + (T + 1, 2)``; ``log_prob`` returns
``sample_shape + batch_shape`` (broadcast against the value's batch dims).
"""

from __future__ import annotations

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints

from bayes_irl.mdp import TabularMDP
from bayes_irl.soft_bellman import sample_maxent_trajectories, step_q_values

__all__ = ["MaxEntTrajectory", "TrajectoryConstraint"]


def _take(table: torch.Tensor, index: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Entries ``table[..., index]`` broadcast to ``shape + (L,)``.

    Args:
        table: ``batch + (M,)`` (batch broadcastable to ``shape``).
        index: int tensor ``value_batch + (L,)`` with entries in [0, M).
        shape: the broadcast of ``batch`` and ``value_batch``.

    With one demonstration dimension and a table shared by all demonstrations (the plate
    case, batch ending in 1) this indexes directly: O(n·L) time and a backward pass that
    accumulates into a table-sized gradient, instead of gathering from the table expanded
    to n copies (whose backward allocated n·M numbers: 1 GB for 500 demonstrations of a
    30x30 grid, H = 60, under the causal model).
    """
    batch = table.shape[:-1]
    if index.dim() == 2 and (len(batch) == 0 or batch[-1] == 1):
        core = table.reshape(*batch[:-1], table.shape[-1]) if len(batch) else table
        return core[..., index].expand(*shape, index.shape[-1])
    size = table.shape[-1]
    return table.expand(*shape, size).gather(-1, index.expand(*shape, index.shape[-1]))


class TrajectoryConstraint(constraints.Constraint):
    """Support of :class:`MaxEntTrajectory`: valid, padded state/action index sequences.

    ``check(value)`` has shape ``value.shape[:-2]``: True where states lie in [0, S) up to
    the length and are -1 after it, actions lie in [0, A) for t < L and are -1 otherwise,
    and L >= 1.
    """

    is_discrete = True
    event_dim = 2

    def __init__(self, num_states: int, num_actions: int, horizon: int) -> None:
        self.num_states, self.num_actions, self.horizon = num_states, num_actions, horizon
        super().__init__()

    def check(self, value: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if value.shape[-2:] != (self.horizon + 1, 2):
            return torch.zeros(value.shape[:-2], dtype=torch.bool, device=value.device)
        states, actions = value[..., 0], value[..., :-1, 1]
        observed = actions >= 0
        lengths = observed.sum(-1)
        steps = torch.arange(self.horizon + 1, device=value.device)
        state_observed = steps <= lengths.unsqueeze(-1)
        # actions must be a contiguous observed prefix: a -1 followed by an action is invalid
        prefix = (observed.long().cumprod(-1) == observed.long()).all(-1)
        ok_actions = torch.where(observed, actions < self.num_actions, actions == -1).all(-1)
        ok_states = torch.where(
            state_observed, (states >= 0) & (states < self.num_states), states == -1
        ).all(-1)
        return prefix & ok_actions & ok_states & (lengths >= 1) & (value[..., -1, 1] == -1)


class MaxEntTrajectory(TorchDistribution):
    """Maxent distribution over trajectories of a tabular MDP.

    Args:
        step_rewards: ``r[..., s, a]``, shape ``batch_shape + (S, A)``.
        normalizer: an exact normaliser (:class:`bayes_irl.inference.ExactNormalizer`) or
            an estimator with ``log_normalizer(step_rewards)`` and an ``mdp`` attribute.
            Its ``kind`` ("global" or "causal") selects the model.
        given_initial_state: condition on s_0 instead of modelling it (contexts).
        validate_args: check the value against the support in ``log_prob``.

    Example:
        >>> from bayes_irl import GridWorld
        >>> from bayes_irl.inference import ExactNormalizer
        >>> world = GridWorld.create(size=3, horizon=4, seed=0)
        >>> d = MaxEntTrajectory(world.true_step_rewards(), ExactNormalizer(world.mdp))
        >>> x = d.sample((7,))
        >>> x.shape, d.log_prob(x).shape
        (torch.Size([7, 5, 2]), torch.Size([7]))
    """

    arg_constraints = {"step_rewards": constraints.real}
    has_rsample = False

    def __init__(
        self,
        step_rewards: torch.Tensor,
        normalizer,
        *,
        given_initial_state: bool = False,
        validate_args: bool | None = None,
    ) -> None:
        mdp: TabularMDP = normalizer.mdp
        if (
            not torch.is_tensor(step_rewards)
            or step_rewards.dim() < 2
            or step_rewards.shape[-2:] != (mdp.num_states, mdp.num_actions)
        ):
            shape = tuple(step_rewards.shape) if torch.is_tensor(step_rewards) else step_rewards
            raise ValueError(
                f"step_rewards must have shape (..., S, A) = (..., {mdp.num_states}, "
                f"{mdp.num_actions}); got {shape}"
            )
        if validate_args is not False and torch.isnan(step_rewards).any():
            raise ValueError("step_rewards contains NaN; check the reward model's parameters")
        self.step_rewards = step_rewards
        # Normalisers run on the unexpanded rewards: inside a plate of n demonstrations
        # the distribution is expanded to batch (..., n), and recomputing the recursion
        # for n identical copies would cost n times as much.
        self._unexpanded_rewards = step_rewards
        self.normalizer = normalizer
        self.mdp = mdp
        self.given_initial_state = bool(given_initial_state)
        super().__init__(
            batch_shape=step_rewards.shape[:-2],
            event_shape=(mdp.horizon + 1, 2),
            validate_args=validate_args,
        )

    @constraints.dependent_property(is_discrete=True, event_dim=2)
    def support(self):  # noqa: D102
        return TrajectoryConstraint(self.mdp.num_states, self.mdp.num_actions, self.mdp.horizon)

    @property
    def kind(self) -> str:
        """The model: ``"global"`` or ``"causal"`` (from the normaliser)."""
        return getattr(self.normalizer, "kind", "global")

    def expand(self, batch_shape, _instance=None):  # noqa: D102
        new = self._get_checked_instance(MaxEntTrajectory, _instance)
        batch_shape = torch.Size(batch_shape)
        new.step_rewards = self.step_rewards.expand(batch_shape + self.step_rewards.shape[-2:])
        new._unexpanded_rewards = self._unexpanded_rewards
        new.normalizer, new.mdp = self.normalizer, self.mdp
        new.given_initial_state = self.given_initial_state
        super(MaxEntTrajectory, new).__init__(batch_shape, self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def _needs_values(self, value: torch.Tensor) -> bool:
        truncated = bool((value[..., :-1, 1] < 0).any())
        return self.kind == "causal" or self.given_initial_state or truncated

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Return log P(x) of shape ``broadcast(value.shape[:-2], batch_shape)``."""
        if self._validate_args:
            self._validate_sample(value)
        mdp = self.mdp
        value = value.to(mdp.device)
        states, actions = value[..., 0], value[..., :-1, 1]
        observed = actions >= 0  # (..., T)
        s = states[..., :-1].clamp(min=0)
        a = actions.clamp(min=0)
        s_next = states[..., 1:].clamp(min=0)
        lengths = observed.sum(-1)
        s_last = states.gather(-1, lengths.unsqueeze(-1)).squeeze(-1)
        s0 = states[..., 0]
        shape = torch.broadcast_shapes(value.shape[:-2], self.batch_shape)
        rewards = self._unexpanded_rewards  # broadcasts to batch_shape + (S, A)

        log_dynamics = mdp.transition_log_prob(s, a, s_next) + mdp.action_log_base[s, a]
        log_dynamics = torch.where(observed, log_dynamics, torch.zeros_like(log_dynamics))
        log_base = log_dynamics.sum(-1)
        if not self.given_initial_state:
            log_base = log_base + mdp.initial.log()[s0]

        num_sa = mdp.num_states * mdp.num_actions
        sa_index = s * mdp.num_actions + a  # value batch + (T,)

        def gather_sa(table: torch.Tensor) -> torch.Tensor:
            """table: batch + (S, A) -> shape + (T,), the entries at (s_t, a_t)."""
            return _take(table.reshape(*table.shape[:-2], num_sa), sa_index, shape)

        def gather_tsa(table: torch.Tensor) -> torch.Tensor:
            """table: batch + (T, S, A) -> shape + (T,), the entries at (t, s_t, a_t)."""
            steps = torch.arange(mdp.horizon, device=mdp.device) * num_sa
            flat = table.reshape(*table.shape[:-3], mdp.horizon * num_sa)
            return _take(flat, sa_index + steps, shape)

        if not self._needs_values(value):
            step_r = gather_sa(rewards)
            ret = torch.where(observed, step_r, torch.zeros_like(step_r)).sum(-1)
            log_z = self.normalizer.log_normalizer(rewards)
            return ret + log_base - log_z

        if not hasattr(self.normalizer, "soft_values"):
            raise ValueError(
                "truncated trajectories, given_initial_state=True and the causal model need "
                "an exact normaliser with soft_values; this normaliser only estimates log Z"
            )
        values = self.normalizer.soft_values(rewards)  # batch + (T + 1, S)
        v_flat = values.reshape(*values.shape[:-2], -1)  # batch + ((T + 1) S,)
        if self.kind == "causal":
            q = step_q_values(mdp, rewards.unsqueeze(-3), values[..., 1:, :], kind="causal")
            log_pi = q - values[..., :-1, :].unsqueeze(-1)  # batch + (T, S, A)
            step_lp = gather_tsa(log_pi)
            policy = torch.where(observed, step_lp, torch.zeros_like(step_lp)).sum(-1)
            dynamics = torch.where(
                observed,
                mdp.transition_log_prob(s, a, s_next),
                torch.zeros(s.shape, dtype=rewards.dtype, device=mdp.device),
            ).sum(-1)
            out = policy + dynamics
            if not self.given_initial_state:
                out = out + mdp.initial.log()[s0]
            return out.expand(shape)
        step_r = gather_sa(rewards)
        ret = torch.where(observed, step_r, torch.zeros_like(step_r)).sum(-1)
        tail_index = (lengths * mdp.num_states + s_last).unsqueeze(-1)
        tail = _take(v_flat, tail_index, shape).squeeze(-1)
        if self.given_initial_state:
            head = -_take(v_flat, s0.unsqueeze(-1), shape).squeeze(-1)
        else:
            head = -torch.logsumexp(values[..., 0, :] + mdp.initial.log(), -1)
        return ret + log_base + tail + head

    def sample(self, sample_shape=()) -> torch.Tensor:
        """Draw exact trajectories, shape ``sample_shape + batch_shape + (T + 1, 2)``.

        Uses the global torch RNG (seed it with ``pyro.set_rng_seed``). Exact sampling
        needs the exact normaliser; estimators supply sampling-importance-resampling.
        """
        if not hasattr(self.normalizer, "soft_values"):
            sampler = getattr(self.normalizer, "sample_trajectories", None)
            if sampler is None:
                raise NotImplementedError("this normaliser provides no trajectory sampler")
            return sampler(self.step_rewards, torch.Size(sample_shape))
        sample_shape = torch.Size(sample_shape)
        num = max(sample_shape.numel(), 1)
        flat_rewards = self.step_rewards.reshape(-1, *self.step_rewards.shape[-2:])
        draws = []
        for rewards in flat_rewards.detach():
            initial = None
            if self.given_initial_state:
                initial = torch.multinomial(self.mdp.initial, num, replacement=True)
            draws.append(
                sample_maxent_trajectories(
                    self.mdp, rewards, num, kind=self.kind, initial_states=initial
                )
            )
        out = torch.stack(draws, dim=1)  # (num, prod(batch), T + 1, 2)
        return out.reshape(sample_shape + self.batch_shape + self.event_shape)
