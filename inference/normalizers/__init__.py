"""Normalisers of the maxent trajectory distribution: exact, importance-sampled and SMC.

Every normaliser returns a differentiable log Z for a reward and, for estimators, the
diagnostics of its last estimate (ESS, PSIS k-hat).
"""

from bayes_irl.inference.normalizers.exact import ExactNormalizer
from bayes_irl.inference.normalizers.importance import (
    ImportanceNormalizer,
    PolicyProposal,
    TwistedProposal,
)
from bayes_irl.inference.normalizers.simulator_proposal import SimulatorProposal
from bayes_irl.inference.normalizers.smc import SMCNormalizer

__all__ = [
    "ExactNormalizer",
    "ImportanceNormalizer",
    "PolicyProposal",
    "SMCNormalizer",
    "SimulatorProposal",
    "TwistedProposal",
]
