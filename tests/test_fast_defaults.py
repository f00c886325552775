"""The fast defaults (Laplace start, converged SVI, Laplace-started parallel NUTS) against
exact answers and against the former slow defaults.

Problems: the 3x3 slippery gridworld of test_backends (D = 2, 100 demonstrations) for the
global and the causal model.
"""

import arviz as az
import pyro.poutine as poutine
import pytest
import torch

from bayes_irl import GridWorld
from bayes_irl.inference import ExactNormalizer, fit
from bayes_irl.inference.backends.laplace import model_laplace
from bayes_irl.models import DemonstrationModel
from tests.helpers import exact_posterior_moments


@pytest.fixture(scope="module", params=["global", "causal"])
def problem(request):
    world = GridWorld.create(size=3, num_features=2, horizon=4, seed=1)
    model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp, kind=request.param))
    demos = world.sample_demonstrations(100, seed=0, kind=request.param)
    return model, demos, model.prepare_data(demos)


def _log_joint(model, data, theta):
    conditioned = poutine.condition(model, data={"weights": theta})
    return poutine.trace(conditioned).get_trace(data).log_prob_sum()


@pytest.mark.parametrize("given_initial_state", [False, True])
def test_causal_potential_is_the_log_joint(given_initial_state):
    # Exact identity (visit counts re-arrange the same sum): differences of U and of the
    # traced log joint agree to float64 rounding of ~1e3 terms, gradients too.
    world = GridWorld.create(size=3, num_features=2, horizon=4, seed=1)
    model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp, kind="causal"),
                               given_initial_state=given_initial_state)
    data = model.prepare_data(world.sample_demonstrations(40, seed=3, kind="causal")).clone()
    data[0, -2:, 1] = -1  # one truncated demonstration
    data[0, -1, 0] = -1
    potential = model.sufficient_statistics_potential(data)
    gen = torch.Generator().manual_seed(0)
    thetas = [torch.randn(2, generator=gen, dtype=torch.float64, requires_grad=True)
              for _ in range(2)]
    u = [potential({"weights": t}) for t in thetas]
    lj = [_log_joint(model, data, t) for t in thetas]
    assert abs((u[0] - u[1]).item() + (lj[0] - lj[1]).item()) < 1e-9
    (g_u,) = torch.autograd.grad(u[0], thetas[0])
    (g_lj,) = torch.autograd.grad(lj[0], thetas[0])
    torch.testing.assert_close(g_u, -g_lj, atol=1e-9, rtol=0)


def test_laplace_is_the_mode_and_inverse_hessian_of_the_model(problem):
    # The fast Laplace runs on the potential; check it on the traced model. Scale-aware
    # criterion, as the library's own: the traced log joint's Newton decrement at the MAP,
    # sqrt(g^T H^{-1} g) (the distance to its stationary point in posterior sds), is
    # below the library's 1e-3; its rounding floor here is ~1e-12 (float64 sums of ~1e3
    # terms). The covariance is the inverse traced Hessian to rtol 1e-4: the library's
    # Hessian is central differences at 1e-3 sd (truncation ~1e-6 relative), so 1e-4
    # leaves a factor 100 above it.
    model, demos, data = problem
    post = fit(model, demos, method="laplace", num_samples=10, progress_bar=False)
    assert post.attrs["potential"] == "sufficient_statistics" and post.attrs["converged"] == 1
    assert post.attrs["convergence_ok"] == 1
    gaussian = post.extra["guide"].get_posterior()
    loc = gaussian.mean.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(_log_joint(model, data, loc), loc)
    hessian = torch.autograd.functional.hessian(lambda t: -_log_joint(model, data, t),
                                                loc.detach())
    decrement = (grad @ torch.linalg.solve(hessian, grad)).sqrt()
    assert decrement < 1e-3, decrement
    assert post.attrs["newton_decrement"] < 1e-3
    torch.testing.assert_close(gaussian.covariance_matrix.detach(), torch.linalg.inv(hessian),
                               rtol=1e-4, atol=0)


@pytest.mark.parametrize("max_iter", [0, 1, 3])
def test_newton_polish_reaches_the_mode_from_a_truncated_search(problem, max_iter):
    # L-BFGS cut short (as on a machine whose summation order stops it early): the Newton
    # polish on the exact Hessian reaches the full search's MAP to 1e-6 posterior sds
    # (its target is 1e-6, quadratic convergence) and the same covariance (rtol 1e-4, as
    # above), and records a converged fit.
    model, _, data = problem
    full = model_laplace(model, data)
    short = model_laplace(model, data, max_iter=max_iter)
    assert short.converged and short.newton_decrement < 1e-3
    assert short.num_newton_steps >= 1
    sd = full.covariance.diagonal().sqrt()
    assert ((short.loc - full.loc).abs() / sd).max() < 1e-6
    torch.testing.assert_close(short.covariance, full.covariance, rtol=1e-4, atol=0)


