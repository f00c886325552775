"""The fast path: the compiled potential, its fallbacks, the NumPy NUTS, broadcast_shapes."""

import numpy as np
import pytest
import torch

from bayes_irl import GridWorld
from bayes_irl.inference import ExactNormalizer
from bayes_irl.inference.backends.lean_nuts import LeanNUTS
from bayes_irl.inference.backends.parallel_chains import warm_up
from bayes_irl.models import DemonstrationModel
from bayes_irl.models.lean_potential import LeanPotential
from bayes_irl.shapes import broadcast_shapes


@pytest.fixture(scope="module", params=["global", "causal"])
def potential(request):
    world = GridWorld.create(size=4, num_features=3, horizon=6, seed=2)
    model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp, kind=request.param))
    data = model.prepare_data(world.sample_demonstrations(60, seed=1, kind=request.param))
    found = model.sufficient_statistics_potential(data)
    assert isinstance(found, LeanPotential)
    return found


def _value_grad(fn, theta, site):
    point = theta.clone().requires_grad_(True)
    value = fn({site: point})
    (grad,) = torch.autograd.grad(value, point)
    return value.detach(), grad


def test_lean_potential_is_the_reference_function(potential):
    # Same function, other arithmetic: float64 rounding of ~1e3 terms (1e-9 absolute).
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        theta = 2 * torch.randn(3, generator=gen, dtype=torch.float64)
        lean = _value_grad(potential, theta, potential.site)
        ref = _value_grad(potential.reference, theta, potential.site)
        torch.testing.assert_close(lean[0], ref[0], atol=1e-9, rtol=0)
        torch.testing.assert_close(lean[1], ref[1], atol=1e-9, rtol=0)


def test_second_derivatives_and_batches_go_to_the_reference(potential):
    # The Hessian through the lean node (double backward) is the reference's, exactly.
    site, theta = potential.site, torch.tensor([0.3, -0.5, 0.8], dtype=torch.float64)
    hess = torch.autograd.functional.hessian(lambda t: potential({site: t}), theta)
    ref = torch.autograd.functional.hessian(lambda t: potential.reference({site: t}), theta)
    torch.testing.assert_close(hess, ref, atol=1e-10, rtol=0)
    # batched and float32 thetas are scored by the reference (same values)
    batch = torch.stack([theta, -theta])
    torch.testing.assert_close(potential({site: batch}), potential.reference({site: batch}))
    single = potential({site: theta.float()})
    torch.testing.assert_close(single, potential.reference({site: theta.float()}))


def test_global_potential_is_exact_where_exp_space_underflows():
    # Rewards of +-400 per step make exp-space sums underflow: the kernel recomputes those
    # rows in log space itself, so value_and_grad answers (no hand-over to the reference)
    # and equals the log-space reference to float64 rounding of values ~1e4 (1e-9 relative).
    world = GridWorld.create(size=3, num_features=2, horizon=4, seed=1)
    model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp, kind="global"))
    pot = model.sufficient_statistics_potential(
        model.prepare_data(world.sample_demonstrations(10, seed=0)))
    theta = torch.tensor([400.0, -400.0], dtype=torch.float64)
    assert pot.value_and_grad(theta.numpy()) is not None
    lean = _value_grad(pot, theta, pot.site)
    ref = _value_grad(pot.reference, theta, pot.site)
    assert torch.isfinite(lean[0])
    torch.testing.assert_close(lean[0], ref[0], rtol=1e-9, atol=0)
    torch.testing.assert_close(lean[1], ref[1], rtol=1e-9, atol=1e-9 * ref[1].abs().max().item())


def _correlated_gaussian_chain():
    """N(m, S) with correlation 0.9 and a LeanNUTS chain whitened by the identity."""
    mean = np.array([1.0, -2.0])
    cov = np.array([[1.0, 0.9 * 0.5], [0.9 * 0.5, 0.25]])
    precision = np.linalg.inv(cov)

    def value_and_grad(theta):
        diff = theta - mean
        return 0.5 * diff @ precision @ diff, precision @ diff

    chain = LeanNUTS(value_and_grad, loc=np.zeros(2), cov=np.eye(2), start=np.zeros(2),
                     seed=3, max_tree_depth=8, target_accept_prob=0.9, step_size=0.5)
    return mean, cov, chain


