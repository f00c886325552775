r"""Importance-sampling normaliser for continuous maxent IRL through a black-box simulator.

The proposal runs a Gaussian guide policy :math:`\pi` (:mod:`bayes_irl.policies.gaussian`)
through a simulator with the Gymnasium ``reset``/``step`` API, whose dynamics the
normaliser never sees:

.. math::

    q(z) = p(x_0) \prod_{t<T} \pi_t(u_t \mid x_t)\, p(x_{t+1} \mid x_t, u_t).

With the base measure :math:`b(z) = p(x_0) \prod_t p(x_{t+1} \mid x_t, u_t)` (Lebesgue
measure on the actions) the dynamics cancel in :math:`b/q`, so for rollouts
:math:`z_k \sim q`, :math:`k = 1..K`::

    log w_k(theta) = R_theta(z_k) - sum_{t<T} log pi_t(u_t^k | x_t^k),
    log Z_hat(theta) = logsumexp_k log w_k(theta) - log K.

:math:`\hat Z` is unbiased for :math:`Z`; :math:`\log \hat Z` is biased low (Jensen), the
bias shrinking as :math:`q \to P_\theta`. The rollouts do not depend on :math:`\theta`:
they are drawn once (:meth:`SimulatorImportanceNormalizer.refresh`) and re-weighted for
every :math:`\theta`, so :math:`\log \hat Z` is a deterministic, differentiable function of
:math:`\theta` with gradient :math:`\sum_k \bar w_k \nabla R_\theta(z_k)` (self-normalised
weights :math:`\bar w`). PSIS :math:`\hat k > 0.7` (:data:`~bayes_irl.inference.
diagnostics.KHAT_THRESHOLD`) flags an estimate that cannot be trusted.

Guide-policy training (:class:`SimulatorGuideTrainer`, its own torch optimiser):

* ``"reverse_kl"``: maximise :math:`\mathcal L(\pi) = E_q[R_\theta(z) - \sum_t \log
  \pi_t(u_t \mid x_t)] = \log Z - \mathrm{KL}(q \,\|\, P_\theta)` (entropy-regularised RL;
  :math:`\mathcal L \le \log Z`). The simulator is not differentiable, so the gradient is
  the score-function (REINFORCE) estimate :math:`E_q[(f(z) - \beta)\nabla \log q(z)]`,
  :math:`f = R - \log \pi`, with a leave-one-out baseline :math:`\beta`.
* ``"forward_kl"``: maximise :math:`E_{P_\theta}[\log q(z)] \approx \sum_k \bar w_k \sum_t
  \log \pi_t(u^k_t \mid x^k_t)` with self-normalised weights of the current rollouts
  (mass-covering; the dynamics again cancel).

With several :math:`\theta` (draws from the current Pyro guide) the objectives are
averaged over them. A trainer instance is an SVI callback
``callback(step, loss, guide)`` (:func:`bayes_irl.inference.backends.svi.optimise`): every
``every`` steps it draws :math:`\theta` from the Pyro guide, takes policy-gradient steps
and refreshes the normaliser's rollouts.

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
    >>> from bayes_irl.models.continuous import QuadraticReward
    >>> mdp = LinearQuadraticMDP.default(dx=2, du=1, horizon=5)
    >>> normaliser = SimulatorImportanceNormalizer(
    ...     LinearQuadraticVectorEnv(mdp, num_envs=64),
    ...     LinearGaussianPolicy(horizon=5, state_dim=2, action_dim=1, init_std=3.0),
    ...     QuadraticReward(2, 1), num_samples=256, seed=0)
    >>> normaliser.log_normalizer(torch.tensor([[1.0, 0.5, 0.1]])).shape
    torch.Size([1])
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from pyro import poutine
from torch import Tensor

from bayes_irl.inference.diagnostics import (
    KHAT_THRESHOLD,
    ImportanceDiagnostics,
    ImportanceWarning,
    importance_diagnostics,
    log_mean_exp,
)
from bayes_irl.policies.gaussian import GaussianPolicy

__all__ = [
    "SimulatorGuideTrainer",
    "ImportanceWarning",
    "SimulatorImportanceNormalizer",
    "rollout",
]




def _reward_fn(reward: Any) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    if hasattr(reward, "returns"):
        return reward.returns
    if callable(reward):
        return reward
    raise ValueError(
        "`reward_fn` must be a callable (theta, states, actions) -> returns or an object "
        f"with .returns (e.g. QuadraticReward); got {type(reward).__name__}"
    )


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
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"`num` must be an integer >= 1; got {num!r}")
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


class SimulatorImportanceNormalizer:
    """Estimate ``log Z(theta)`` by importance sampling guide-policy rollouts of a simulator.

    Normaliser interface (as
    :class:`~bayes_irl.inference.normalizers.linear_quadratic.LinearQuadraticNormalizer`):
    ``log_normalizer(theta)`` differentiable, batched over ``theta``'s leading dims;
    ``diagnostics``; ``is_exact = False``; ``mdp = None`` (the dynamics are unknown); plus
    ``horizon``, ``state_dim``, ``action_dim`` (the trajectory layout).

    Args:
        simulator: ``gymnasium.Env`` or ``gymnasium.vector.VectorEnv`` (see :func:`rollout`).
        policy: the guide policy (a :class:`~bayes_irl.policies.gaussian.GaussianPolicy`).
        reward_fn: ``(theta (..., P), states (K, T+1, dx), actions (K, T, du)) -> (..., K)``
            or a reward model with ``.returns`` (e.g. ``QuadraticReward``).
        num_samples: ``K`` rollouts.
        seed: seed of the normaliser's own torch generator (rollouts are reproducible).
        warn: emit an :class:`ImportanceWarning` when the diagnostics find k-hat > 0.7.

    Raises:
        ValueError: for a bad ``num_samples``, policy, ``reward_fn`` or a simulator whose
            spaces do not match the policy.
    """

    is_exact = False
    kind = "global"
    mdp = None

    def __init__(
        self,
        simulator: Any,
        policy: GaussianPolicy,
        reward_fn: Any,
        *,
        num_samples: int = 256,
        seed: int = 0,
        warn: bool = True,
    ) -> None:
        if not isinstance(policy, GaussianPolicy):
            raise ValueError(f"`policy` must be a GaussianPolicy; got {type(policy).__name__}")
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
            raise ValueError(f"`num_samples` must be an integer >= 2; got {num_samples!r}")
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
        for space, dim, name in [
            (obs_space, policy.state_dim, "observation"),
            (act_space, policy.action_dim, "action"),
        ]:
            if space is not None and _space_dim(space) not in (None, dim):
                raise ValueError(
                    f"the simulator's {name} space {space} does not match the policy's "
                    f"dimension {dim}"
                )
        self.simulator, self.policy = simulator, policy
        self.reward = reward_fn
        self._returns = _reward_fn(reward_fn)
        self.num_samples, self.seed, self.warn = num_samples, seed, warn
        self.horizon, self.state_dim, self.action_dim = (
            policy.horizon,
            policy.state_dim,
            policy.action_dim,
        )
        self.generator = torch.Generator().manual_seed(seed)
        self.num_refreshes = 0
        self._last_log_weights: Tensor | None = None
        self._diagnostics: ImportanceDiagnostics | None = None
        self.refresh()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(simulator={type(self.simulator).__name__}, "
            f"policy={type(self.policy).__name__}, num_samples={self.num_samples}, "
            f"seed={self.seed})"
        )

    # ------------------------------------------------------------------ samples
    def refresh(self, num_samples: int | None = None) -> None:
        """Draw fresh rollouts from the current policy (call after training the policy).

        Args:
            num_samples: new ``K`` (default: keep the current one).
        """
        if num_samples is not None:
            if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
                raise ValueError(f"`num_samples` must be an integer >= 2; got {num_samples!r}")
            self.num_samples = num_samples
        states, actions = rollout(
            self.simulator, self.policy, self.num_samples, generator=self.generator
        )
        with torch.no_grad():
            log_q = self.policy.trajectory_log_prob(states, actions)
        self.states, self.actions, self.log_q = states, actions, log_q
        self.num_refreshes += 1
        self._last_log_weights, self._diagnostics = None, None

    def log_weights(self, theta: Tensor) -> Tensor:
        """``log w_k(theta) = R_theta(z_k) - log pi(z_k)``.

        Args:
            theta: shape ``batch + (P,)``.

        Returns:
            Shape ``batch + (K,)``, differentiable in ``theta``.

        Raises:
            ValueError: if ``theta`` is not a tensor with a last dimension, or the returns
                are NaN (e.g. from a NaN ``theta``).
        """
        theta = torch.as_tensor(theta)
        if theta.ndim < 1:
            raise ValueError(f"`theta` must have shape (..., P); got shape {tuple(theta.shape)}")
        if bool(torch.isnan(theta).any()):
            raise ValueError(f"`theta` contains NaN; got {theta.detach()}")
        states, actions = self.states.to(theta.dtype), self.actions.to(theta.dtype)
        returns = self._returns(theta.unsqueeze(-2), states, actions)
        if returns.shape[-1:] != (self.num_samples,):
            raise ValueError(
                f"`reward_fn` must return shape (..., K) = (..., {self.num_samples}) for "
                f"theta (..., 1, P) and K trajectories; got {tuple(returns.shape)}"
            )
        return returns - self.log_q.to(returns.dtype)

    def log_normalizer(self, theta: Tensor) -> Tensor:
        """``log Z_hat(theta) = logsumexp_k log w_k - log K``.

        Args:
            theta: shape ``batch + (P,)``, any leading batch dims.

        Returns:
            Shape ``batch``, differentiable in ``theta``.
        """
        lw = self.log_weights(theta)
        self._last_log_weights, self._diagnostics = lw.detach(), None
        return log_mean_exp(lw, dim=-1)

    # ------------------------------------------------------------------ diagnostics
    def diagnose(self, theta: Tensor) -> ImportanceDiagnostics:
        """ESS, PSIS k-hat and standard error of the estimate at one ``theta (P,)``.

        Warns with :class:`ImportanceWarning` when k-hat > 0.7 (if ``warn``).
        """
        theta = torch.as_tensor(theta)
        if theta.ndim != 1:
            raise ValueError(f"`theta` must have shape (P,); got {tuple(theta.shape)}")
        with torch.no_grad():
            diag = importance_diagnostics(self.log_weights(theta))
        self._maybe_warn(diag)
        return diag

    @property
    def diagnostics(self) -> ImportanceDiagnostics | None:
        """Diagnostics of the last ``log_normalizer`` call (``None`` before any).

        For a batch of ``theta`` it reports the element with the smallest ESS (the worst
        case). Computed lazily on first access after each call; warns with
        :class:`ImportanceWarning` when k-hat > 0.7.
        """
        if self._diagnostics is None and self._last_log_weights is not None:
            lw = self._last_log_weights.reshape(-1, self.num_samples)
            w = torch.softmax(lw, dim=-1)
            worst = int((w.pow(2).sum(-1)).argmax())  # max sum w^2 = min ESS
            self._diagnostics = importance_diagnostics(lw[worst])
            self._maybe_warn(self._diagnostics)
        return self._diagnostics

    def _maybe_warn(self, diag: ImportanceDiagnostics) -> None:
        if self.warn and not diag.khat < KHAT_THRESHOLD:
            warnings.warn(
                f"importance estimate of log Z is unreliable: PSIS k-hat = {diag.khat:.2f} > "
                f"{KHAT_THRESHOLD} (ESS {diag.ess:.1f} of K = {diag.num_samples}); train the "
                "guide policy (SimulatorGuideTrainer) or increase num_samples",
                ImportanceWarning,
                stacklevel=3,
            )

    # ------------------------------------------------------------------ resampling
    def resample(
        self, theta: Tensor, num: int, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Sampling-importance-resampling from ``P_theta`` (approximate draws).

        Args:
            theta: shape ``batch + (P,)``.
            num: draws per ``theta``.
            generator: generator for the multinomial draws (default: the normaliser's).

        Returns:
            Flattened trajectories ``z`` of shape ``(num, *batch, d)`` (layout of
            :class:`bayes_irl.models.continuous.TrajectoryLayout`).
        """
        generator = self.generator if generator is None else generator
        with torch.no_grad():
            lw = self.log_weights(theta)
            batch = lw.shape[:-1]
            probs = torch.softmax(lw, -1).reshape(-1, self.num_samples)
            index = torch.multinomial(probs, num, replacement=True, generator=generator)
            pairs = torch.cat([self.states[:, :-1, :], self.actions], dim=-1).reshape(
                self.num_samples, -1
            )
            z = torch.cat([pairs, self.states[:, -1, :]], dim=-1)  # (K, d)
            draws = z[index]  # (prod(batch), num, d)
        return draws.transpose(0, 1).reshape(num, *batch, z.shape[-1])


