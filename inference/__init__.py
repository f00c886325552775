"""Inference for bayes_irl models: normalisers, back-ends, the Posterior and ArviZ output.

Imported as ``bayes_irl.inference`` (the package lives in ``inference/`` at the top of the
repository and is mapped into the namespace by ``pyproject.toml``).
"""

from bayes_irl.inference.backends_extra import (
    ImportanceSamplingWarning,
    neural_spline_guide,
    run_importance,
)
from bayes_irl.inference.exact import ExactNormalizer, sample_maxent_trajectories, soft_values
from bayes_irl.inference.fit import BACKENDS, fit, register_backend
from bayes_irl.inference.mcmc import run_mcmc
from bayes_irl.inference.posterior import Posterior, pointwise_log_likelihood
from bayes_irl.inference.svi import GUIDES, SVIResult, run_svi

__all__ = [
    "BACKENDS",
    "GUIDES",
    "ImportanceSamplingWarning",
    "ExactNormalizer",
    "Posterior",
    "SVIResult",
    "fit",
    "neural_spline_guide",
    "pointwise_log_likelihood",
    "register_backend",
    "run_importance",
    "run_mcmc",
    "run_svi",
    "sample_maxent_trajectories",
    "soft_values",
]
from bayes_irl.inference.diagnostics import (  # noqa: E402
    ImportanceDiagnostics,
    ImportanceWarning,
    importance_diagnostics,
)
from bayes_irl.inference.guide_policy import GuidePolicyTrainer  # noqa: E402
from bayes_irl.inference.importance import (  # noqa: E402
    ImportanceNormalizer,
    PolicyProposal,
    TwistedProposal,
)
from bayes_irl.inference.importance_continuous import (  # noqa: E402
    SimulatorGuideTrainer,
    SimulatorImportanceNormalizer,
)
from bayes_irl.inference.smc import SMCNormalizer  # noqa: E402

__all__ += [
    "GuidePolicyTrainer",
    "ImportanceDiagnostics",
    "ImportanceNormalizer",
    "ImportanceWarning",
    "PolicyProposal",
    "SMCNormalizer",
    "SimulatorGuideTrainer",
    "SimulatorImportanceNormalizer",
    "TwistedProposal",
    "importance_diagnostics",
]

from bayes_irl.inference.active import (  # noqa: E402
    ActivePreferenceLearner,
    expected_information_gain,
    run_active_learning,
)

__all__ += ["ActivePreferenceLearner", "expected_information_gain", "run_active_learning"]
