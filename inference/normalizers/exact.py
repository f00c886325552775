r"""The exact normaliser: log Z, the exact likelihood and exact sampling, for any known space.

:class:`ExactNormalizer` dispatches on the trajectory space:

* :class:`~bayes_irl.TabularMDP`: the soft-Bellman backward recursion of
  :mod:`bayes_irl.soft_bellman` (pure functions of the MDP and the step rewards
  ``reward.step_rewards(theta)``), kinds ``"global"`` and ``"causal"``.

For a tabular MDP with base measure b(x) = p0(s_0) prod_t beta(a_t | s_t) p(s_{t+1} | s_t, a_t)
and step rewards r[s, a], the global maxent model (Ziebart et al. 2008) is

    log P(x) = R(x) + log b(x) - log Z,    R(x) = sum_{t<T} r(s_t, a_t).

A trajectory observed only for its first L < T actions (padding -1, see
:mod:`bayes_irl.trajectories`) has the exact marginal

    log P(x_{0:L}) = sum_{t<L} [r + log beta + log p](s_t, a_t, s_{t+1}) + log p0(s_0)
                     + V_L(s_L) - log Z,

where V is the soft value. With ``given_initial_state=True`` the start state is a context
(conditioned on, not modelled): log p0(s_0) - log Z is replaced by -V_0(s_0). The causal
model (``kind="causal"``) uses log P(x) = log p0(s_0) + sum_{t<L} [log pi_t + log p](s_t,
a_t, s_{t+1}) with the soft policy pi_t = exp(Q_t - V_t)
(:func:`bayes_irl.soft_bellman.soft_policy`).

The recursion runs once per theta: :meth:`ExactNormalizer.log_likelihood` receives theta of
shape ``theta_batch + (D,)`` unexpanded (``(..., 1, D)`` inside a plate of n
demonstrations) and indexes the resulting tables for every trajectory without copying them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bayes_irl.linear_quadratic import LQ_METHODS, LinearQuadraticMDP
from bayes_irl.linear_quadratic import log_partition as lq_log_partition
from bayes_irl.linear_quadratic.gaussian import conditional_gaussian, conditional_log_normalizer
from bayes_irl.mdp import TabularMDP
from bayes_irl.rewards.continuous import QuadraticReward
from bayes_irl.shapes import broadcast_shapes
from bayes_irl.soft_bellman import (
    MaxEntKind,
    check_kind,
    log_partition,
    sample_maxent_trajectories,
    soft_values,
)
from bayes_irl.trajectories import _take, trajectory_returns

__all__ = ["ExactNormalizer"]


def _step_rewards(reward: Any, theta: Tensor) -> Tensor:
    step_rewards = getattr(reward, "step_rewards", None)
    if step_rewards is None:
        raise ValueError(
            "reward must be a tabular reward model with step_rewards(theta) (LinearReward, "
            f"TabularReward, MLPReward) on a TabularMDP; got {type(reward).__name__}"
        )
    return step_rewards(theta)


def _causal_log_policy_at(
    mdp: TabularMDP, rewards: Tensor, values: Tensor, s: Tensor, sa_index: Tensor, shape
) -> Tensor:
    """``log pi_t(a_t | s_t)`` of the causal policy at each observed step.

    Args:
        mdp: the MDP.
        rewards: ``theta_batch + (S, A)``.
        values: the causal soft values ``theta_batch + (T + 1, S)``.
        s: states ``traj_batch + (T,)`` (clamped to >= 0).
        sa_index: ``s * A + a``, ``traj_batch + (T,)`` (clamped to >= 0).
        shape: the broadcast of theta_batch and traj_batch.

    Returns:
        ``shape + (T,)``; entries at unobserved steps are meaningless (masked by the caller).
    """
    horizon, num_states = mdp.horizon, mdp.num_states
    local = (rewards + mdp.action_log_base.to(rewards.dtype)).flatten(-2)  # (..., S·A)
    fan_out = mdp.successors.shape[-1]
    successors = mdp.successors.reshape(-1, fan_out)[sa_index]  # traj_batch + (T, F)
    probs = mdp.successor_log_probs.exp().to(rewards.dtype).reshape(-1, fan_out)[sa_index]
    steps = torch.arange(horizon, device=mdp.device).unsqueeze(-1)  # (T, 1)
    v_flat = values.flatten(-2)  # theta_batch + ((T + 1) S,)
    next_index = ((steps + 1) * num_states + successors).flatten(-2)  # traj_batch + (T·F,)
    next_values = _take(v_flat, next_index, shape).unflatten(-1, (horizon, fan_out))
    expected = torch.where(probs > 0, probs * next_values, next_values.new_zeros(())).sum(-1)
    current = _take(v_flat, steps.squeeze(-1) * num_states + s, shape)
    return _take(local, sa_index, shape) + expected - current


class ExactNormalizer:
    """Exact log-partition, likelihood and sampler of the maxent trajectory distribution.

    Implements :class:`bayes_irl.protocols.Normalizer` and
    :class:`bayes_irl.protocols.ExactLikelihood`: ``log_normalizer(reward, theta)`` returns
    a differentiable log Z of shape ``theta.shape[:-1]``; ``diagnostics`` is ``None``
    (nothing is estimated).

    Args:
        space: the trajectory space (base measure): a :class:`~bayes_irl.TabularMDP`, or a
            :class:`~bayes_irl.linear_quadratic.LinearQuadraticMDP` (reward: a
            :class:`~bayes_irl.rewards.QuadraticReward`; trajectories ``(..., d)``; log Z
            a Gaussian integral, see :mod:`bayes_irl.linear_quadratic.gaussian`).
        kind: ``"global"`` (default; the design's P ∝ b exp R) or ``"causal"`` (maximum
            causal entropy, tabular only). See :mod:`bayes_irl.soft_bellman`.
        method: LQ only: ``"recursion"`` (default; ``O(T)`` backward Riccati-style
            recursion) or ``"dense"`` (Cholesky of the dense ``(d, d)`` trajectory
            precision, ``O(d^3)``, a reference). ``LinearQuadraticNormalizer(mdp)`` is
            ``ExactNormalizer(mdp)`` (documented rename).

    Attributes:
        space: the trajectory space.
        mdp: the same object as ``space`` (tabular normalisers keep the name).
        kind: the model.
        method: LQ only: the implementation of log Z.

    Raises:
        ValueError: for an unknown ``kind`` or ``method``, or an unsupported space.

    Example:
        >>> from bayes_irl import GridWorld
        >>> world = GridWorld.create(size=3, horizon=4, seed=0)
        >>> norm = ExactNormalizer(world.mdp)
        >>> norm.log_normalizer(world.reward_model, world.true_weights).shape
        torch.Size([])
        >>> import torch
        >>> from bayes_irl.linear_quadratic import LinearQuadraticMDP
        >>> from bayes_irl.rewards.continuous import QuadraticReward
        >>> lq = ExactNormalizer(LinearQuadraticMDP.default(dx=2, du=1, horizon=5))
        >>> theta = torch.tensor([[1.0, 0.5, 0.1], [2.0, 1.0, 0.3]], dtype=torch.float64)
        >>> lq.log_normalizer(QuadraticReward(2, 1), theta).shape
        torch.Size([2])
        >>> lq.sample(QuadraticReward(2, 1), theta, (7,)).shape
        torch.Size([7, 2, 17])
    """

    is_exact = True

    def __init__(
        self, space: Any, *, kind: MaxEntKind = "global", method: str | None = None
    ) -> None:
        check_kind(kind)
        self._lq = isinstance(space, LinearQuadraticMDP)
        if self._lq:
            self.method = _check_lq_method(kind, method)
        elif not isinstance(space, TabularMDP):
            raise ValueError(
                f"space must be a TabularMDP or a LinearQuadraticMDP; got {type(space).__name__}"
            )
        elif method is not None:
            raise ValueError(
                f"`method` applies to a LinearQuadraticMDP only (a TabularMDP has one "
                f"recursion); got method={method!r}"
            )
        self.space = space
        self.mdp = space
        self.kind = kind

    @property
    def diagnostics(self) -> None:
        """``None``: an exact normaliser estimates nothing."""
        return None

    # ------------------------------------------------------------------ log Z
    def log_normalizer(self, reward: Any, theta: Tensor) -> Tensor:
        """Return log Z of the global distribution, shape ``theta.shape[:-1]``.

        Args:
            reward: the reward model (tabular: with ``step_rewards(theta)``).
            theta: reward parameters, shape ``batch + (D,)``.

        Raises:
            ValueError: for ``kind="causal"`` (there is no single Z: each step is
                normalised locally; use :meth:`log_likelihood`) or a mis-shaped theta.
        """
        if self._lq:
            return _lq_log_normalizer(self, reward, theta)
        if self.kind != "global":
            raise ValueError(
                "log_normalizer is defined for kind='global' only: the causal model "
                "normalises each step; use log_likelihood"
            )
        return log_partition(self.mdp, _step_rewards(reward, theta))

    # ------------------------------------------------------------------ likelihood
    def log_likelihood(
        self,
        reward: Any,
        theta: Tensor,
        value: Tensor,
        *,
        given_initial_state: bool = False,
    ) -> Tensor:
        """Exact ``log P(x | theta)`` (truncated, context and causal cases included).

        Args:
            reward: the reward model.
            theta: ``theta_batch + (D,)``; pass it unexpanded (``(..., 1, D)`` against n
                trajectories): the recursion runs once per theta.
            value: trajectories ``traj_batch + (T + 1, 2)`` (-1 padding); LQ: flat
                ``traj_batch + (d,)``.
            given_initial_state: condition on s_0 instead of modelling it.

        Returns:
            Shape ``broadcast(theta_batch, traj_batch)``.
        """
        if self._lq:
            return _lq_log_likelihood(self, reward, theta, value, given_initial_state)
        mdp = self.mdp
        rewards = _step_rewards(reward, theta)  # theta_batch + (S, A)
        value = value.to(mdp.device)
        states, actions = mdp.split(value)
        observed = actions >= 0  # traj_batch + (T,)
        s = states[..., :-1].clamp(min=0)
        a = actions.clamp(min=0)
        s_next = states[..., 1:].clamp(min=0)
        s0 = states[..., 0]
        shape = broadcast_shapes(value.shape[:-2], rewards.shape[:-2])
        sa_index = s * mdp.num_actions + a  # traj_batch + (T,)

        def masked_sum(per_step: Tensor) -> Tensor:
            return torch.where(observed, per_step, per_step.new_zeros(())).sum(-1)

        if self.kind == "global" and not given_initial_state and not mdp.is_truncated(value):
            ret = trajectory_returns(rewards, states, actions)
            log_z = log_partition(mdp, rewards)
            log_base = mdp.log_base(value)
            return (ret + log_base - log_z).expand(shape)

        values = soft_values(mdp, rewards, kind=self.kind)  # theta_batch + (T + 1, S)
        if self.kind == "causal":
            # log pi_t(a | s) = local(s, a) + sum_f p(f | s, a) V_{t+1}(f) - V_t(s), read at
            # the observed (t, s, a) only: the (T, S, A) policy table is never built
            policy = masked_sum(_causal_log_policy_at(mdp, rewards, values, s, sa_index, shape))
            dynamics = torch.where(
                observed,
                mdp.transition_log_prob(s, a, s_next),
                torch.zeros(s.shape, dtype=rewards.dtype, device=mdp.device),
            ).sum(-1)
            out = policy + dynamics
            if not given_initial_state:
                out = out + mdp.initial.log()[s0]
            return out.expand(shape)
        lengths = observed.sum(-1)
        s_last = states.gather(-1, lengths.unsqueeze(-1)).squeeze(-1)
        v_flat = values.reshape(*values.shape[:-2], -1)  # theta_batch + ((T + 1) S,)
        ret = trajectory_returns(rewards, states, actions)
        log_base = mdp.log_base(value, given_initial_state=given_initial_state)
        tail_index = (lengths * mdp.num_states + s_last).unsqueeze(-1)
        tail = _take(v_flat, tail_index, shape).squeeze(-1)
        if given_initial_state:
            head = -_take(v_flat, s0.unsqueeze(-1), shape).squeeze(-1)
        else:
            head = -torch.logsumexp(values[..., 0, :] + mdp.initial.log(), -1)
        return ret + log_base + tail + head

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        reward: Any,
        theta: Tensor,
        sample_shape: tuple[int, ...] | torch.Size = (),
        *,
        given_initial_state: bool = False,
        initial_states: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw exact trajectories, shape ``sample_shape + theta.shape[:-1] + (T + 1, 2)``.

        Args:
            reward: the reward model.
            theta: ``batch + (D,)``; one backward recursion per theta.
            sample_shape: independent draws per theta.
            given_initial_state: draw s_0 from p0 untilted (it is a context); otherwise
                from the model (tilted by exp V_0 under the global model).
            initial_states: with ``given_initial_state``, optional int start states of shape
                ``sample_shape`` (the same for every theta) instead of draws from p0.
            generator: torch random generator (default: the global RNG, seeded by
                ``pyro.set_rng_seed``).

        Returns:
            int64 trajectories in the (T + 1, 2) encoding; LQ: float ``(..., d)`` (x_0 from
            p0 untilted when ``given_initial_state``, the rest from the conditional Gaussian).
        """
        sample_shape = torch.Size(sample_shape)
        if self._lq:
            return _lq_sample(self, reward, theta, sample_shape, given_initial_state, generator)
        mdp = self.mdp
        num = max(sample_shape.numel(), 1)
        fixed = None
        if initial_states is not None:
            if not given_initial_state:
                raise ValueError("initial_states needs given_initial_state=True")
            fixed = torch.as_tensor(initial_states, device=mdp.device).reshape(-1)
            if fixed.shape != (num,):
                raise ValueError(
                    f"initial_states must have shape sample_shape = {tuple(sample_shape)}; "
                    f"got {tuple(torch.as_tensor(initial_states).shape)}"
                )
        with torch.no_grad():
            rewards = _step_rewards(reward, theta.detach())
            batch = rewards.shape[:-2]
            draws = []
            for table in rewards.reshape(-1, *rewards.shape[-2:]):
                initial = fixed
                if given_initial_state and fixed is None:
                    initial = torch.multinomial(
                        mdp.initial, num, replacement=True, generator=generator
                    )
                draws.append(
                    sample_maxent_trajectories(
                        mdp,
                        table,
                        num,
                        kind=self.kind,
                        initial_states=initial,
                        generator=generator,
                    )
                )
            out = torch.stack(draws, dim=1)  # (num, prod(batch), T + 1, 2)
        return out.reshape(sample_shape + batch + (mdp.horizon + 1, 2))

    def __repr__(self) -> str:
        return f"ExactNormalizer(kind={self.kind!r}, space={self.space!r})"


