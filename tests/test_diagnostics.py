"""Importance-sampling diagnostics on weights with known answers."""

import math

import pytest
import torch

from bayes_irl.inference.diagnostics import importance_diagnostics, log_mean_exp


def test_log_z_within_standard_errors_and_khat_for_light_tails():
    # log-weights ~ N(0, 1): E[w] = exp(1/2), so log Z = 0.5 exactly. 4 standard errors
    # (delta method) leaves a 1-in-15000 false-failure rate for a correct estimator.
    lw = torch.randn(4000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    diag = importance_diagnostics(lw)
    assert abs(diag.log_z - 0.5) < 4 * diag.log_z_std_error
    assert diag.khat < 0.7 and diag.reliable
    assert 1 <= diag.ess <= 4000
    assert torch.allclose(log_mean_exp(lw), torch.tensor(diag.log_z, dtype=torch.float64))


def test_heavy_tails_are_flagged():
    # log-weights ~ N(0, 3^2): the weights' variance is exp(18) times their mean squared;
    # PSIS k-hat far above 0.7 at this sample size (Vehtari et al., lognormal example).
    lw = 3 * torch.randn(2000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    diag = importance_diagnostics(lw)
    assert diag.khat > 0.7 and not diag.reliable
    assert diag.ess < 100


def test_equal_weights_are_perfect_and_bad_input_raises():
    diag = importance_diagnostics(torch.full((50,), 2.0, dtype=torch.float64))
    assert diag.khat == -math.inf and diag.ess == pytest.approx(50)
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        importance_diagnostics(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="every log-weight is -inf"):
        importance_diagnostics(torch.full((3,), -float("inf")))