class SimulatorGuideTrainer:
    """Train the guide policy of a :class:`SimulatorImportanceNormalizer` (its own optimiser).

    Use directly (:meth:`fit` at a fixed ``theta``) or as an SVI callback:
    ``fit(model, data, method="svi", callback=trainer)``.

    Args:
        normalizer: the normaliser whose ``policy`` is trained and whose rollouts are
            refreshed after each training round.
        objective: ``"reverse_kl"`` (REINFORCE on ``E_q[R - log q]``) or ``"forward_kl"``
            (self-normalised weighted maximum likelihood).
        learning_rate: Adam step size.
        num_rollouts: rollouts per reverse-KL step (default: the normaliser's ``K``).
        steps_per_call: policy steps per training round.
        every: as an SVI callback, train every ``every`` SVI steps.
        num_theta: ``theta`` draws from the Pyro guide per round (callback use).
        site: name of the reward parameter site in the Pyro guide (default ``"theta"``; for
            ``NeuralStateReward`` pass ``"mlp_weights"``).
        seed: seed of the trainer's generator (rollouts for the reverse-KL steps).

    Raises:
        ValueError: for an unknown objective or non-positive numbers.
    """

    OBJECTIVES = ("reverse_kl", "forward_kl")

    def __init__(
        self,
        normalizer: SimulatorImportanceNormalizer,
        *,
        objective: str = "reverse_kl",
        learning_rate: float = 0.01,
        num_rollouts: int | None = None,
        steps_per_call: int = 1,
        every: int = 1,
        num_theta: int = 4,
        site: str = "theta",
        seed: int = 0,
    ) -> None:
        if not isinstance(normalizer, SimulatorImportanceNormalizer):
            raise ValueError(
                f"`normalizer` must be a SimulatorImportanceNormalizer; got "
                f"{type(normalizer).__name__}"
            )
        if objective not in self.OBJECTIVES:
            raise ValueError(f"`objective` must be one of {self.OBJECTIVES}; got {objective!r}")
        if not (math.isfinite(learning_rate) and learning_rate > 0):
            raise ValueError(f"`learning_rate` must be > 0; got {learning_rate!r}")
        for name, value in [("steps_per_call", steps_per_call), ("every", every),
                            ("num_theta", num_theta)]:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an integer >= 1; got {value!r}")
        self.normalizer, self.objective, self.site = normalizer, objective, site
        self.num_rollouts = num_rollouts or normalizer.num_samples
        self.steps_per_call, self.every, self.num_theta = steps_per_call, every, num_theta
        self.optimizer = torch.optim.Adam(normalizer.policy.parameters(), lr=learning_rate)
        self.generator = torch.Generator().manual_seed(seed)
        self.history: list[float] = []

    def step(self, theta: Tensor) -> float:
        """One policy update at ``theta`` (shape ``(P,)`` or ``(M, P)``, averaged over M).

        Returns:
            The objective estimate before the update: for ``"reverse_kl"`` the lower bound
            ``E_q[log w] <= log Z`` (averaged over theta); for ``"forward_kl"`` the weighted
            log-likelihood ``sum_k w_k log q(z_k)``.
        """
        theta = torch.as_tensor(theta).detach()
        theta = theta.unsqueeze(0) if theta.ndim == 1 else theta.reshape(-1, theta.shape[-1])
        policy, norm = self.normalizer.policy, self.normalizer
        if self.objective == "reverse_kl":
            states, actions = rollout(
                norm.simulator, policy, self.num_rollouts, generator=self.generator
            )
            log_q = policy.trajectory_log_prob(states, actions)  # (K,), grad
            with torch.no_grad():
                returns = norm._returns(theta.unsqueeze(-2).to(states.dtype), states, actions)
                f = returns.mean(0) - log_q.detach()  # (K,)
                k = f.shape[0]
                baseline = (f.sum() - f) / (k - 1)  # leave-one-out
            loss = -((f - baseline) * log_q).mean()
            value = float(f.mean())
        else:
            with torch.no_grad():
                lw = norm.log_weights(theta.to(norm.states.dtype))  # (M, K)
                weights = torch.softmax(lw, -1).mean(0)  # (K,)
            log_q = policy.trajectory_log_prob(norm.states, norm.actions)
            loss = -(weights * log_q).sum()
            value = -float(loss.detach())
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.history.append(value)
        return value

    def fit(self, theta: Tensor, num_steps: int, *, refresh_every: int = 1) -> np.ndarray:
        """Train at a fixed ``theta`` for ``num_steps``; refresh the normaliser at the end.

        Args:
            theta: shape ``(P,)`` or ``(M, P)``.
            num_steps: policy updates.
            refresh_every: for ``"forward_kl"``, re-draw the rollouts every this many steps
                (the weights are relative to the policy that drew them).

        Returns:
            The objective per step, shape ``(num_steps,)``.
        """
        values = []
        for i in range(num_steps):
            values.append(self.step(theta))
            if self.objective == "forward_kl" and (i + 1) % refresh_every == 0:
                self.normalizer.refresh()
        self.normalizer.refresh()
        return np.asarray(values)

    def draw_theta(self, guide: Callable) -> Tensor:
        """``num_theta`` draws of the reward parameters from a Pyro (auto)guide, ``(M, P)``."""
        draws = []
        with torch.no_grad(), poutine.block():
            for _ in range(self.num_theta):
                values = guide()
                if not isinstance(values, dict) or self.site not in values:
                    raise ValueError(
                        f"the Pyro guide must return a dict with site {self.site!r} (autoguides "
                        "do); pass site= for other reward models"
                    )
                draws.append(values[self.site].reshape(-1))
        return torch.stack(draws)

    def __call__(self, step: int, loss: float, guide: Callable) -> None:
        """SVI callback: every ``every`` steps train at guide draws and refresh the rollouts."""
        if step % self.every:
            return
        theta = self.draw_theta(guide)
        for _ in range(self.steps_per_call):
            self.step(theta)
        self.normalizer.refresh()