# ---------------------------------------------------------------------- linear-quadratic
# The LQ branch of ExactNormalizer: the Gaussian algebra of bayes_irl.linear_quadratic
# (pure functions), behind the normaliser interface.
def _check_lq_method(kind: str, method: str | None) -> str:
    if kind != "global":
        raise ValueError(
            f"kind must be 'global' on a LinearQuadraticMDP (the causal model is tabular "
            f"only); got {kind!r}"
        )
    method = "recursion" if method is None else method
    if method not in LQ_METHODS:
        raise ValueError(f"`method` must be one of {LQ_METHODS}; got {method!r}")
    return method


def _check_lq_reward(mdp: LinearQuadraticMDP, reward: Any) -> None:
    dims = (mdp.state_dim, mdp.action_dim)
    if not isinstance(reward, QuadraticReward) or (reward.state_dim, reward.action_dim) != dims:
        got = type(reward).__name__
        if isinstance(reward, QuadraticReward):
            got += f" with (state_dim, action_dim) = ({reward.state_dim}, {reward.action_dim})"
        raise ValueError(
            f"reward must be a QuadraticReward with (state_dim, action_dim) = {dims} on this "
            f"LinearQuadraticMDP (the exact normaliser integrates the quadratic reward); "
            f"got {got}"
        )


