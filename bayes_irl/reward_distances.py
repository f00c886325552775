r"""Distances between rewards of a tabular MDP that ignore what does not change behaviour.

Two rewards that differ by *potential shaping* and a *positive scale*,

    R'(s, a, s') = alpha * (R(s, a, s') + gamma * Phi(s') - Phi(s)),   alpha > 0,

have the same optimal policies in every discounted MDP with these dynamics (Ng et al.
1999), so comparing reward tables entry by entry (or weight vectors) is misleading. The
three pseudometrics of the field remove shaping by a *canonicalisation* C and scale by a
normalisation, then compare; each is 0 exactly for such pairs and satisfies the triangle
inequality. All three are computed here in closed form from the known transitions
``P[s, a, s']`` of a :class:`~bayes_irl.TabularMDP`, on the stationary discounted MDP with
those transitions (the finite horizon does not enter; absorbing terminal states are
ordinary states). Rewards are ``r[s, a]`` (shape (S, A), the library's step rewards, read
as R(s, a, s') = r(s, a)) or ``R[s, a, s']`` (shape (S, A, S)), with any leading batch
dimensions.

**EPIC** (Gleave et al. 2021, eq. 5-6), with D_S, D_A uniform over states and actions:

    C(R)(s, a, s') = R(s, a, s') + E[gamma R(s', A, S') - R(s, A, S') - gamma R(S, A, S')]
    d_EPIC(R1, R2) = sqrt((1 - rho(C(R1), C(R2))) / 2)

with S, S' ~ D_S independent, A ~ D_A, and rho the Pearson correlation over (s, a, s')
uniform on S x A x S. EPIC does not use the transitions.

**DARD** (Wulfe et al. 2022, eq. 4), which only evaluates R on transitions the dynamics
can make:

    C(R)(s, a, s') = R(s, a, s') + E[gamma R(s', A, S'') - R(s, A, S') - gamma R(S', A, S'')]

with A ~ D_A, S' ~ P(. | s, A), S'' ~ P(. | s', A); rho is the Pearson correlation over
(s, a) uniform and s' ~ P(. | s, a). Cost O(A S^3) for (S, A, S) rewards (the term
E R(S', A, S'') couples s and s').

**STARC** (Skalse et al. 2024), with the value-adjusted levelling canonicalisation for the
uniform policy pi and the L2 norm:

    C(R)(s, a) = E_{S' ~ P(.|s,a)}[R(s, a, S') + gamma V^pi(S')] - V^pi(s)
    d_STARC(R1, R2) = || C(R1)/||C(R1)|| - C(R2)/||C(R2)|| ||_2 / 2

(a zero canonical reward stays zero), in [0, 1]; V^pi solves (I - gamma P_pi) V = r_pi,
so gamma < 1.

Distances of posteriors: :func:`posterior_reward_distances` maps reward-parameter draws
(N, D) through a reward model and returns N distances to a reference reward (e.g. the
Gymnasium environment's own reward, ``mdp.reference_reward``) or, paired draw by draw,
between two posteriors.

References:
    Gleave, Dennis, Legg, Russell, Leike (2021). Quantifying differences in reward
    functions. ICLR. Wulfe, Balakrishna, Ellis, Mercat, McAllister, Gaidon (2022).
    Dynamics-aware comparison of learned reward functions. ICLR. Skalse, Farnik,
    Motwani, Jenner, Gleave, Abate (2024). STARC: a general framework for quantifying
    differences between reward functions. ICLR. Ng, Harada, Russell (1999). Policy
    invariance under reward transformations. ICML.

Example:
    >>> import torch
    >>> from bayes_irl import GridWorld
    >>> mdp = GridWorld.create(size=3, seed=0).mdp
    >>> r = torch.randn(9, 5, dtype=torch.float64)
    >>> phi = torch.randn(9, dtype=torch.float64)
    >>> shaped = 2.0 * (r[:, :, None] + 0.9 * phi[None, None, :] - phi[:, None, None])
    >>> float(epic_distance(mdp, r, shaped, discount=0.9)) < 1e-10
    True
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from bayes_irl.mdp import TabularMDP

__all__ = [
    "METRICS",
    "canonicalize",
    "dard_distance",
    "epic_distance",
    "posterior_reward_distances",
    "reward_distance",
    "starc_distance",
]

Metric = Literal["epic", "dard", "starc"]
METRICS: tuple[str, ...] = ("epic", "dard", "starc")


def _check_discount(discount: float, *, strict: bool) -> float:
    value = float(discount)
    upper_ok = value < 1 if strict else value <= 1
    if not (0 < value and upper_ok) or value != value:
        bound = "(0, 1)" if strict else "(0, 1]"
        raise ValueError(f"discount must lie in {bound}; got {discount!r}")
    return value


def _as_transition_reward(mdp: TabularMDP, reward: Any, name: str) -> torch.Tensor:
    """``R[..., s, a, s']`` of shape ``batch + (S, A, S)`` from (S, A) or (S, A, S) input."""
    r = torch.as_tensor(reward).to(dtype=mdp.dtype, device=mdp.device)
    s, a = mdp.num_states, mdp.num_actions
    if r.dim() >= 2 and r.shape[-2:] == (s, a):
        r = r.unsqueeze(-1).expand(*r.shape, s)
    elif not (r.dim() >= 3 and r.shape[-3:] == (s, a, s)):
        raise ValueError(
            f"{name} must have shape (..., {s}, {a}) (r[s, a]) or (..., {s}, {a}, {s}) "
            f"(R[s, a, s']); got {tuple(r.shape)}"
        )
    if not bool(torch.isfinite(r).all()):
        raise ValueError(f"{name} must be finite (found NaN or inf)")
    return r


def _epic_canonical(r: torch.Tensor, discount: float) -> torch.Tensor:
    per_state = r.mean((-2, -1))  # E_{A, S'} R(x, A, S'), shape (..., S)
    overall = per_state.mean(-1)[..., None, None, None]  # E_{S, A, S'} R
    return (
        r
        + discount * per_state[..., None, None, :]
        - per_state[..., :, None, None]
        - discount * overall
    )


def _dard_canonical(r: torch.Tensor, p: torch.Tensor, discount: float) -> torch.Tensor:
    # u[x] = E_{A, Y ~ P(.|x, A)} R(x, A, Y)
    u = (p * r).sum(-1).mean(-1)  # (..., S)
    # w[s, s'] = E_A sum_{x, y} P(x | s, A) P(y | s', A) R(x, A, y)
    inner = torch.einsum("...xay,zay->...axz", r, p)  # sum_y R[x, a, y] P[s', a, y]
    w = torch.einsum("sax,...axz->...sz", p, inner) / p.shape[1]
    return (
        r + discount * u[..., None, None, :] - u[..., :, None, None] - discount * w[..., :, None, :]
    )


def _starc_canonical(r: torch.Tensor, p: torch.Tensor, discount: float) -> torch.Tensor:
    num_states = p.shape[0]
    expected = (p * r).sum(-1)  # E_{S'} R(s, a, S'), (..., S, A)
    p_pi = p.mean(1)  # uniform policy, (S, S')
    r_pi = expected.mean(-1)  # (..., S)
    eye = torch.eye(num_states, dtype=p.dtype, device=p.device)
    values = torch.linalg.solve(eye - discount * p_pi, r_pi.unsqueeze(-1)).squeeze(-1)
    next_values = torch.einsum("sat,...t->...sa", p, values)
    return expected + discount * next_values - values[..., :, None]


def canonicalize(
    mdp: TabularMDP, reward: Any, *, metric: Metric = "epic", discount: float = 0.99
) -> torch.Tensor:
    """Return the shaping-free canonical reward of ``metric`` (see the module docstring).

    Args:
        mdp: the MDP (its transitions; EPIC uses only S and A).
        reward: ``r[..., s, a]`` (..., S, A) or ``R[..., s, a, s']`` (..., S, A, S).
        metric: ``"epic"``, ``"dard"`` or ``"starc"``.
        discount: gamma in (0, 1] ((0, 1) for STARC).

    Returns:
        ``C(R)[..., s, a, s']`` of shape (..., S, A, S) for EPIC and DARD, ``C(R)[..., s, a]``
        of shape (..., S, A) for STARC.

    Raises:
        ValueError: for an unknown metric, a discount out of range or a mis-shaped reward.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}; got {metric!r}")
    gamma = _check_discount(discount, strict=metric == "starc")
    r = _as_transition_reward(mdp, reward, "reward")
    if metric == "epic":
        return _epic_canonical(r, gamma)
    p = mdp.dense_transitions()
    if metric == "dard":
        return _dard_canonical(r, p, gamma)
    return _starc_canonical(r, p, gamma)


def _pearson_distance(x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sqrt((1 - rho) / 2)`` over the last three dims, weighted by ``weights`` (S, A, S).

    Computed as ``|| x_std - y_std ||_w / 2`` with x_std, y_std standardised to weighted
    mean 0 and variance 1 (the same number, since ``||x_std - y_std||^2 = 2 - 2 rho``):
    for rewards equal up to shaping and scale the differences are rounding-sized, whereas
    ``1 - rho`` would lose half the digits to the square root.
    """
    dims = (-3, -2, -1)

    def standardise(v: torch.Tensor) -> torch.Tensor:
        centred = v - (weights * v).sum(dims, keepdim=True)
        var = (weights * centred * centred).sum(dims, keepdim=True)
        if bool((var <= torch.finfo(v.dtype).tiny).any()):
            raise ValueError(
                "a canonicalised reward is constant (the reward is pure potential shaping "
                "or constant): its Pearson distance is undefined"
            )
        return centred / var.sqrt()

    diff = standardise(x) - standardise(y)
    return ((weights * diff * diff).sum(dims).sqrt() / 2.0).clamp(max=1.0)


def epic_distance(
    mdp: TabularMDP, reward_a: Any, reward_b: Any, *, discount: float = 0.99
) -> torch.Tensor:
    """EPIC distance (Gleave et al. 2021) between two rewards, in [0, 1].

    Args:
        mdp: the MDP (gives S and A).
        reward_a: ``r[..., s, a]`` or ``R[..., s, a, s']``.
        reward_b: same, batch dimensions broadcast with ``reward_a``.
        discount: gamma in (0, 1].

    Returns:
        Shape ``broadcast(batch_a, batch_b)``.

    Raises:
        ValueError: for mis-shaped rewards, a discount out of range, or a reward whose
            canonical form is constant.
    """
    ca = canonicalize(mdp, reward_a, metric="epic", discount=discount)
    cb = canonicalize(mdp, reward_b, metric="epic", discount=discount)
    s, a = mdp.num_states, mdp.num_actions
    weights = torch.full((s, a, s), 1.0 / (s * a * s), dtype=mdp.dtype, device=mdp.device)
    return _pearson_distance(ca, cb, weights)


def dard_distance(
    mdp: TabularMDP, reward_a: Any, reward_b: Any, *, discount: float = 0.99
) -> torch.Tensor:
    """DARD distance (Wulfe et al. 2022) between two rewards, in [0, 1].

    Args and Returns as :func:`epic_distance`; the canonicalisation and the coverage
    distribution ((s, a) uniform, s' ~ P(. | s, a)) use the MDP's transitions.
    """
    ca = canonicalize(mdp, reward_a, metric="dard", discount=discount)
    cb = canonicalize(mdp, reward_b, metric="dard", discount=discount)
    p = mdp.dense_transitions()
    weights = p / (mdp.num_states * mdp.num_actions)
    return _pearson_distance(ca, cb, weights)


def starc_distance(
    mdp: TabularMDP, reward_a: Any, reward_b: Any, *, discount: float = 0.99
) -> torch.Tensor:
    """STARC distance (Skalse et al. 2024; VAL canonicalisation, L2 norm), in [0, 1].

    Args and Returns as :func:`epic_distance`, with gamma in (0, 1).
    """
    ca = canonicalize(mdp, reward_a, metric="starc", discount=discount)
    cb = canonicalize(mdp, reward_b, metric="starc", discount=discount)

    def unit(c: torch.Tensor) -> torch.Tensor:
        norm = c.flatten(-2).norm(dim=-1)[..., None, None]
        return torch.where(norm > 0, c / norm.clamp(min=torch.finfo(c.dtype).tiny), 0.0)

    return (unit(ca) - unit(cb)).flatten(-2).norm(dim=-1) / 2.0


_DISTANCES = {"epic": epic_distance, "dard": dard_distance, "starc": starc_distance}


def reward_distance(
    mdp: TabularMDP,
    reward_a: Any,
    reward_b: Any,
    *,
    metric: Metric = "epic",
    discount: float = 0.99,
) -> torch.Tensor:
    """Distance ``metric`` (``"epic"``, ``"dard"`` or ``"starc"``) between two rewards.

    See :func:`epic_distance` for the arguments; returns ``broadcast(batch_a, batch_b)``.
    """
    if metric not in _DISTANCES:
        raise ValueError(f"metric must be one of {METRICS}; got {metric!r}")
    return _DISTANCES[metric](mdp, reward_a, reward_b, discount=discount)


def posterior_reward_distances(
    mdp: TabularMDP,
    reward_model: Any,
    draws: torch.Tensor,
    *,
    reference: Any = None,
    other_draws: torch.Tensor | None = None,
    other_reward_model: Any = None,
    metric: Metric = "epic",
    discount: float = 0.99,
) -> torch.Tensor:
    """The posterior distribution of a reward distance, one value per draw.

    Either the distance of every posterior reward to a fixed ``reference`` (e.g.
    ``mdp.reference_reward``, the environment's own reward, or the true reward of a
    simulation), or, with ``other_draws``, between two posteriors paired draw by draw
    (independent posteriors make every pairing a draw of the joint).

    Args:
        mdp: the MDP.
        reward_model: a tabular reward model (``step_rewards(theta) -> (..., S, A)``).
        draws: reward parameters theta, shape (N, D) (e.g.
            ``posterior.flat_samples()["weights"]``).
        reference: ``r[s, a]`` or ``R[s, a, s']`` to compare every draw with.
        other_draws: (N, D') draws of a second posterior, instead of ``reference``.
        other_reward_model: reward model of ``other_draws`` (default ``reward_model``).
        metric: ``"epic"``, ``"dard"`` or ``"starc"``.
        discount: gamma.

    Returns:
        Shape (N,): the distance for each draw.

    Raises:
        ValueError: unless exactly one of ``reference`` / ``other_draws`` is given, or for
            draws of mismatched counts.
    """
    if (reference is None) == (other_draws is None):
        raise ValueError("give exactly one of reference= and other_draws=")
    theta = torch.as_tensor(draws)
    if theta.dim() != 2:
        raise ValueError(f"draws must have shape (N, D); got {tuple(theta.shape)}")
    with torch.no_grad():
        rewards = reward_model.step_rewards(theta)
        if reference is not None:
            target = reference
        else:
            other = torch.as_tensor(other_draws)
            if other.dim() != 2 or other.shape[0] != theta.shape[0]:
                raise ValueError(
                    f"other_draws must have shape ({theta.shape[0]}, D'); got {tuple(other.shape)}"
                )
            target = (other_reward_model or reward_model).step_rewards(other)
        return reward_distance(mdp, rewards, target, metric=metric, discount=discount)
