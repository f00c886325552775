"""The latent-rationality back-end (``fit(..., method="rationality_importance")``).

Problem: 3x3 slippery gridworld, horizon 4, two random features, beta ~ LogNormal(0, 0.5),
theta ~ N(0, I), 100 exact demonstrations drawn at a prior draw (as in
tests/test_calibration.py). The exact posterior is computed by quadrature in
(w = beta theta, u = log beta), with the density written out by hand from the fixed-beta
model's likelihood (so a wrong Jacobian or likelihood in the back-end shows up):

    p(w, u | x) ∝ L_1(w) N(w e^{-u}; 0, I) e^{-D u} N(u; 0, 0.5^2),

where L_1 is the likelihood of the beta = 1 model at weights w (beta R_theta = R_{beta theta}
for a linear reward), e^{-D u} the Jacobian of theta = w e^{-u}, and N(u; 0, 0.5^2) the
LogNormal prior of beta = e^u including its Jacobian.
"""

import math
import warnings

import pyro.distributions as dist
import pytest
import torch

from bayes_irl import GridWorld
from bayes_irl.inference import ExactNormalizer, fit, pointwise_log_likelihood
from bayes_irl.inference.calibration import DemonstrationSimulator, draw_prior
from bayes_irl.models import DemonstrationModel

PRIOR_SCALE = 0.5


@pytest.fixture(scope="module")
def problem():
    torch.set_num_threads(1)
    world = GridWorld.create(size=3, num_features=2, horizon=4, seed=1)
    prior = dist.LogNormal(torch.tensor(0.0, dtype=torch.float64),
                           torch.tensor(PRIOR_SCALE, dtype=torch.float64))
    latent = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp),
                                rationality_prior=prior)
    fixed = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
    truth = draw_prior(latent, 5)
    raw = DemonstrationSimulator(100)(latent, truth, torch.Generator().manual_seed(3))
    return latent, fixed, raw


def _quadrature_moments(fixed, data, w_lo, w_hi, num_w=81, num_u=241):
    """Exact posterior mean and sd of (theta_1, theta_2, beta) on a (w, w, u) grid."""
    axes = [torch.linspace(float(w_lo[k]), float(w_hi[k]), num_w, dtype=torch.float64)
            for k in range(2)]
    w = torch.cartesian_prod(*axes)  # (num_w^2, 2)
    log_lik, _ = pointwise_log_likelihood(fixed, data, {"weights": w}, chunk_size=10_000)
    log_l = sum(v.sum(-1) for v in log_lik.values())  # (num_w^2,)
    u = torch.linspace(-3.0, 3.0, num_u, dtype=torch.float64)  # +-6 prior sd of log beta
    theta = w[:, None, :] * torch.exp(-u)[None, :, None]  # (W, U, 2)
    log_p = (log_l[:, None] - 0.5 * (theta**2).sum(-1) - 2 * u[None, :]
             - 0.5 * (u[None, :] / PRIOR_SCALE) ** 2)
    weight = torch.softmax(log_p.reshape(-1), 0).reshape(log_p.shape)
    values = torch.cat([theta, torch.exp(u)[None, :, None].expand(w.shape[0], -1, 1)], -1)
    mean = (weight[..., None] * values).sum((0, 1))
    sd = (weight[..., None] * (values - mean) ** 2).sum((0, 1)).sqrt()
    return mean, sd


def _weighted_moments(posterior):
    samples = posterior.extra["proposal_samples"]
    values = torch.cat([samples["weights"], samples["rationality"]], -1)
    w = torch.softmax(posterior.extra["log_weights"], 0)[:, None]
    mean = (w * values).sum(0)
    return mean, (w * (values - mean) ** 2).sum(0).sqrt()


def test_matches_exact_quadrature(problem):
    latent, fixed, raw = problem
    post = fit(latent, raw, method="rationality_importance", num_proposals=20000,
               num_samples=1000, seed=0)
    assert post.attrs["khat"] < 0.5
    # the grid in w: +-8 sd of the proposal around its mode (w is pinned by the data)
    scale = post.extra["proposal"].scale_tril
    sd_w = (scale @ scale.T).diagonal()[:2].sqrt()
    mode_w = torch.tensor(post.attrs["mode_wu"][:2], dtype=torch.float64)
    exact_mean, exact_sd = _quadrature_moments(fixed, post.data, mode_w - 8 * sd_w,
                                               mode_w + 8 * sd_w)
    mean, sd = _weighted_moments(post)
    # Tolerance 0.05 posterior sd for the means and 5% for the sds: the importance
    # estimate's Monte Carlo error is sd / sqrt(ESS) ~ 0.008 sd (ESS ~ 17000 of 20000),
    # so this is ~6 standard errors; leaving out the Jacobian e^{(1 - D) u} moves the
    # mean of beta by ~0.5 sd, and a Gaussian in (theta, log beta) misses the ridge.
    assert torch.all((mean - exact_mean).abs() / exact_sd < 0.05), (mean, exact_mean, exact_sd)
    assert torch.all((sd / exact_sd - 1).abs() < 0.05), (sd, exact_sd)
    # the resampled draws are the weighted ones: 1000 draws, sd/sqrt(1000) ~ 0.03 sd
    flat = post.flat_samples()
    draws = torch.cat([flat["weights"], flat["rationality"]], -1)
    assert torch.all((draws.mean(0) - exact_mean).abs() / exact_sd < 0.15)


def test_laplace_on_latent_rationality_warns(problem):
    latent, fixed, raw = problem
    # the warning comes before the data are read (bad data: no fit is spent on it)
    with pytest.warns(UserWarning, match="rationality_importance"), pytest.raises(ValueError):
        fit(latent, raw[..., :1], method="laplace")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the beta = 1 model: no warning
        with pytest.raises(ValueError):
            fit(fixed, raw[..., :1], method="laplace")


def test_errors(problem):
    latent, fixed, raw = problem
    with pytest.raises(ValueError, match="rationality latent"):
        fit(fixed, raw, method="rationality_importance")
    with pytest.raises(ValueError, match="df"):
        fit(latent, raw, method="rationality_importance", df=math.inf)
    with pytest.raises(ValueError, match="num_proposals"):
        fit(latent, raw, method="rationality_importance", num_proposals=0)


@pytest.mark.slow  # 98 s measured (2 x 40 simulations) on the loaded shared machine
def test_sbc_flags_laplace_and_passes_rationality_importance(problem):
    """SBC with beta latent: the ridge-aware fit is calibrated, Laplace is flagged.

    N = 40 simulations, L = 99, seed 0 (the first 40 of benchmarks/misspecification.py's
    runs): measured there, Laplace's smallest uniformity p-value over theta and beta was
    0.0005 (90% coverage 0.75) and rationality_importance's 0.27 (all three quantities
    in band). The check is the library's own: ``miscalibrated()`` at alpha = 0.05 with
    Bonferroni over the 3 latent coordinates.
    """
    from bayes_irl.inference.calibration import run_calibration

    latent, _, _ = problem
    common = {"num_simulations": 40, "num_rank_draws": 99, "test_quantities": None,
              "seed": 0, "progress_bar": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Laplace's warning; k-hat warnings on a few sets
        ridge = run_calibration(latent, DemonstrationSimulator(100),
                                method="rationality_importance",
                                options={"num_samples": 199}, **common)
        laplace = run_calibration(latent, DemonstrationSimulator(100), method="laplace",
                                  options={"optimizer": "lbfgs", "num_samples": 199}, **common)
    assert not ridge.miscalibrated(), ridge.uniformity()["p_value"].values
    assert laplace.miscalibrated(), laplace.uniformity()["p_value"].values
