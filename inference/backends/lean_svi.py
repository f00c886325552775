"""The former place of the Gaussian VI loop; this module keeps the old import path.

It lives in :mod:`bayes_irl.inference.backends.gaussian_vi` (``init``/``step`` and the loop
:func:`fit_gaussian_guide`).
"""

from bayes_irl.inference.backends.gaussian_vi import GaussianVIFit, fit_gaussian_guide

LeanSVIFit = GaussianVIFit
"""The former name of :class:`~bayes_irl.inference.backends.gaussian_vi.GaussianVIFit`."""

__all__ = ["LeanSVIFit", "fit_gaussian_guide"]