def _lq_log_normalizer(norm: ExactNormalizer, reward: Any, theta: Tensor) -> Tensor:
    """``log Z(theta)`` by the dense or the recursive Gaussian integral; ``theta.shape[:-1]``."""
    _check_lq_reward(norm.space, reward)
    return lq_log_partition(norm.space, theta, method=norm.method)


def _lq_log_likelihood(
    norm: ExactNormalizer, reward: Any, theta: Tensor, value: Tensor, given_initial_state: bool
) -> Tensor:
    """``R + log b - log Z`` (``log Z(theta | x_0)`` given the initial state)."""
    mdp = norm.space
    _check_lq_reward(mdp, reward)
    theta = mdp.check_theta(theta)
    value = torch.as_tensor(value).to(dtype=mdp.dtype, device=mdp.device)
    states, actions = mdp.check_trajectories(*mdp.split(value))
    try:
        shape = broadcast_shapes(theta.shape[:-1], value.shape[:-1])
    except RuntimeError as error:
        raise ValueError(
            f"batch shape of `theta` {tuple(theta.shape[:-1])} does not broadcast with the "
            f"trajectories' batch shape {tuple(value.shape[:-1])}"
        ) from error
    mdp.check_control_weights(theta)
    if given_initial_state:
        log_z = conditional_log_normalizer(mdp, theta, states[..., 0, :])
    else:
        log_z = lq_log_partition(mdp, theta, method=norm.method)
    out = reward.returns(theta, states, actions) + mdp.log_base(
        value, given_initial_state=given_initial_state
    )
    return (out - log_z).expand(shape)


def _lq_sample(
    norm: ExactNormalizer,
    reward: Any,
    theta: Tensor,
    sample_shape: torch.Size,
    given_initial_state: bool,
    generator: torch.Generator | None,
) -> Tensor:
    """Exact draws ``sample_shape + theta.shape[:-1] + (d,)`` from the joint Gaussian."""
    mdp = norm.space
    _check_lq_reward(mdp, reward)
    with torch.no_grad():
        theta = mdp.check_theta(theta.detach())
        if not given_initial_state:
            return mdp.trajectory_gaussian(theta).sample(sample_shape, generator=generator)
        # x_0 from p0 untilted (a context), the rest from the conditional Gaussian
        mdp.check_control_weights(theta)
        shape = sample_shape + theta.shape[:-1]
        eps = torch.randn(
            shape + (mdp.state_dim,), generator=generator, dtype=mdp.dtype, device=mdp.device
        )
        x0 = mdp.initial_mean + eps @ mdp.initial_tril.mT
        rest = conditional_gaussian(mdp.quadratic_form(theta), x0, theta, mdp.state_dim)
        return torch.cat([x0, rest.sample(generator=generator)], dim=-1)
