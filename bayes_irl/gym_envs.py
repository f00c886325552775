r"""Gymnasium environments wrapping the linear-quadratic dynamics (black-box simulators).

:class:`LinearQuadraticEnv` is a ``gymnasium.Env`` and :class:`LinearQuadraticVectorEnv` a
``gymnasium.vector.VectorEnv`` (``num_envs`` copies stepped in lockstep with numpy) for the
dynamics of a :class:`~bayes_irl.linear_quadratic.LinearQuadraticMDP`::

    reset:  x_0 ~ N(m_0, S_0)
    step:   x_{t+1} = A x_t + B u_t + L_W eps_t,   eps_t ~ N(0, I)
    reward: theta . phi(x_t, u_t) = -1/2 (sum_i q_i x_t[i]^2 + sum_j r_j u_t[j]^2)
    truncated = (t + 1 == T),  terminated = False.

Observation ``x_t`` (``Box(-inf, inf, (dx,), float64)``), action ``u_t``
(``Box(-inf, inf, (du,), float64)``). The reward is returned for information only, at a
fixed ``theta`` given to the constructor (zero when ``theta=None``): inverse RL never reads
it. Code that should not know the dynamics (the ``SimulatorProposal`` of
:mod:`bayes_irl.inference.normalizers.simulator_proposal`) uses ``reset``/``step`` only.

gymnasium is an optional dependency (``pip install bayes_irl[dev]`` or
``pip install gymnasium``); this module imports without it and raises an ``ImportError``
with that instruction when a class is used.

Examples:
    >>> from bayes_irl.linear_quadratic import LinearQuadraticMDP
    >>> env = LinearQuadraticEnv(LinearQuadraticMDP.default(dx=2, du=1, horizon=3))
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape
    (2,)
    >>> obs, reward, terminated, truncated, info = env.step([0.0])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bayes_irl.linear_quadratic import LinearQuadraticMDP

__all__ = ["LinearQuadraticEnv", "LinearQuadraticVectorEnv"]

try:
    import gymnasium as _gym
except ImportError:  # pragma: no cover - exercised only without gymnasium
    _gym = None

_MISSING = (
    "bayes_irl.gym_envs needs gymnasium, an optional dependency: install it with "
    "`pip install gymnasium` (or `pip install bayes_irl[dev]`)"
)


class _LQCore:
    """The numpy dynamics shared by the single and the vector environment."""

    def __init__(self, mdp: LinearQuadraticMDP, theta: Any) -> None:
        if not isinstance(mdp, LinearQuadraticMDP):
            raise ValueError(f"`mdp` must be a LinearQuadraticMDP; got {type(mdp).__name__}")
        self.mdp = mdp
        self.dx, self.du, self.horizon = mdp.state_dim, mdp.action_dim, mdp.horizon
        self.a = mdp.dynamics.detach().cpu().numpy().astype(np.float64)
        self.b = mdp.control.detach().cpu().numpy().astype(np.float64)
        self.l_w = mdp.noise_tril.detach().cpu().numpy().astype(np.float64)
        self.m0 = mdp.initial_mean.detach().cpu().numpy().astype(np.float64)
        self.l_0 = mdp.initial_tril.detach().cpu().numpy().astype(np.float64)
        if theta is None:
            self.theta = np.zeros(mdp.num_params)
        else:
            self.theta = mdp.check_theta(theta).detach().cpu().numpy().astype(np.float64)
            if self.theta.shape != (mdp.num_params,):
                raise ValueError(
                    f"`theta` must have shape ({mdp.num_params},); got {self.theta.shape}"
                )

    def initial(self, rng: np.random.Generator, num: int) -> np.ndarray:
        return self.m0 + rng.standard_normal((num, self.dx)) @ self.l_0.T

    def check_action(self, action: Any, num: int | None) -> np.ndarray:
        u = np.asarray(action, dtype=np.float64)
        shape = (self.du,) if num is None else (num, self.du)
        if u.shape != shape:
            raise ValueError(f"`action` must have shape {shape}; got {u.shape}")
        if not np.isfinite(u).all():
            raise ValueError("`action` must be finite (no NaN or inf)")
        return u

    def transition(self, rng: np.random.Generator, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        noise = rng.standard_normal(x.shape) @ self.l_w.T
        return x @ self.a.T + u @ self.b.T + noise

    def reward(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        q, r = self.theta[: self.dx], self.theta[self.dx :]
        return -0.5 * ((x**2) @ q + (u**2) @ r)


if _gym is not None:
    from gymnasium import spaces as _spaces

    class LinearQuadraticEnv(_gym.Env):
        """One LQ episode at a time behind the Gymnasium ``reset``/``step`` API.

        Args:
            mdp: the dynamics (copied to numpy float64).
            theta: reward parameters ``(D,)`` for the informational reward; ``None``: 0.

        Raises:
            ValueError: for a non-LQ ``mdp`` or a bad ``theta``; ``step`` raises for a
                wrong action shape, non-finite actions, or stepping past the horizon.
        """

        metadata = {"render_modes": []}

        def __init__(self, mdp: LinearQuadraticMDP, theta: Any = None) -> None:
            super().__init__()
            self._core = _LQCore(mdp, theta)
            c = self._core
            self.horizon = c.horizon
            self.observation_space = _spaces.Box(-np.inf, np.inf, (c.dx,), np.float64)
            self.action_space = _spaces.Box(-np.inf, np.inf, (c.du,), np.float64)
            self._x: np.ndarray | None = None
            self._t = 0

        def reset(self, *, seed: int | None = None, options: dict | None = None):
            """Start an episode: ``x_0 ~ N(m_0, S_0)``; returns ``(x_0 (dx,), {"t": 0})``."""
            super().reset(seed=seed)
            self._x = self._core.initial(self.np_random, 1)[0]
            self._t = 0
            return self._x.copy(), {"t": 0}

        def step(self, action: Any):
            """Apply ``u_t (du,)``; return ``(x_{t+1}, r_t, False, t + 1 == T, info)``."""
            if self._x is None or self._t >= self._core.horizon:
                raise ValueError("call reset() before step() (the episode has ended)")
            c = self._core
            u = c.check_action(action, None)
            reward = float(c.reward(self._x[None], u[None])[0])
            self._x = c.transition(self.np_random, self._x[None], u[None])[0]
            self._t += 1
            truncated = self._t == c.horizon
            return self._x.copy(), reward, False, truncated, {"t": self._t}

    class LinearQuadraticVectorEnv(_gym.vector.VectorEnv):
        """``num_envs`` LQ episodes stepped in lockstep (batched numpy, one RNG).

        All sub-environments share the horizon, so they truncate together; a ``step``
        after the truncation resets them all (Gymnasium's next-step autoreset) and returns
        the new initial observations with zero reward.

        Args:
            mdp: the dynamics.
            num_envs: number of parallel episodes (>= 1).
            theta: reward parameters ``(D,)`` for the informational reward; ``None``: 0.

        Raises:
            ValueError: for bad arguments; ``step`` raises for a wrong action shape.
        """

        metadata = {"render_modes": [], "autoreset_mode": _gym.vector.AutoresetMode.NEXT_STEP}

        def __init__(self, mdp: LinearQuadraticMDP, num_envs: int, theta: Any = None) -> None:
            if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
                raise ValueError(f"`num_envs` must be an integer >= 1; got {num_envs!r}")
            self._core = _LQCore(mdp, theta)
            c = self._core
            self.num_envs = num_envs
            self.horizon = c.horizon
            self.single_observation_space = _spaces.Box(-np.inf, np.inf, (c.dx,), np.float64)
            self.single_action_space = _spaces.Box(-np.inf, np.inf, (c.du,), np.float64)
            self.observation_space = _spaces.Box(
                -np.inf, np.inf, (num_envs, c.dx), np.float64
            )
            self.action_space = _spaces.Box(-np.inf, np.inf, (num_envs, c.du), np.float64)
            self._x: np.ndarray | None = None
            self._t = 0

        def reset(self, *, seed: int | None = None, options: dict | None = None):
            """Start ``num_envs`` episodes; returns ``(x_0 (num_envs, dx), {})``."""
            super().reset(seed=seed)
            self._x = self._core.initial(self.np_random, self.num_envs)
            self._t = 0
            return self._x.copy(), {}

        def step(self, actions: Any):
            """Apply ``u_t`` (shape ``(num_envs, du)``); returns batched Gymnasium tuples."""
            n = self.num_envs
            if self._x is None or self._t >= self._core.horizon:
                obs, info = self.reset()
                return obs, np.zeros(n), np.zeros(n, bool), np.zeros(n, bool), info
            c = self._core
            u = c.check_action(actions, n)
            rewards = c.reward(self._x, u)
            self._x = c.transition(self.np_random, self._x, u)
            self._t += 1
            truncated = np.full(n, self._t == c.horizon)
            return self._x.copy(), rewards, np.zeros(n, bool), truncated, {}

else:  # pragma: no cover - exercised only without gymnasium

    def __getattr__(name: str):
        if name in __all__:
            raise ImportError(_MISSING)
        raise AttributeError(name)
