"""Every exact fast potential equals the potential traced from the model's Pyro program.

:func:`bayes_irl.models.model_potential` gives a model's fast potential (sufficient
statistics, visit counts, Bradley-Terry differences) where it offers one, else the generic
:class:`~bayes_irl.models.TracedPotential`. The fast ones must be the same function as the
traced one up to a theta-free constant: compared here through the
:class:`~bayes_irl.protocols.Potential` interface the methods use, on value differences
between points and on gradients, at 1e-9 relative (float64 rounding of sums over a few
hundred terms is ~1e-13 relative; 1e-9 leaves room for the summation order of the
compiled recursion and stays far below any modelling difference).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bayes_irl import GridWorld
from bayes_irl.inference import ExactNormalizer
from bayes_irl.models import DemonstrationModel, PreferenceModel, TracedPotential, model_potential
from bayes_irl.models.preference_simulation import simulate_comparisons
from bayes_irl.models.statistics_potential import StatisticsPotential
from bayes_irl.protocols import Potential


def _truncate(data: torch.Tensor, lengths: list[int]) -> torch.Tensor:
    """Early-ending demonstrations: everything after step L_i is -1."""
    data = data.clone()
    for i, length in enumerate(lengths):
        data[i, length:, 1] = -1
        data[i, length + 1:, 0] = -1
    return data


def _cases():
    world = GridWorld.create(size=4, horizon=6, seed=3)
    demos = world.sample_demonstrations(40, seed=5)
    for kind in ("global", "causal"):
        for given in (False, True):
            model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp, kind=kind),
                                       given_initial_state=given)
            data = model.prepare_data(demos)
            yield f"{kind}-full-given{int(given)}", model, data
            yield f"{kind}-truncated-given{int(given)}", model, _truncate(
                data, [2, 3, 6, 1] * 10)
    items = world.sample_demonstrations(10, seed=6)
    prefs = PreferenceModel(world.reward_model, items)
    yield "bradley-terry", prefs, prefs.prepare_data(
        simulate_comparisons(prefs, world.true_weights, 60, seed=7))


CASES = list(_cases())


@pytest.mark.parametrize("name, model, data", CASES, ids=[c[0] for c in CASES])
def test_fast_potential_equals_the_traced_potential(name, model, data):
    fast = model_potential(model, data)
    traced = TracedPotential(model, data)
    assert isinstance(fast, StatisticsPotential), name
    assert isinstance(fast, Potential) and isinstance(traced, Potential)
    assert fast.layout.names == traced.layout.names and fast.layout.size == traced.layout.size
    rng = np.random.default_rng(0)
    points = rng.normal(size=(3, fast.layout.size))
    fast_out = [fast.value_and_grad(z) for z in points]
    traced_out = [traced.value_and_grad(z) for z in points]
    scale = max(abs(v) for v, _ in traced_out)
    for i in (1, 2):  # U is defined up to a constant: compare differences between points
        diff_fast = fast_out[i][0] - fast_out[0][0]
        diff_traced = traced_out[i][0] - traced_out[0][0]
        assert abs(diff_fast - diff_traced) <= 1e-9 * scale, (name, diff_fast, diff_traced)
    for (_, g_fast), (_, g_traced) in zip(fast_out, traced_out, strict=True):
        np.testing.assert_allclose(g_fast, g_traced, rtol=1e-9,
                                   atol=1e-9 * np.abs(g_traced).max())
    # the torch adapter is the same function, and the Hessians agree (central differences
    # of the exact gradient against double back-propagation: 1e-5 relative)
    z = torch.as_tensor(points[0])
    assert float(fast.torch(z)) == pytest.approx(fast_out[0][0], rel=1e-12)
    np.testing.assert_allclose(fast.hessian(points[0]), traced.hessian(points[0]),
                               rtol=1e-5, atol=1e-5 * np.abs(traced.hessian(points[0])).max())


def test_a_model_without_statistics_gets_the_traced_potential():
    import pyro.distributions as dist

    world = GridWorld.create(size=3, horizon=4, seed=0)
    two = torch.tensor(2.0, dtype=torch.float64)
    beta = dist.Gamma(two, two)
    model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp),
                               rationality_prior=beta)
    data = model.prepare_data(world.sample_demonstrations(20, seed=1))
    potential = model_potential(model, data)
    assert isinstance(potential, TracedPotential) and potential.deterministic and potential.exact
    # two sites, beta > 0 through exp: z holds log beta, and the Jacobian is in U
    assert potential.layout.names == ["weights", "rationality"] and potential.layout.size == 5
    values = potential.layout.constrain(torch.zeros(2, 5, dtype=torch.float64))
    assert values["weights"].shape == (2, 4) and values["rationality"].shape == (2, 1)
    assert torch.equal(values["rationality"], torch.ones(2, 1, dtype=torch.float64))
    z = np.zeros(5)
    z[4] = 0.3
    u, grad = potential.value_and_grad(z)
    assert np.isfinite(u) and grad.shape == (5,)


# the untrained proposal's k-hat warning fires while the potential is built; it is beside
# the point of this test, which checks that the exact methods refuse a random potential
@pytest.mark.filterwarnings("ignore::bayes_irl.inference.diagnostics.ImportanceWarning")
def test_an_estimated_potential_is_refused_by_the_exact_methods():
    """A fresh trajectory bank per evaluation makes U random: MAP, Laplace and HMC refuse it."""
    from bayes_irl.inference import ImportanceNormalizer, PolicyProposal, fit

    world = GridWorld.create(size=3, horizon=4, seed=0)
    normalizer = ImportanceNormalizer(PolicyProposal(world.mdp), num_samples=200,
                                      fresh_bank=True)
    model = DemonstrationModel(world.reward_model, normalizer)
    demos = world.sample_demonstrations(20, seed=1)
    potential = model_potential(model, model.prepare_data(demos))
    assert isinstance(potential, TracedPotential) and not potential.exact
    assert not potential.deterministic
    for method in ("laplace", "nuts", "hmc"):
        with pytest.raises(ValueError, match="deterministic log density"):
            fit(model, demos, method=method, progress_bar=False)
    # a fixed bank is a deterministic (biased) potential: those methods accept it
    fixed = DemonstrationModel(world.reward_model,
                               ImportanceNormalizer(PolicyProposal(world.mdp), num_samples=200,
                                                    seed=0))
    banked = model_potential(fixed, fixed.prepare_data(demos))
    assert banked.deterministic and not banked.exact
