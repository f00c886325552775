"""The former place of the NumPy NUTS; this module keeps the old import path.

NUTS is the pure kernel of :mod:`bayes_irl.inference.backends.nuts_kernel` (``init``,
``step``, :class:`NUTSState`, :class:`NUTSInfo`); its warm-up adaptation is
:mod:`bayes_irl.inference.backends.adaptation`.
"""

from bayes_irl.inference.backends.nuts_kernel import NUTSInfo, NUTSState, init, position, step

__all__ = ["NUTSInfo", "NUTSState", "init", "position", "step"]
