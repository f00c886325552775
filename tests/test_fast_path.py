"""The fast path: the compiled potential, its fallbacks, the NumPy kernels, broadcast_shapes."""

import pytest
import torch

from bayes_irl import GridWorld
from bayes_irl.inference import ExactNormalizer
from bayes_irl.models import DemonstrationModel
from bayes_irl.models.statistics_potential import DemonstrationPotential
from bayes_irl.shapes import broadcast_shapes


@pytest.fixture(scope="module", params=["global", "causal"])
def potential(request):
    world = GridWorld.create(size=4, num_features=3, horizon=6, seed=2)
    model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp, kind=request.param))
    data = model.prepare_data(world.sample_demonstrations(60, seed=1, kind=request.param))
    found = model.sufficient_statistics_potential(data)
    assert isinstance(found, DemonstrationPotential)
    return found


def _value_grad(fn, theta, site):
    point = theta.clone().requires_grad_(True)
    value = fn({site: point})
    (grad,) = torch.autograd.grad(value, point)
    return value.detach(), grad


def test_fast_potential_is_the_reference_function(potential):
    # Same function, other arithmetic: float64 rounding of ~1e3 terms (1e-9 absolute).
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        theta = 2 * torch.randn(3, generator=gen, dtype=torch.float64)
        fast = _value_grad(potential, theta, potential.site)
        ref = _value_grad(potential.reference, theta, potential.site)
        torch.testing.assert_close(fast[0], ref[0], atol=1e-9, rtol=0)
        torch.testing.assert_close(fast[1], ref[1], atol=1e-9, rtol=0)


def test_second_derivatives_and_batches_go_to_the_reference(potential):
    # The Hessian through the fast node (double backward) is the reference's, exactly.
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
    assert pot._evaluate(theta.numpy()) is not None  # the kernel itself answered
    fast = _value_grad(pot, theta, pot.site)
    ref = _value_grad(pot.reference, theta, pot.site)
    assert torch.isfinite(fast[0])
    torch.testing.assert_close(fast[0], ref[0], rtol=1e-9, atol=0)
    torch.testing.assert_close(fast[1], ref[1], rtol=1e-9, atol=1e-9 * ref[1].abs().max().item())


def test_broadcast_shapes_matches_torch():
    for shapes in [((3, 1), (1, 4)), ((), (2,)), ((5, 1, 2), (3, 1)), ((1,), (1,))]:
        assert broadcast_shapes(*shapes) == torch.broadcast_shapes(*shapes)
    with pytest.raises(RuntimeError, match="not broadcastable"):  # torch's exception type
        broadcast_shapes((3,), (4,))


def test_fast_path_runs_the_numpy_kernels():
    # The NumPy NUTS runs NUTS on a float64 potential with a NumPy gradient, with or
    # without mass-matrix adaptation; HMC runs the NumPy HMC kernel.
    from bayes_irl.inference import fit

    world = GridWorld.create(size=3, num_features=2, horizon=4, seed=1)
    model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp, kind="causal"))
    demos = world.sample_demonstrations(50, seed=0, kind="causal")
    options = dict(method="nuts", num_samples=30, warmup_steps=30, progress_bar=False,
                   check=False, parallel=False)
    fast = fit(model, demos, **options)
    assert fast.attrs["sampler"] == "numpy_nuts"
    assert fast.samples["weights"].shape == (2, 30, 2)
    assert fast.sample_stats["n_steps"].shape == (2, 30)
    adapted = fit(model, demos, adapt_mass_matrix=True, **options)
    assert adapted.attrs["sampler"] == "numpy_nuts" and adapted.attrs["adapt_mass_matrix"] == 1
    hmc = fit(model, demos, **{**options, "method": "hmc"})
    assert hmc.attrs["sampler"] == "numpy_hmc"
