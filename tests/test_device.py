"""Every tensor follows the ``device`` argument (CPU always; CUDA where one exists).

On a machine without a GPU the CUDA cases are skipped; ``scripts/gpu_check.py`` is the
short manual check (CPU vs CUDA log Z, an SVI step, timings) for a machine with one.
"""

import pyro
import pytest
import torch

from bayes_irl import GridWorld, TabularMDP
from bayes_irl.inference import ExactNormalizer, run_svi
from bayes_irl.models import DemonstrationModel
from bayes_irl.soft_bellman import soft_values

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _tensors(mdp: TabularMDP):
    return [mdp.successors, mdp.successor_log_probs, mdp.initial, mdp.features,
            mdp.action_log_base]


@pytest.mark.parametrize("device", DEVICES)
def test_whole_path_on_device(device):
    world = GridWorld.create(size=3, horizon=4, seed=0, device=device)
    dev = torch.device(device)
    assert all(t.device.type == dev.type for t in _tensors(world.mdp))
    assert world.true_weights.device.type == dev.type
    assert world.reward_model.features.device.type == dev.type
    norm = ExactNormalizer(world.mdp)
    r = world.true_step_rewards()
    assert r.device.type == dev.type
    assert norm.log_normalizer(world.reward_model, world.true_weights).device.type == dev.type
    demos = world.sample_demonstrations(30, seed=1)
    model = DemonstrationModel(world.reward_model, norm)
    data = model.prepare_data(demos)
    assert data.device.type == dev.type
    # the prior's parameters must live on the device too for the fit to run there
    pyro.clear_param_store()
    post = run_svi(model, data, num_steps=5, num_samples=3, progress_bar=False)
    assert post.samples["weights"].shape[-1] == 4


@pytest.mark.parametrize("device", DEVICES)
def test_from_dense_and_to(device):
    world = GridWorld.create(size=3, horizon=4, seed=0)
    dense = TabularMDP.from_dense(
        transitions=world.mdp.dense_transitions(),
        initial=world.mdp.initial,
        features=world.mdp.features,
        horizon=4,
        device=device,
    )
    assert all(t.device.type == torch.device(device).type for t in _tensors(dense))
    moved = world.mdp.to(device)
    r = world.true_step_rewards().to(device)
    torch.testing.assert_close(soft_values(moved, r).cpu(), soft_values(dense, r).cpu(),
                               atol=1e-10, rtol=0)


def test_float32_recursion_close_to_float64():
    # Accelerators prefer float32: the exp-space recursion must stay accurate there.
    # Tolerance 1e-4 relative: float32 eps is 1.2e-7 and the T = 20 steps accumulate
    # rounding of O(T) operations on values of size ~50.
    world = GridWorld.create(size=6, horizon=20, seed=0)
    r64 = world.true_step_rewards()
    v64 = soft_values(world.mdp, r64)
    v32 = soft_values(world.mdp.to(dtype=torch.float32), r64.float())
    torch.testing.assert_close(v32.double(), v64, rtol=1e-4, atol=1e-4)
