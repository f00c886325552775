"""Convergence guards: every silent-wrong case of benchmarks/guard_cases.py warns or raises.

Each guard is exercised twice: on a posterior that must fail it (the test fails when the
guard is removed) and on one that must pass (the test fails when the guard fires always).
Synthetic draws keep most cases fast; a few real fits show the wiring through ``fit``.
"""

import random
import warnings

import arviz as az
import numpy as np
import pyro
import pytest
import torch

from bayes_irl import GridWorld
from bayes_irl.inference import ExactNormalizer, Posterior, fit
from bayes_irl.inference.compare import loo
from bayes_irl.inference.convergence import (
    ConvergenceError,
    ConvergenceWarning,
    check_convergence,
)
from bayes_irl.inference.diagnostics import ImportanceDiagnostics, ImportanceWarning
from bayes_irl.inference.predictive import posterior_predictive_check
from bayes_irl.models import DemonstrationModel


@pytest.fixture(scope="module")
def tiny():
    world = GridWorld.create(size=3, horizon=4, seed=0)
    demos = world.sample_demonstrations(50, seed=0)
    model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
    return world, demos, model


def _posterior(draws, *, method="nuts", stats=None, extra=None, attrs=None, model=None):
    return Posterior(samples={"weights": torch.as_tensor(draws)}, method=method, model=model,
                     data=None, sample_stats=stats or {}, attrs=attrs or {}, extra=extra or {})


def _failed(report):
    return {c.name for c in report.failures}


def test_mcmc_guards_on_synthetic_chains():
    rng = np.random.default_rng(0)
    good = rng.normal(size=(2, 1000, 3))
    report = check_convergence(_posterior(good, stats={
        "diverging": np.zeros((2, 1000), bool), "tree_depth": np.full((2, 1000), 3),
        "energy": rng.normal(size=(2, 1000))}, attrs={"max_tree_depth": 6}))
    assert report.ok, report.verdict()
    # Chains stuck in different places (r_hat 3.07 in the reported case): r_hat and ESS fail.
    stuck = good.copy()
    stuck[1] += 5.0
    assert {"r_hat", "ess_bulk", "ess_tail"} <= _failed(check_convergence(_posterior(stuck)))
    # Divergences, saturated trees and an energy random walk (E-BFMI ~ 1/n) fail.
    bad_stats = {"diverging": np.zeros((2, 1000), bool), "tree_depth": np.full((2, 1000), 6),
                 "energy": np.cumsum(rng.normal(size=(2, 1000)), axis=1)}
    bad_stats["diverging"][0, 10] = True
    report = check_convergence(_posterior(good, stats=bad_stats, attrs={"max_tree_depth": 6}))
    assert _failed(report) == {"divergences", "tree_depth", "e_bfmi"}, report.verdict()


def test_checks_follow_the_record_not_the_method_name():
    """A back-end registered under any name gets the checks its record calls for."""
    rng = np.random.default_rng(2)
    draws = rng.normal(size=(2, 1000, 3))
    stats = {"diverging": np.zeros((2, 1000), bool), "tree_depth": np.full((2, 1000), 6),
             "energy": rng.normal(size=(2, 1000))}
    stats["diverging"][1, 3] = True
    report = check_convergence(_posterior(draws, method="my_sampler", stats=stats,
                                          attrs={"max_tree_depth": 6}))
    assert {"divergences", "tree_depth"} <= _failed(report), report.verdict()
    assert {"r_hat", "ess_bulk", "ess_tail", "e_bfmi"} <= {c.name for c in report.checks}
    # the same draws labelled "nuts" but with no per-draw record and one chain: no MCMC check
    single = check_convergence(_posterior(draws[:1], method="nuts"))
    assert not {"r_hat", "divergences"} & {c.name for c in single.checks}
    # a MAP record (the Newton decrement) is judged whatever the method is called
    far = check_convergence(_posterior(draws[:1], method="custom_map",
                                       attrs={"newton_decrement": 0.2}))
    assert _failed(far) == {"map_newton_decrement"}


def test_svi_loss_guard():
    rng = np.random.default_rng(1)
    flat = 100 + rng.normal(size=2000)  # converged: noise around a constant
    drifting = np.linspace(1000, 500, 2000) + rng.normal(size=2000)
    ok = check_convergence(_posterior(rng.normal(size=(1, 50, 2)), method="svi",
                                      extra={"losses": flat}))
    bad = check_convergence(_posterior(rng.normal(size=(1, 50, 2)), method="svi",
                                       extra={"losses": drifting}))
    assert ok.ok and _failed(bad) == {"svi_loss"}