def test_lean_nuts_samples_a_correlated_gaussian():
    # Target N(m, S), correlation 0.9; the mass matrix is deliberately off (identity), so
    # the sampler has to cope with a poor whitening. 4000 draws after 300 warm-up: the mean
    # is checked within 5 Monte Carlo standard errors (ESS >= 1000 measured, so
    # 5 * sd / sqrt(1000) = 0.16 sd), the sds within 10% and the correlation within 0.05.
    mean, cov, chain = _correlated_gaussian_chain()
    for _ in range(300):
        chain.adapt(chain.sample()["accept"])
    chain.end_adaptation()
    steps = [chain.sample() for _ in range(4000)]
    draws = np.array([s["theta"] for s in steps])
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(draws.mean(0) - mean) < 0.16 * sd)
    np.testing.assert_allclose(draws.std(0), sd, rtol=0.1)
    assert abs(np.corrcoef(draws.T)[0, 1] - 0.9) < 0.05
    assert not any(s["diverging"] for s in steps)
    accept = np.mean([s["accept"] for s in steps])
    assert 0.8 < accept < 0.98  # dual averaging towards 0.9


def test_broadcast_shapes_matches_torch():
    for shapes in [((3, 1), (1, 4)), ((), (2,)), ((5, 1, 2), (3, 1)), ((1,), (1,))]:
        assert broadcast_shapes(*shapes) == torch.broadcast_shapes(*shapes)
    with pytest.raises(RuntimeError, match="not broadcastable"):  # torch's exception type
        broadcast_shapes((3,), (4,))


def test_windowed_warm_up_learns_the_mass_matrix():
    # The same correlated Gaussian from a deliberately poor whitening (identity): in those
    # coordinates its covariance has condition number 22. After the windowed warm-up the
    # whitened covariance L^-1 S L^-T must be near the identity: condition number < 2
    # (200 autocorrelated warm-up draws estimate variances to ~15%, so a correct estimate
    # lands well inside 2; without the rewhitening it stays 22).
    mean, cov, chain = _correlated_gaussian_chain()
    assert np.linalg.cond(cov) > 20
    warm_up(chain, 400, adapt_mass_matrix=True)
    inverse = np.linalg.inv(chain.chol)
    assert np.linalg.cond(inverse @ cov @ inverse.T) < 2
    draws = np.array([chain.sample()["theta"] for _ in range(2000)])
    assert np.all(np.abs(draws.mean(0) - mean) < 0.16 * np.sqrt(np.diag(cov)))


def test_fast_nuts_uses_the_numpy_sampler_only_where_it_applies():
    # The NumPy NUTS runs NUTS on a float64 potential with a NumPy gradient, with or
    # without mass-matrix adaptation; HMC goes to Pyro's kernel.
    from bayes_irl.inference import fit

    world = GridWorld.create(size=3, num_features=2, horizon=4, seed=1)
    model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp, kind="causal"))
    demos = world.sample_demonstrations(50, seed=0, kind="causal")
    options = dict(method="nuts", num_samples=30, warmup_steps=30, progress_bar=False,
                   check=False, parallel=False)
    lean = fit(model, demos, **options)
    assert lean.attrs["sampler"] == "numpy_nuts"
    assert lean.samples["weights"].shape == (2, 30, 2)
    assert lean.sample_stats["n_steps"].shape == (2, 30)
    adapted = fit(model, demos, adapt_mass_matrix=True, **options)
    assert adapted.attrs["sampler"] == "numpy_nuts" and adapted.attrs["adapt_mass_matrix"] == 1
    pyro_run = fit(model, demos, **{**options, "method": "hmc"})
    assert pyro_run.attrs["sampler"] == "pyro"
