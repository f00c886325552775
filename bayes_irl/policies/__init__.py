"""Policies over trajectories: the guide policies (importance proposals) of the normalisers.

:class:`TabularPolicy` for finite MDPs and token sequences; :class:`GaussianPolicy` and its
subclasses for continuous states and actions; both implement the one interface
:class:`Policy`.
"""

from bayes_irl.policies.base import Policy
from bayes_irl.policies.gaussian import GaussianMLPPolicy, GaussianPolicy, LinearGaussianPolicy
from bayes_irl.policies.tabular import TabularPolicy

__all__ = [
    "GaussianMLPPolicy",
    "GaussianPolicy",
    "LinearGaussianPolicy",
    "Policy",
    "TabularPolicy",
]