def test_importance_guards_use_pareto_smoothed_ess():
    rng = np.random.default_rng(2)
    even = torch.as_tensor(rng.normal(scale=0.1, size=5000))
    heavy = torch.as_tensor(rng.standard_cauchy(size=5000) * 20)  # one weight dominates
    assert check_convergence(_posterior(rng.normal(size=(1, 10, 2)), method="importance",
                                        extra={"log_weights": even})).ok
    assert _failed(check_convergence(_posterior(
        rng.normal(size=(1, 10, 2)), method="importance", extra={"log_weights": heavy}))
    ) == {"khat", "ess_importance"}


class _BadNormalizer:
    """An importance normaliser whose proposal is untrained (k-hat 7.85 in the reported case)."""

    diagnostics = ImportanceDiagnostics(num_samples=1000, ess=1.0, khat=7.85, log_z=0.0,
                                        log_z_std_error=1.0)

    def log_normalizer(self, reward, theta):
        return torch.zeros(theta.shape[:-1])


class _Model:
    def __init__(self, normalizer):
        self.normalizer = normalizer
        self.reward_model = type("R", (), {"site_name": "weights"})()


def test_estimating_normalizer_khat_is_checked():
    post = _posterior(np.zeros((1, 30, 2)), method="svi", model=_Model(_BadNormalizer()))
    report = check_convergence(post)
    assert _failed(report) == {"normalizer_khat"}
    assert report.to_attrs()["convergence_normalizer_khat"] == pytest.approx(7.85)


def test_fit_warns_strict_raises_and_idata_carries_it(tiny, tmp_path):
    _, demos, model = tiny
    with pytest.warns(ConvergenceWarning, match="NOT CONVERGED.*ESS"):
        post = fit(model, demos, method="nuts", num_samples=20, warmup_steps=10,
                   max_tree_depth=3, progress_bar=False)
    svi = dict(method="svi", num_steps=30, num_samples=5, progress_bar=False)
    with pytest.raises(ConvergenceError, match="too few to judge"):
        fit(model, demos, strict=True, **svi)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        unchecked = fit(model, demos, check=False, **svi)  # the switch turns it off
    assert "convergence_ok" not in unchecked.attrs
    path = tmp_path / "posterior.nc"
    post.to_inference_data().to_netcdf(str(path))
    saved = az.from_netcdf(str(path))
    assert saved.posterior.attrs["convergence_ok"] == 0
    assert "ESS" in saved.posterior.attrs["convergence_verdict"]
    assert {"tree_depth", "energy", "diverging"} <= set(saved.sample_stats.data_vars)
    # Reloaded posteriors are first-class: PPC and LOO from the file plus model and data.
    reloaded = Posterior.load(path, model=model, data=demos)
    assert torch.equal(reloaded.samples["weights"], post.samples["weights"])
    assert reloaded.attrs["convergence_ok"] == 0
    ppc = posterior_predictive_check(reloaded, num_draws=10)
    assert set(ppc.omnibus) == {"feature_counts", "state_visits"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # ArviZ: few draws for PSIS
        assert np.isfinite(loo(saved).elpd_loo)
    with pytest.raises(ValueError, match="Posterior.from_inference_data"):
        posterior_predictive_check(saved)


def test_untrained_importance_backend_warns(tiny):
    _, demos, model = tiny
    with pytest.warns(ImportanceWarning), pytest.warns(ConvergenceWarning, match="k-hat"):
        post = fit(model, demos, method="importance", num_proposals=200, num_samples=50)
    assert post.attrs["convergence_khat"] > 0.7


def test_fit_restores_global_rng_and_user_params(tiny):
    _, demos, model = tiny
    random.seed(5)
    np.random.seed(5)  # noqa: NPY002 - the user's legacy global stream is what must survive
    torch.manual_seed(5)
    user = pyro.param("user_weight", torch.ones(3))
    before = (random.getstate(), np.random.get_state()[1].copy(),  # noqa: NPY002
              torch.random.get_rng_state().clone())
    post = fit(model, demos, method="svi", num_steps=30, num_samples=5, progress_bar=False,
               check=False)
    after = (random.getstate(), np.random.get_state()[1].copy(),  # noqa: NPY002
             torch.random.get_rng_state().clone())
    assert before[0] == after[0]
    assert np.array_equal(before[1], after[1])
    assert torch.equal(before[2], after[2])
    assert torch.equal(pyro.param("user_weight"), user)
    assert post.extra["guide"] is not None
