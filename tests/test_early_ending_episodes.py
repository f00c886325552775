"""Episodes that end early (lengths < T) on the sufficient-statistics potential.

Both kinds, full-length and truncated demonstrations, s_0 modelled or given: the potential
of ``DemonstrationModel.sufficient_statistics_potential`` (value weights W over all t plus
m log Z) is the negative traced log joint of the Pyro model up to a constant, and NUTS on
truncated global data (which takes that potential) covers the exact posterior.
"""

import pyro.poutine as poutine
import pytest
import torch

from bayes_irl import GridWorld, TrajectoryBatch
from bayes_irl.inference import ExactNormalizer, fit
from bayes_irl.models import DemonstrationModel
from bayes_irl.models.statistics_potential import DemonstrationPotential
from tests.helpers import exact_posterior_moments


def _cut(demos: TrajectoryBatch, seed: int) -> TrajectoryBatch:
    """The same episodes ended at random lengths in [1, T] (about a third left whole)."""
    gen = torch.Generator().manual_seed(seed)
    horizon = demos.actions.shape[1]
    lengths = torch.randint(1, horizon + 1, (len(demos.lengths),), generator=gen)
    lengths[::3] = horizon
    return TrajectoryBatch.create(states=demos.states, actions=demos.actions, lengths=lengths)


def _log_joint(model, data, theta):
    conditioned = poutine.condition(model, data={"weights": theta})
    return poutine.trace(conditioned).get_trace(data).log_prob_sum()


@pytest.mark.parametrize("kind", ["global", "causal"])
@pytest.mark.parametrize("truncated, given_initial_state",
                         [(False, False), (True, False), (False, True), (True, True)])
def test_potential_is_the_traced_log_joint(kind, truncated, given_initial_state):
    # The identity is exact (the same sum regrouped by (t, s)): differences of U between two
    # thetas and of the traced log joint agree to float64 rounding of ~1e3 terms of size
    # ~1-10 (1e-9 relative), gradients too; the compiled path and its torch reference agree.
    world = GridWorld.create(size=3, num_features=2, horizon=5, slip=0.2, seed=1)
    model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp, kind=kind),
                               given_initial_state=given_initial_state)
    demos = world.sample_demonstrations(40, seed=3, kind=kind)
    data = model.prepare_data(_cut(demos, seed=4) if truncated else demos)
    assert world.mdp.is_truncated(data) == truncated
    potential = model.sufficient_statistics_potential(data)
    assert isinstance(potential, DemonstrationPotential)
    gen = torch.Generator().manual_seed(0)
    thetas = [torch.randn(2, generator=gen, dtype=torch.float64, requires_grad=True)
              for _ in range(2)]
    u = [potential({"weights": t}) for t in thetas]
    ref = [potential.reference({"weights": t}) for t in thetas]
    lj = [_log_joint(model, data, t) for t in thetas]
    scale = max(abs(x.item()) for x in lj)
    assert abs((u[0] - u[1]).item() + (lj[0] - lj[1]).item()) < 1e-9 * scale
    assert abs((u[0] - ref[0]).item()) < 1e-9 * scale
    (g_u,) = torch.autograd.grad(u[0], thetas[0])
    (g_ref,) = torch.autograd.grad(ref[0], thetas[0])
    (g_lj,) = torch.autograd.grad(lj[0], thetas[0])
    g_scale = g_lj.abs().max().item()
    torch.testing.assert_close(g_u, -g_lj, atol=1e-9 * g_scale, rtol=0)
    torch.testing.assert_close(g_ref, -g_lj, atol=1e-9 * g_scale, rtol=0)


def test_nuts_on_early_ending_global_episodes_covers_the_exact_posterior():
    # Truncated global data with given initial states: NUTS now takes the NumPy sampler on
    # the sufficient-statistics potential. Exact moments by quadrature of the traced model
    # (tests/helpers.py). The default run targets bulk ESS >= 400: the mean's Monte Carlo
    # error is <= 0.05 sd, so 0.2 sd is 4 of them; an sd estimate's relative error is
    # ~1/sqrt(2 ESS) = 0.035, so 15%.
    world = GridWorld.create(size=3, num_features=2, horizon=5, slip=0.2, seed=1)
    model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp, kind="global"),
                               given_initial_state=True)
    demos = _cut(world.sample_demonstrations(60, seed=0, kind="global"), seed=1)
    post = fit(model, demos, method="nuts", seed=0, progress_bar=False)
    assert post.attrs["sampler"] == "numpy_nuts"
    assert post.attrs["convergence_ok"] == 1, post.attrs["convergence_verdict"]
    exact_mean, exact_sd = exact_posterior_moments(model, model.prepare_data(demos))
    draws = torch.as_tensor(post.samples["weights"]).reshape(-1, 2)
    mean, sd = draws.mean(0), draws.std(0)
    assert ((mean - exact_mean).abs() / exact_sd < 0.2).all(), (mean, exact_mean, exact_sd)
    assert ((sd / exact_sd - 1).abs() < 0.15).all(), (sd, exact_sd)
