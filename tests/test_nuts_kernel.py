"""The pure Hamiltonian kernels (inference/backends/nuts_kernel.py, hmc_kernel.py) and their
adaptation (inference/backends/adaptation.py)."""

import numpy as np
import pytest

from bayes_irl.inference.backends import adaptation, hmc_kernel, nuts_kernel

MEAN = np.array([1.0, -2.0])
COV = np.array([[1.0, 0.9 * 0.5], [0.9 * 0.5, 0.25]])  # correlation 0.9


class _Gaussian:
    """U(z) = (z - m)^T S^-1 (z - m) / 2 for N(m, S) = N(MEAN, COV)."""

    precision = np.linalg.inv(COV)

    def value_and_grad(self, z):
        diff = z - MEAN
        return 0.5 * diff @ self.precision @ diff, self.precision @ diff


def _rng(seed: int) -> dict:
    return np.random.default_rng(seed).bit_generator.state


def _nuts_state(seed: int = 3):
    return nuts_kernel.init(_Gaussian(), np.zeros(2), _rng(seed), inverse_mass_matrix=np.eye(2),
                            step_size=0.5, max_tree_depth=8)


def test_nuts_draws_equal_the_former_stateful_sampler():
    # Recorded from the former LeanNUTS (commit f139604) with this setting: 100 warm-up
    # steps with the windowed mass-matrix adaptation, then 200 draws; draws 0, 99 and 199
    # and the adapted step size. Any change in the order of the RNG draws or in the
    # algorithm moves them by O(1); 1e-12 leaves room for another BLAS's rounding only.
    state = adaptation.window_adaptation(nuts_kernel, _nuts_state(), _Gaussian(), 100,
                                         adapt_mass_matrix=True, target_accept_prob=0.9)
    draws = []
    for _ in range(200):
        state, _ = nuts_kernel.step(state, _Gaussian())
        draws.append(nuts_kernel.position(state))
    recorded = [[0.8072348917167002, -1.9883430815328065],
                [0.9767717694222651, -2.125043556348732],
                [1.3069215902625642, -1.8123475423202962]]
    np.testing.assert_allclose(np.array(draws)[[0, 99, 199]], recorded, rtol=1e-12)
    assert state.step_size == pytest.approx(0.29863602650546484, rel=1e-12)


@pytest.mark.parametrize("kernel", [nuts_kernel, hmc_kernel])
def test_step_is_pure(kernel):
    # the same state gives the same transition, and the state passed in is not changed
    if kernel is nuts_kernel:
        state = _nuts_state()
    else:
        state = hmc_kernel.init(_Gaussian(), np.zeros(2), _rng(3), inverse_mass_matrix=np.eye(2),
                                step_size=0.3, trajectory_length=1.5)
    x, rng_state = state.x.copy(), dict(state.rng_state)
    first, info = kernel.step(state, _Gaussian())
    again, info_again = kernel.step(state, _Gaussian())
    np.testing.assert_array_equal(state.x, x)
    assert state.rng_state == rng_state
    np.testing.assert_array_equal(first.x, again.x)
    assert info == info_again
    assert first.rng_state != state.rng_state
    assert set(info._fields) >= {"diverging", "n_steps", "energy", "acceptance_rate",
                                 "step_size", "lp"}


def _sample(kernel, state, warmup: int, draws: int, *, adapt_mass_matrix: bool):
    state = adaptation.window_adaptation(kernel, state, _Gaussian(), warmup,
                                         adapt_mass_matrix=adapt_mass_matrix,
                                         target_accept_prob=0.9)
    out, infos = [], []
    for _ in range(draws):
        state, info = kernel.step(state, _Gaussian())
        out.append(kernel.position(state))
        infos.append(info)
    return state, np.array(out), infos


@pytest.mark.parametrize("kernel, adapt_mass_matrix",
                         [(nuts_kernel, False), (nuts_kernel, True), (hmc_kernel, True)])
def test_kernels_sample_a_correlated_gaussian(kernel, adapt_mass_matrix):
    # Target N(m, S), correlation 0.9, from a deliberately poor whitening (identity). 4000
    # draws after 300 warm-up: the mean within 0.16 sd (5 Monte Carlo standard errors at an
    # ESS of 1000, exceeded by both kernels here), the sds within 10%, the correlation
    # within 0.05.
    start = np.random.default_rng(3).bit_generator.state
    if kernel is nuts_kernel:
        state = _nuts_state()
    else:
        state = hmc_kernel.init(_Gaussian(), np.zeros(2), start, inverse_mass_matrix=np.eye(2),
                                step_size=0.5, trajectory_length=1.5)
    _, draws, infos = _sample(kernel, state, 300, 4000, adapt_mass_matrix=adapt_mass_matrix)
    sd = np.sqrt(np.diag(COV))
    assert np.all(np.abs(draws.mean(0) - MEAN) < 0.16 * sd)
    np.testing.assert_allclose(draws.std(0), sd, rtol=0.1)
    assert abs(np.corrcoef(draws.T)[0, 1] - 0.9) < 0.05
    assert not any(info.diverging for info in infos)
    accept = np.mean([info.acceptance_rate for info in infos])
    assert 0.75 < accept < 0.99  # dual averaging towards 0.9


def test_window_adaptation_learns_the_mass_matrix():
    # In the identity whitening the target's covariance has condition number 22; after the
    # windowed warm-up L^-1 S L^-T must be near the identity: condition number < 2 (200
    # autocorrelated warm-up draws estimate variances to ~15%; without the rewhitening it
    # stays 22).
    assert np.linalg.cond(COV) > 20
    state = adaptation.window_adaptation(nuts_kernel, _nuts_state(), _Gaussian(), 400,
                                         adapt_mass_matrix=True, target_accept_prob=0.9)
    inverse = np.linalg.inv(state.chol)
    assert np.linalg.cond(inverse @ COV @ inverse.T) < 2


def test_dual_averaging_moves_the_step_size_towards_the_target():
    state, adapt = adaptation.restart(_nuts_state(), _Gaussian(), 0.8)
    start = state.step_size
    _, smaller = adaptation.update(adapt, 0.2)  # accepting too little: smaller steps
    _, larger = adaptation.update(adapt, 1.0)
    assert smaller < larger
    assert adaptation.end(state, adapt).step_size == start  # no update: unchanged


@pytest.mark.parametrize("options, message", [
    ({}, "exactly one of inverse_mass_matrix and chol"),
    ({"inverse_mass_matrix": np.eye(2), "chol": np.eye(2)}, "exactly one"),
    ({"inverse_mass_matrix": np.eye(2), "max_tree_depth": 0}, "max_tree_depth must be >= 1"),
])
def test_nuts_init_errors(options, message):
    options = {"step_size": 0.5, "max_tree_depth": 5, **options}
    with pytest.raises(ValueError, match=message):
        nuts_kernel.init(_Gaussian(), np.zeros(2), np.random.default_rng(0).bit_generator.state,
                         **options)


def test_hmc_init_errors():
    with pytest.raises(ValueError, match="trajectory_length must be > 0"):
        hmc_kernel.init(_Gaussian(), np.zeros(2), np.random.default_rng(0).bit_generator.state,
                        inverse_mass_matrix=np.eye(2), step_size=0.5, trajectory_length=0.0)
