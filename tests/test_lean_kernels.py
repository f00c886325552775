"""The compiled causal kernel (models/lean_kernels.py) against the NumPy loop it replaces.

Same recursion, same order of operations up to floating-point rounding: values and
gradients agree to 1e-12 relative (sums of ~1e3 terms of size ~1 in float64).
"""

import numpy as np
import pytest
import torch

from bayes_irl import GridWorld
from bayes_irl.inference import ExactNormalizer
from bayes_irl.models import DemonstrationModel
from bayes_irl.models.lean_kernels import NUMBA_AVAILABLE, causal_kernel

pytestmark = pytest.mark.skipif(not NUMBA_AVAILABLE, reason="numba is not installed")


@pytest.mark.parametrize("size, slip, given_initial_state", [(3, 0.2, False), (5, 0.1, True)])
def test_kernel_equals_the_numpy_loop(size, slip, given_initial_state):
    world = GridWorld.create(size=size, num_features=3, horizon=2 * size, slip=slip, seed=2)
    model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp, kind="causal"),
                               given_initial_state=given_initial_state)
    data = model.prepare_data(world.sample_demonstrations(30, seed=1, kind="causal")).clone()
    data[0, -2:, 1] = -1  # one truncated demonstration
    data[0, -1, 0] = -1
    potential = model.sufficient_statistics_potential(data)
    assert causal_kernel() is not None and potential.kind == "causal"
    rng = np.random.default_rng(0)
    for theta in 2.0 * rng.standard_normal((4, 3)):
        potential.use_kernel = True
        value, grad = potential.value_and_grad(theta)
        potential.use_kernel = False
        ref_value, ref_grad = potential.value_and_grad(theta)
        assert abs(value - ref_value) <= 1e-12 * abs(ref_value)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-12, atol=1e-12 * np.abs(ref_grad).max())
    # and through the torch interface (the autograd reference, as test_lean_path checks)
    potential.use_kernel = True
    point = torch.as_tensor(theta).requires_grad_(True)
    (lean_grad,) = torch.autograd.grad(potential({"weights": point}), point)
    ref = potential.reference({"weights": point})
    (auto_grad,) = torch.autograd.grad(ref, point)
    torch.testing.assert_close(lean_grad, auto_grad, rtol=1e-9, atol=1e-9)
