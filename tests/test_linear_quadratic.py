"""Tests for the LQ maxent environment and its analytic normaliser.

Tolerances:
- float64 identities (dense vs recursion, flatten round trips, log densities against
  torch.distributions) use rtol 1e-10: both sides are exact formulas and differ only by
  rounding in O(d^3) (d <= 92) float64 operations.
- Numerical integration (scipy tplquad, epsabs/epsrel 1e-10 on a box holding > 8 sd) is
  compared at 1e-6 in log Z, the accuracy the brief asks for with margin for quadrature error.
- Monte-Carlo comparisons use 4 standard errors per coordinate: with 20000 exact samples the
  CLT holds well, a correct implementation exceeds 4 s.e. with probability 6e-5 per
  coordinate (about 1e-3 over all coordinates of this file), while a bias of a few percent of a
  standard deviation is still detected; the generators are seeded, so the outcome is fixed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from bayes_irl.inference.normalizers.exact import ExactNormalizer
from bayes_irl.linear_quadratic import (
    LinearQuadraticMDP,
    TrajectoryGaussian,
    log_partition,
    sample_demonstrations,
)
from bayes_irl.rewards.continuous import QuadraticReward

F64 = torch.float64
N_SE = 4.0  # Monte-Carlo tolerance in standard errors, see the module docstring
THETAS = [
    [1.0, 0.5, 0.1],
    [0.01, 3.0, 2.0],
    [10.0, 0.2, 0.05],
    [1e-3, 1e-3, 1e3],
]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # Tiny linear-algebra ops (3x3 Cholesky -> aten::tril) enter torch's thread pool; on this
    # 2-core machine under load, 2 threads made each such op ~1000x slower (6 ms instead of
    # 3 us; the benchmarks also measured 1 thread faster). Restored after each test.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _theta(values) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _reward(mdp: LinearQuadraticMDP) -> QuadraticReward:
    return QuadraticReward(mdp.state_dim, mdp.action_dim)


def _log_z(mdp: LinearQuadraticMDP, theta, method: str = "recursion") -> torch.Tensor:
    """log Z through the normaliser interface: ExactNormalizer(mdp).log_normalizer."""
    return ExactNormalizer(mdp, method=method).log_normalizer(_reward(mdp), theta)


def _scalar_mdp() -> LinearQuadraticMDP:
    # dx = du = 1, T = 1: z = (x0, u0, x1) is 3-D, small enough for scipy quadrature.
    return LinearQuadraticMDP(
        dynamics=[[0.9]],
        control=[[0.5]],
        noise_cov=[[0.3]],
        initial_mean=[0.4],
        initial_cov=[[0.5]],
        horizon=1,
    )


def _random_mdp(dx: int, du: int, horizon: int, seed: int) -> LinearQuadraticMDP:
    gen = _generator(seed)
    a = 0.9 * torch.eye(dx, dtype=F64) + 0.2 * torch.randn(dx, dx, generator=gen, dtype=F64)
    w = torch.randn(dx, dx, generator=gen, dtype=F64)
    s = torch.randn(dx, dx, generator=gen, dtype=F64)
    return LinearQuadraticMDP(
        dynamics=a,
        control=torch.randn(dx, du, generator=gen, dtype=F64),
        noise_cov=0.1 * w @ w.T + 0.05 * torch.eye(dx, dtype=F64),
        initial_mean=torch.randn(dx, generator=gen, dtype=F64),
        initial_cov=0.2 * s @ s.T + 0.1 * torch.eye(dx, dtype=F64),
        horizon=horizon,
    )


# ----------------------------------------------------------------------------- environment


def test_default_system_is_stable_and_controllable():
    mdp = LinearQuadraticMDP.default(dx=2, du=1, horizon=10)
    assert (mdp.state_dim, mdp.action_dim, mdp.horizon, mdp.num_params) == (2, 1, 10, 3)
    assert mdp.param_names == ["q_0", "q_1", "r_0"]
    assert mdp.trajectory_dim == 10 * 3 + 2
    assert torch.linalg.eigvals(mdp.dynamics).abs().max() < 1.0
    for dx, du in [(2, 1), (3, 1), (3, 2), (1, 1)]:
        m = LinearQuadraticMDP.default(dx=dx, du=du)
        blocks = [torch.linalg.matrix_power(m.dynamics, k) @ m.control for k in range(dx)]
        assert torch.linalg.matrix_rank(torch.cat(blocks, dim=-1)) == dx


def test_flatten_unflatten_round_trip():
    mdp = LinearQuadraticMDP.default(horizon=4)
    gen = _generator(0)
    states = torch.randn(3, 5, 2, generator=gen, dtype=F64)
    actions = torch.randn(3, 4, 1, generator=gen, dtype=F64)
    z = mdp.flatten(states, actions)
    assert z.shape == (3, mdp.trajectory_dim)
    torch.testing.assert_close(z[0, :3], torch.cat([states[0, 0], actions[0, 0]]))
    torch.testing.assert_close(z[0, -2:], states[0, -1])
    s2, a2 = mdp.unflatten(z)
    torch.testing.assert_close(s2, states, rtol=0, atol=0)
    torch.testing.assert_close(a2, actions, rtol=0, atol=0)


def test_features_returns_and_log_base_against_torch_distributions():
    mdp = _random_mdp(dx=2, du=2, horizon=3, seed=1)
    gen = _generator(1)
    states = torch.randn(6, 4, 2, generator=gen, dtype=F64)
    actions = torch.randn(6, 3, 2, generator=gen, dtype=F64)
    feats = mdp.features(states, actions)
    assert feats.shape == (6, 4)
    # x_T carries no reward: only t = 0..T-1 enter the state features.
    torch.testing.assert_close(feats[:, :2], -0.5 * states[:, :3].pow(2).sum(1))
    torch.testing.assert_close(feats[:, 2:], -0.5 * actions.pow(2).sum(1))
    theta = _theta([1.0, 2.0, 3.0, 4.0])
    torch.testing.assert_close(mdp.returns(theta, states, actions), feats @ theta)

    mvn = torch.distributions.MultivariateNormal
    expected = mvn(mdp.initial_mean, mdp.initial_cov).log_prob(states[:, 0])
    for t in range(3):
        loc = states[:, t] @ mdp.dynamics.T + actions[:, t] @ mdp.control.T
        expected = expected + mvn(loc, mdp.noise_cov).log_prob(states[:, t + 1])
    log_base = mdp.log_base(mdp.flatten(states, actions))
    torch.testing.assert_close(log_base, expected, rtol=1e-10, atol=1e-10)


def test_simulate_shapes_and_dynamics():
    mdp = LinearQuadraticMDP.default(horizon=6)
    states, actions = mdp.simulate(lambda t, x: -x[:, 1:2], 50, _generator(2))
    assert states.shape == (50, 7, 2) and actions.shape == (50, 6, 1)
    torch.testing.assert_close(actions[:, 2], -states[:, 2, 1:2])
    again, _ = mdp.simulate(lambda t, x: -x[:, 1:2], 50, _generator(2))
    torch.testing.assert_close(states, again, rtol=0, atol=0)


def test_sample_demonstrations_shapes_and_reproducibility():
    mdp = LinearQuadraticMDP.default(horizon=5)
    theta = _theta([1.0, 0.5, 0.1])
    states, actions = sample_demonstrations(mdp, theta, 7, generator=_generator(3))
    assert states.shape == (7, 6, 2) and actions.shape == (7, 5, 1)
    states2, _ = sample_demonstrations(mdp, theta, 7, generator=_generator(3))
    torch.testing.assert_close(states, states2, rtol=0, atol=0)
    batched, _ = sample_demonstrations(mdp, theta.expand(3, 3), 4, generator=_generator(3))
    assert batched.shape == (4, 3, 6, 2)


# ----------------------------------------------------------------------------- normaliser


@pytest.mark.parametrize("horizon", [1, 5, 30])
@pytest.mark.parametrize("theta", THETAS)
def test_dense_equals_recursion(horizon, theta):
    mdp = LinearQuadraticMDP.default(dx=2, du=1, horizon=horizon)
    theta = _theta(theta)
    recursion = _log_z(mdp, theta)
    dense = _log_z(mdp, theta, method="dense")
    assert recursion.shape == ()
    torch.testing.assert_close(recursion, dense, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("horizon", [1, 5, 30])
def test_dense_equals_recursion_random_system_batched(horizon):
    mdp = _random_mdp(dx=2, du=1, horizon=horizon, seed=horizon)
    theta = 0.05 + torch.rand(3, 2, 3, generator=_generator(horizon), dtype=F64) * 2.0
    recursion = _log_z(mdp, theta, method="recursion")
    dense = _log_z(mdp, theta, method="dense")
    assert recursion.shape == (3, 2) and dense.shape == (3, 2)
    torch.testing.assert_close(recursion, dense, rtol=1e-10, atol=1e-10)
    # Batched evaluation agrees with one-at-a-time evaluation.
    single = _log_z(mdp, theta[1, 0])
    torch.testing.assert_close(recursion[1, 0], single, rtol=1e-12, atol=1e-12)


def test_dense_equals_recursion_for_indefinite_but_integrable_state_cost():
    # A slightly negative state weight can still leave Lambda positive definite (T = 1).
    mdp = LinearQuadraticMDP.default(horizon=1)
    theta = _theta([-1.0, 0.5, 0.3])
    torch.testing.assert_close(
        _log_z(mdp, theta),
        _log_z(mdp, theta, method="dense"),
        rtol=1e-10,
        atol=1e-10,
    )


def test_log_normalizer_against_scipy_quadrature():
    mdp = _scalar_mdp()
    theta = np.array([0.7, 1.3])
    a, b, w, m0, s0 = 0.9, 0.5, 0.3, 0.4, 0.5

    def integrand(x1, u0, x0):
        log_b = (
            -0.5 * (x0 - m0) ** 2 / s0
            - 0.5 * math.log(2 * math.pi * s0)
            - 0.5 * (x1 - a * x0 - b * u0) ** 2 / w
            - 0.5 * math.log(2 * math.pi * w)
        )
        reward = -0.5 * (theta[0] * x0**2 + theta[1] * u0**2)
        return math.exp(log_b + reward)

    # Standard deviations of all coordinates are < 1, so [-8, 8]^3 holds > 8 sd.
    z, err = integrate.tplquad(integrand, -8, 8, -8, 8, -8, 8, epsabs=1e-10, epsrel=1e-10)
    assert err < 1e-8 * z
    for method in ["recursion", "dense"]:
        log_z = _log_z(mdp, torch.from_numpy(theta), method=method)
        assert abs(float(log_z) - math.log(z)) < 1e-6


def test_gradient_equals_exact_expected_features():
    # grad log Z = E_P[sum_t phi]; the right side exactly from the Gaussian's moments.
    mdp = _random_mdp(dx=2, du=1, horizon=8, seed=4)
    theta = _theta([[0.8, 1.5, 0.4], [2.0, 0.1, 1.0]]).requires_grad_()
    log_z = _log_z(mdp, theta)
    (grad,) = torch.autograd.grad(log_z.sum(), theta)
    gaussian = mdp.trajectory_gaussian(theta.detach())
    second_moment = gaussian.covariance.diagonal(dim1=-2, dim2=-1) + gaussian.mean.pow(2)
    states_m2, actions_m2 = mdp.unflatten(second_moment)
    expected = torch.cat([-0.5 * states_m2[..., :-1, :].sum(-2), -0.5 * actions_m2.sum(-2)], dim=-1)
    torch.testing.assert_close(grad, expected, rtol=1e-8, atol=1e-10)


def test_hessian_recursion_equals_dense():
    # Second derivatives (Laplace, NUTS mass matrices) go through the recursion's autograd
    # graph; Hess log Z = Cov_P[features] must agree with the dense reference.
    mdp = _random_mdp(dx=2, du=1, horizon=12, seed=9)
    theta = _theta([0.8, 1.5, 0.4])
    hessians = [
        torch.autograd.functional.hessian(
            lambda t, m=method: _log_z(mdp, t, method=m), theta
        )
        for method in ["recursion", "dense"]
    ]
    torch.testing.assert_close(hessians[0], hessians[1], rtol=1e-8, atol=1e-10)
    assert torch.linalg.eigvalsh(hessians[0]).min() > 0  # a covariance: log Z is convex


@pytest.mark.parametrize("noise_std", [1e-5, 0.05, 1e3])
def test_recursion_float32_matches_float64(noise_std):
    # The recursion never forms W^{-1}, so float32 stays accurate for nearly deterministic
    # and for very noisy dynamics. rtol 1e-5: float32 eps is 6e-8 and T = 50 steps each add
    # a few roundings to a log Z of size 1e1..1e3 (measured error <= 3e-7 relative).
    theta = [1.0, 0.5, 0.1]
    values = []
    for dtype in [torch.float32, F64]:
        mdp = LinearQuadraticMDP.default(horizon=50, noise_std=noise_std, dtype=dtype)
        values.append(_log_z(mdp, torch.tensor(theta)))
    assert values[0].dtype == torch.float32
    torch.testing.assert_close(values[0].double(), values[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["recursion", "dense"])
def test_gradient_matches_monte_carlo_feature_means(method):
    mdp = LinearQuadraticMDP.default(dx=2, du=1, horizon=10)
    theta = _theta([1.0, 0.5, 0.1]).requires_grad_()
    (grad,) = torch.autograd.grad(
        _log_z(mdp, theta, method=method), theta
    )
    states, actions = sample_demonstrations(mdp, theta.detach(), 20000, generator=_generator(5))
    feats = mdp.features(states, actions)
    mean, se = feats.mean(0), feats.std(0) / math.sqrt(feats.shape[0])
    assert torch.all((grad - mean).abs() < N_SE * se), (grad, mean, se)


def test_log_prob_of_exact_samples_matches_negative_entropy():
    mdp = LinearQuadraticMDP.default(dx=2, du=1, horizon=10)
    normaliser = ExactNormalizer(mdp)
    theta = _theta([1.0, 0.5, 0.1])
    states, actions = sample_demonstrations(mdp, theta, 20000, generator=_generator(6))
    log_p = normaliser.log_likelihood(_reward(mdp), theta, mdp.flatten(states, actions))
    assert log_p.shape == (20000,)
    gaussian = mdp.trajectory_gaussian(theta)
    assert isinstance(gaussian, TrajectoryGaussian)
    se = log_p.std() / math.sqrt(log_p.numel())
    assert abs(log_p.mean() + gaussian.entropy()) < N_SE * se
    # Pointwise, log_prob is exactly the Gaussian log density of the flattened trajectory.
    z = mdp.flatten(states[:50], actions[:50])
    torch.testing.assert_close(log_p[:50], gaussian.log_prob(z), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(
        log_p[:50], gaussian.to_distribution().log_prob(z), rtol=1e-10, atol=1e-10
    )


def test_log_prob_broadcasts_theta_against_trajectories():
    mdp = LinearQuadraticMDP.default(horizon=4)
    normaliser, reward = ExactNormalizer(mdp), _reward(mdp)
    theta = 0.1 + torch.rand(3, 1, 3, generator=_generator(7), dtype=F64)
    states, actions = sample_demonstrations(mdp, theta[0, 0], 5, generator=_generator(7))
    z = mdp.flatten(states, actions)
    log_p = normaliser.log_likelihood(reward, theta, z)
    assert log_p.shape == (3, 5)
    torch.testing.assert_close(
        log_p[2, 4], normaliser.log_likelihood(reward, theta[2, 0], z[4]), rtol=1e-12, atol=0
    )


def test_trajectory_distribution_moments():
    mdp = LinearQuadraticMDP.default(horizon=3)
    gaussian = mdp.trajectory_gaussian(_theta([[1.0, 0.5, 0.1]]))
    assert gaussian.mean.shape == (1, mdp.trajectory_dim)
    assert gaussian.precision.shape == (1, mdp.trajectory_dim, mdp.trajectory_dim)
    eye = torch.eye(mdp.trajectory_dim, dtype=F64)
    torch.testing.assert_close(gaussian.covariance @ gaussian.precision, eye.expand(1, -1, -1))
    z = gaussian.sample((4, 2), generator=_generator(8))
    assert z.shape == (4, 2, 1, mdp.trajectory_dim)


# ----------------------------------------------------------------------------- validation

_GOOD = {
    "dynamics": [[1.0, 0.1], [0.0, 1.0]],
    "control": [[0.0], [0.1]],
    "noise_cov": [[0.01, 0.0], [0.0, 0.01]],
    "initial_mean": [1.0, 0.0],
    "initial_cov": [[0.1, 0.0], [0.0, 0.1]],
    "horizon": 5,
}


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"dynamics": [[1.0, 0.1]]}, r"`dynamics` must be a square matrix"),
        ({"dynamics": [[1.0, float("nan")], [0.0, 1.0]]}, r"`dynamics` must be finite"),
        ({"control": [[0.0], [0.1], [0.2]]}, r"`control` must have shape \(dx, du\) = \(2, du\)"),
        ({"control": [0.0, 0.1]}, r"`control` must have shape"),
        ({"control": [[0.0], [float("inf")]]}, r"`control` must be finite"),
        ({"noise_cov": [[0.01]]}, r"`noise_cov` must have shape \(2, 2\)"),
        ({"noise_cov": [[0.01, 0.005], [0.0, 0.01]]}, r"`noise_cov` must be symmetric"),
        ({"noise_cov": [[0.01, 0.0], [0.0, -0.01]]}, r"`noise_cov` must be positive definite"),
        ({"initial_mean": [1.0]}, r"`initial_mean` must have shape \(2,\)"),
        ({"initial_mean": [1.0, float("nan")]}, r"`initial_mean` must be finite"),
        ({"initial_cov": [[1.0, 2.0], [2.0, 1.0]]}, r"`initial_cov` must be positive definite"),
        ({"initial_cov": "abc"}, r"`initial_cov` must be array-like"),
        ({"horizon": 0}, r"`horizon` must be an integer >= 1"),
        ({"horizon": 2.5}, r"`horizon` must be an integer >= 1"),
        ({"horizon": True}, r"`horizon` must be an integer >= 1"),
        ({"dtype": torch.int64}, r"`dtype` must be a floating-point"),
    ],
)
def test_constructor_errors(override, match):
    with pytest.raises(ValueError, match=match):
        LinearQuadraticMDP(**{**_GOOD, **override})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"du": 3}, r"`du` must be an integer with 1 <= du <= dx"),
        ({"dx": 0}, r"`dx` must be an integer >= 1"),
        ({"noise_std": 0.0}, r"`noise_std` must be a finite positive number"),
    ],
)
def test_default_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LinearQuadraticMDP.default(**kwargs)


@pytest.mark.parametrize("method", ["recursion", "dense"])
@pytest.mark.parametrize(
    ("theta", "match"),
    [
        ([1.0, 0.5], r"`theta` must have shape \(\.\.\., 3\)"),
        ([[1.0, 0.5, 0.1, 0.2]], r"`theta` must have shape \(\.\.\., 3\)"),
        ([1.0, float("nan"), 0.1], r"`theta` must be finite"),
        ([1.0, 0.5, float("inf")], r"`theta` must be finite"),
        ([1.0, 0.5, 0.0], r"`theta` control weights r = theta\[\.\.\., 2:\] must be > 0"),
        ([[1.0, 0.5, 0.1], [1.0, 0.5, -0.1]], r"`theta` control weights"),
        ([-50.0, -50.0, 0.1], r"`theta` gives a trajectory precision .* not positive definite"),
    ],
)
def test_log_normalizer_errors(method, theta, match):
    mdp = LinearQuadraticMDP.default(horizon=5)
    normaliser = ExactNormalizer(mdp, method=method)
    with pytest.raises(ValueError, match=match):
        normaliser.log_normalizer(_reward(mdp), _theta(theta))
    with pytest.raises(ValueError, match=match):
        log_partition(mdp, _theta(theta), method=method)


def test_other_errors():
    mdp = LinearQuadraticMDP.default(horizon=3)
    normaliser, reward = ExactNormalizer(mdp), _reward(mdp)
    theta = _theta([1.0, 0.5, 0.1])
    states, actions = torch.zeros(4, 4, 2, dtype=F64), torch.zeros(4, 3, 1, dtype=F64)
    with pytest.raises(ValueError, match=r"`method` must be one of"):
        ExactNormalizer(mdp, method="exact")
    with pytest.raises(ValueError, match=r"`method` must be one of"):
        log_partition(mdp, theta, method="exact")
    with pytest.raises(ValueError, match=r"space must be a TabularMDP or a LinearQuadraticMDP"):
        ExactNormalizer("not an mdp")
    with pytest.raises(ValueError, match=r"reward must be a QuadraticReward .* = \(2, 1\)"):
        normaliser.log_normalizer(QuadraticReward(3, 1), theta)
    with pytest.raises(ValueError, match=r"kind must be 'global'"):
        ExactNormalizer(mdp, kind="causal")
    with pytest.raises(ValueError, match=r"`states` must have shape \(\.\.\., T\+1, dx\)"):
        mdp.flatten(states[:, :3], actions)
    with pytest.raises(ValueError, match=r"`z` must have shape"):
        normaliser.log_likelihood(reward, theta, torch.zeros(4, 12, dtype=F64))
    with pytest.raises(ValueError, match=r"`actions` must have shape \(\.\.\., T, du\)"):
        mdp.features(states, torch.zeros(4, 3, 2, dtype=F64))
    with pytest.raises(ValueError, match=r"batch shapes of `states`"):
        mdp.flatten(states, actions[:3])
    with pytest.raises(ValueError, match=r"must be finite"):
        mdp.log_base(torch.full((4, mdp.trajectory_dim), float("nan"), dtype=F64))
    with pytest.raises(ValueError, match=r"batch shape of `theta` \(2,\) does not broadcast"):
        normaliser.log_likelihood(reward, theta.expand(2, 3), mdp.flatten(states, actions))
    with pytest.raises(ValueError, match=r"`z` must have shape"):
        mdp.unflatten(torch.zeros(5, dtype=F64))
    with pytest.raises(ValueError, match=r"`num` must be an integer >= 1"):
        sample_demonstrations(mdp, theta, 0)
    with pytest.raises(ValueError, match=r"`theta` control weights"):
        sample_demonstrations(mdp, _theta([1.0, 0.5, -1.0]), 3)
    with pytest.raises(ValueError, match=r"`policy_fn` must return actions of shape"):
        mdp.simulate(lambda t, x: x, 3, _generator(0))
    with pytest.raises(ValueError, match=r"`num` must be an integer >= 1"):
        mdp.simulate(lambda t, x: x[:, :1], 0, _generator(0))


def test_given_initial_state_likelihood_and_sampling():
    # log P(z | x_0) from the recursion's conditional log Z equals the density of the
    # conditional Gaussian of (u_0, ..., x_T) given x_0 from the dense precision (two
    # independent computations; float64 identities, rtol 1e-10 as above).
    from bayes_irl.linear_quadratic.gaussian import conditional_gaussian

    mdp = _random_mdp(dx=2, du=1, horizon=6, seed=11)
    normaliser, reward = ExactNormalizer(mdp), _reward(mdp)
    theta = _theta([[0.8, 1.5, 0.4], [2.0, 0.1, 1.0]]).unsqueeze(-2)  # (2, 1, 3)
    z = normaliser.sample(reward, theta[:, 0], (5,), generator=_generator(12))  # (5, 2, d)
    assert z.shape == (5, 2, mdp.trajectory_dim)
    z = z.transpose(0, 1)  # (2, 5, d)
    log_p = normaliser.log_likelihood(reward, theta, z, given_initial_state=True)
    assert log_p.shape == (2, 5)
    dx = mdp.state_dim
    conditional = conditional_gaussian(mdp.quadratic_form(theta), z[..., :dx], theta, dx)
    expected = conditional.log_prob(z[..., dx:])
    torch.testing.assert_close(log_p, expected, rtol=1e-10, atol=1e-10)
    # the joint likelihood adds log p(x_0 | theta), a normalised density: not the same
    joint = normaliser.log_likelihood(reward, theta, z)
    assert not torch.allclose(joint, log_p)
    contexts = normaliser.sample(
        reward, theta[:, 0], (3,), given_initial_state=True, generator=_generator(13)
    )
    assert contexts.shape == (3, 2, mdp.trajectory_dim)
    assert torch.isfinite(normaliser.log_likelihood(reward, theta, contexts.transpose(0, 1),
                                                    given_initial_state=True)).all()
