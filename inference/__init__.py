"""Inference for bayes_irl models: normalisers, back-ends, the Posterior and ArviZ output.

Imported as ``bayes_irl.inference`` (the package lives in ``inference/`` at the top of the
repository and is mapped into the namespace by ``pyproject.toml``). It imports
:mod:`bayes_irl.models` and the core, never the application layer.
"""

from bayes_irl.inference.active import (
    ActivePreferenceLearner,
    expected_information_gain,
    run_active_learning,
)
from bayes_irl.inference.backends import BACKENDS, run_svi
from bayes_irl.inference.diagnostics import ImportanceWarning
from bayes_irl.inference.fit import fit
from bayes_irl.inference.guide_policy_training import GuidePolicyTrainer
from bayes_irl.inference.normalizers import (
    ExactNormalizer,
    ImportanceNormalizer,
    PolicyProposal,
    SimulatorProposal,
    SMCNormalizer,
    TwistedProposal,
)
from bayes_irl.inference.posterior import Posterior, pointwise_log_likelihood
from bayes_irl.inference.variational_families import GUIDES, neural_spline_guide

__all__ = [
    "BACKENDS",
    "GUIDES",
    "ActivePreferenceLearner",
    "ExactNormalizer",
    "GuidePolicyTrainer",
    "ImportanceNormalizer",
    "ImportanceWarning",
    "PolicyProposal",
    "Posterior",
    "SMCNormalizer",
    "SimulatorProposal",
    "TwistedProposal",
    "expected_information_gain",
    "fit",
    "neural_spline_guide",
    "pointwise_log_likelihood",
    "run_active_learning",
    "run_svi",
]
