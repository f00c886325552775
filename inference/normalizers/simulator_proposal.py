r"""The simulator proposal: a Gaussian guide policy rolled out through a black-box simulator.

The proposal runs a Gaussian guide policy :math:`\pi` (:mod:`bayes_irl.policies.gaussian`)
through a simulator with the Gymnasium ``reset``/``step`` API, whose dynamics are never
seen:

.. math::

    q(z) = p(x_0) \prod_{t<T} \pi_t(u_t \mid x_t)\, p(x_{t+1} \mid x_t, u_t).

With the base measure :math:`b(z) = p(x_0) \prod_t p(x_{t+1} \mid x_t, u_t)` (Lebesgue
measure on the actions) the dynamics cancel in :math:`b/q`, so for rollouts
:math:`z_k \sim q` the :class:`~bayes_irl.inference.normalizers.importance.
ImportanceNormalizer` weighs them with ::

    log w_k(theta) = R_theta(z_k) - sum_{t<T} log pi_t(u_t^k | x_t^k).

:class:`SimulatorProposal` implements :class:`bayes_irl.protocols.GuidePolicy` on the
space :class:`bayes_irl.continuous.TrajectoryLayout` (flat trajectories ``z (K, d)``); it
is trained like every proposal by :class:`bayes_irl.inference.GuidePolicyTrainer`
(score-function gradients: the simulator is not differentiable).
``SimulatorImportanceNormalizer(simulator, policy, reward_fn, ...)`` is now
``ImportanceNormalizer(SimulatorProposal(simulator, policy), ...)`` with the reward passed
to ``log_normalizer(reward, theta)``; ``SimulatorGuideTrainer`` is ``GuidePolicyTrainer``.

Note: with stochastic dynamics the maxent distribution tilts the transitions
(:math:`P_\theta(x_{t+1} \mid x_t, u_t) \propto p(x_{t+1} \mid x_t, u_t)
e^{V_{t+1}(x_{t+1})}`), which no policy run through the true simulator can reproduce, so
:math:`q = P_\theta` is not reachable; the residual mismatch is small when the process
noise is small compared with the curvature of the soft value.

Examples:
    >>> import torch
    >>> from bayes_irl.linear_quadratic import LinearQuadraticMDP
    >>> from bayes_irl.gym_envs import LinearQuadraticVectorEnv
    >>> from bayes_irl.policies.gaussian import LinearGaussianPolicy
    >>> from bayes_irl.rewards import QuadraticReward
    >>> from bayes_irl.inference import ImportanceNormalizer
    >>> mdp = LinearQuadraticMDP.default(dx=2, du=1, horizon=5)
    >>> proposal = SimulatorProposal(
    ...     LinearQuadraticVectorEnv(mdp, num_envs=64),
    ...     LinearGaussianPolicy(horizon=5, state_dim=2, action_dim=1, init_std=3.0))
    >>> normaliser = ImportanceNormalizer(proposal, num_samples=256, seed=0)
    >>> normaliser.log_normalizer(QuadraticReward(2, 1), torch.tensor([[1.0, 0.5, 0.1]])).shape
    torch.Size([1])
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bayes_irl.continuous import TrajectoryLayout
from bayes_irl.policies.gaussian import GaussianPolicy
from bayes_irl.validation import positive_int

__all__ = ["SimulatorProposal", "rollout"]


def _space_dim(space: Any) -> int | None:
    shape = getattr(space, "shape", None)
    return None if shape is None else int(shape[-1])


def rollout(
    simulator: Any,
    policy: GaussianPolicy,
    num: int,
    *,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """Run ``num`` episodes of ``policy`` through a Gymnasium-style simulator.

    ``simulator`` is a ``gymnasium.Env`` (episodes run one after the other) or a
    ``gymnasium.vector.VectorEnv`` (``num_envs`` episodes in lockstep; ``num`` is rounded up
    to whole batches and cut back). Only ``reset(seed=...)`` and ``step(action)`` are used;
    the env seeds are drawn from ``generator``, so the rollouts are reproducible.

    Args:
        simulator: the environment.
        policy: the guide policy (``horizon`` = episode length ``T``).
        num: number of episodes (>= 1).
        generator: torch generator for the actions and the env seeds.

    Returns:
        ``states (num, T+1, dx)`` and ``actions (num, T, du)`` (policy dtype, no grad).

    Raises:
        ValueError: if an episode terminates or is truncated at a step other than ``T``,
            or the observations do not have ``dx`` coordinates.
    """
    num = positive_int(num, "`num`")
    T, dtype = policy.horizon, policy.dtype
    batch = int(getattr(simulator, "num_envs", 0)) or None
    chunks_s, chunks_a = [], []
    done = 0
    while done < num:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        obs, _ = simulator.reset(seed=seed)
        x = torch.as_tensor(np.asarray(obs), dtype=dtype)
        x = x if batch else x.unsqueeze(0)
        if x.shape[-1] != policy.state_dim:
            raise ValueError(
                f"the simulator's observations have shape {tuple(x.shape[1:])}; the policy "
                f"expects state_dim = {policy.state_dim}"
            )
        xs, us = [x], []
        for t in range(T):
            u = policy.sample(t, x, generator=generator)
            action = u.numpy() if batch else u[0].numpy()
            obs, _, terminated, truncated, _ = simulator.step(action)
            if bool(np.any(terminated)) or bool(np.any(truncated)) != (t == T - 1):
                raise ValueError(
                    f"the simulator's episode ended (terminated={terminated}, truncated="
                    f"{truncated}) at step {t + 1}, but trajectories need exactly the policy "
                    f"horizon T = {T} steps"
                )
            x = torch.as_tensor(np.asarray(obs), dtype=dtype)
            x = x if batch else x.unsqueeze(0)
            xs.append(x)
            us.append(u)
        chunks_s.append(torch.stack(xs, dim=-2))
        chunks_a.append(torch.stack(us, dim=-2))
        done += chunks_s[-1].shape[0]
    return torch.cat(chunks_s)[:num], torch.cat(chunks_a)[:num]


class SimulatorProposal(nn.Module):
    """Guide policy rolled out through a black-box simulator: a :class:`GuidePolicy`.

    Args:
        simulator: ``gymnasium.Env`` or ``gymnasium.vector.VectorEnv`` (see :func:`rollout`).
        policy: the guide policy (a :class:`~bayes_irl.policies.gaussian.GaussianPolicy`).

    Attributes:
        space: the :class:`~bayes_irl.continuous.TrajectoryLayout` ``(T, dx, du)`` of the
            policy; draws are flat trajectories ``z (K, d)``.

    Raises:
        ValueError: for a policy that is not a GaussianPolicy, or a simulator without
            ``reset``/``step`` or whose spaces do not match the policy.
    """

    def __init__(self, simulator: Any, policy: GaussianPolicy) -> None:
        super().__init__()
        if not isinstance(policy, GaussianPolicy):
            raise ValueError(f"`policy` must be a GaussianPolicy; got {type(policy).__name__}")
        if not (hasattr(simulator, "reset") and hasattr(simulator, "step")):
            raise ValueError(
                "`simulator` must have Gymnasium-style reset() and step(); got "
                f"{type(simulator).__name__}"
            )
        obs_space = getattr(simulator, "single_observation_space", None) or getattr(
            simulator, "observation_space", None
        )
        act_space = getattr(simulator, "single_action_space", None) or getattr(
            simulator, "action_space", None
        )
        for box, dim, name in [
            (obs_space, policy.state_dim, "observation"),
            (act_space, policy.action_dim, "action"),
        ]:
            if box is not None and _space_dim(box) not in (None, dim):
                raise ValueError(
                    f"the simulator's {name} space {box} does not match the policy's "
                    f"dimension {dim}"
                )
        self.simulator = simulator
        self.policy = policy
        self.space = TrajectoryLayout(policy.horizon, policy.state_dim, policy.action_dim)

    def draw(
        self, num_samples: int, *, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Roll out ``num_samples`` episodes.

        Returns:
            ``(z, log_ratio)``: flat trajectories ``(K, d)`` and ``-sum_t log pi_t(u_t |
            x_t)`` of shape (K,) (detached; the dynamics cancel).
        """
        generator = torch.Generator().manual_seed(0) if generator is None else generator
        states, actions = rollout(self.simulator, self.policy, num_samples, generator=generator)
        with torch.no_grad():
            log_q = self.policy.log_prob(states, actions)
        return self.space.flatten(states, actions), -log_q

    def log_prob(self, value: Tensor) -> Tensor:
        """``sum_t log pi_t(u_t | x_t)`` of flat trajectories ``(K, d)``; differentiable, (K,)."""
        return self.policy.log_prob(*self.space.split(value))

    def extra_repr(self) -> str:  # noqa: D102
        return f"simulator={type(self.simulator).__name__}, space={self.space!r}"