def test_a_map_that_did_not_converge_fails_the_convergence_check(problem):
    # the guard reads the recorded decrement: one L-BFGS iteration and no polish leaves
    # the MAP far from the mode, and fit() says so
    model, demos, data = problem
    stuck = model_laplace(model, data, max_iter=1, max_newton_steps=0)
    assert not stuck.converged and stuck.newton_decrement > 1e-3
    with pytest.warns(UserWarning, match="NOT CONVERGED.*Newton decrement"):
        post = fit(model, demos, method="laplace", num_samples=10, progress_bar=False,
                   max_iter=1, max_newton_steps=0)
    assert post.attrs["convergence_ok"] == 0


def test_svi_stops_at_convergence_and_records_it(problem):
    # the convergence stop is opt-in (window=...); the default runs the full schedule
    model, demos, _ = problem
    post = fit(model, demos, method="svi", num_samples=10, progress_bar=False, window=100)
    assert post.attrs["init"] == "laplace" and post.attrs["converged"] == 1
    assert post.attrs["num_steps_run"] < post.attrs["num_steps"]
    assert post.extra["losses"].shape == (post.attrs["num_steps_run"],)


@pytest.mark.slow
def test_nuts_default_reaches_the_ess_target(problem):
    # The default sizes the draws for the smallest bulk ESS >= 400 (2 chains); r_hat of
    # independent Laplace-dispersed starts below 1.01 (Vehtari et al. 2021).
    model, demos, _ = problem
    post = fit(model, demos, method="nuts", seed=0, progress_bar=False)
    idata = post.to_inference_data()
    ess = az.ess(idata, var_names=["weights"], method="bulk")["weights"].values
    rhat = az.rhat(idata, var_names=["weights"])["weights"].values  # unrounded
    assert post.attrs["init"] == "laplace" and post.attrs["warmup_steps"] == 300
    assert post.attrs["convergence_ok"] == 1, post.attrs["convergence_verdict"]
    assert (ess >= 400).all(), ess
    assert (rhat < 1.01).all(), rhat
    assert post.extra["num_divergences"] == 0


@pytest.mark.slow
def test_fast_defaults_agree_with_the_former_slow_defaults(problem):
    # Former defaults: Laplace by 5000 Adam steps; SVI 5000 steps from the prior; NUTS
    # init_to_uniform, 500 warm-up + 1000 draws per chain on the traced model.
    # Laplace and SVI are compared through their Gaussian guides' exact moments (no Monte
    # Carlo error): means within 0.1 sd, sds within 10% (the stated criterion; the
    # former Adam runs end within ~1% of their optimum here). NUTS vs NUTS: 0.1 sd plus
    # 3 Monte-Carlo standard errors of the difference (ESS >= 400 each: se <= 0.07 sd),
    # sds within 10% plus the same 3-se allowance on an sd estimate (~0.035 each).
    model, demos, _ = problem

    def moments(post):
        g = post.extra["guide"].get_posterior()
        return g.mean.detach(), g.covariance_matrix.detach().diagonal().sqrt()

    old = fit(model, demos, method="laplace", optimizer="adam", num_samples=10,
              progress_bar=False)
    new = fit(model, demos, method="laplace", num_samples=10, progress_bar=False)
    (m0, s0), (m1, s1) = moments(old), moments(new)
    assert ((m1 - m0).abs() / s0 < 0.1).all() and ((s1 / s0 - 1).abs() < 0.1).all()
    # SVI against the exact posterior (quadrature). The default (Laplace start, averaged
    # tail): means within 0.1 sd, sds within 10%, the same criterion as Laplace (measured
    # on 4 seeds per problem: <= 0.023 sd, sd ratios 0.94-1.00). The former default
    # (init="prior", final iterate of one-particle SVI) moves by ~0.1-0.25 sd between
    # runs (measured 0.09-0.26 sd, sd ratios 0.90-1.08 on 4 seeds): it is held to the
    # looser 0.3 sd / [0.8, 1.2] of test_backends for AutoMultivariateNormal.
    exact_mean, exact_sd = exact_posterior_moments(model, model.prepare_data(demos))
    for post, mean_tol, (lo, hi) in (
            (fit(model, demos, method="svi", num_samples=10, progress_bar=False),
             0.1, (0.9, 1.1)),
            (fit(model, demos, method="svi", init="prior", num_samples=10,
                 progress_bar=False), 0.3, (0.8, 1.2))):
        assert post.attrs["convergence_ok"] == 1, post.attrs["convergence_verdict"]
        m, s = moments(post)
        assert ((m - exact_mean).abs() / exact_sd < mean_tol).all(), (m, exact_mean, exact_sd)
        assert ((s / exact_sd > lo) & (s / exact_sd < hi)).all(), (s, exact_sd)
    old = fit(model, demos, method="nuts", init="uniform", sufficient_statistics=False,
              progress_bar=False)
    new = fit(model, demos, method="nuts", progress_bar=False)
    ess = [az.summary(p.to_inference_data(), var_names=["weights"])["ess_bulk"].values
           for p in (old, new)]
    se = torch.as_tensor((1 / ess[0] + 1 / ess[1]) ** 0.5)
    z = (new.mean() - old.mean()).abs() / old.std()
    assert (z < 0.1 + 3 * se).all(), (z, se)
    assert ((new.std() / old.std() - 1).abs() < 0.1 + 3 * se / 2**0.5).all()
