r"""The potential every inference method runs on, derived from a model's Pyro program.

The Pyro model is the single source of truth. :func:`model_potential` asks a model for
the :class:`~bayes_irl.protocols.Potential` of its posterior,

    U(z) = -log p(theta(z), data) - log |det d theta / d z| + const,

in the flat unconstrained space of its :class:`~bayes_irl.parameter_layout.ParameterLayout`:

* :class:`TracedPotential`, for every model: the log joint of the Pyro trace with the
  latent sites conditioned on theta(z), differentiated by autograd. A model a user writes
  (a reward nonlinear in theta, a Student-t prior, several latent sites) runs under every
  method with no special code.
* the model's exact fast potential where it offers one
  (:class:`~bayes_irl.protocols.SufficientStatistics`: sufficient statistics of a linear
  reward, visit counts, Bradley-Terry differences: a
  :class:`~bayes_irl.models.statistics_potential.StatisticsPotential`), which the tests
  prove equal to the traced one up to a constant.

:class:`TorchPotential` turns any torch function U(z) into a Potential (the rationality
back-end's reparametrised target uses it).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch import Tensor

from bayes_irl.parameter_layout import ParameterLayout
from bayes_irl.protocols import Normalizer, Potential, SufficientStatistics

__all__ = ["TorchPotential", "TracedPotential", "model_potential"]


class TorchPotential:
    """A :class:`~bayes_irl.protocols.Potential` from a torch function ``U(z)``.

    Args:
        function: ``z (D,) -> U`` (a 0-dim tensor), differentiable twice by autograd.
        layout: the parameter layout of z.
        kind: a short name of the evaluator.
        exact: False where ``function`` uses an estimate (an importance bank).
    """

    deterministic = True

    def __init__(self, function: Callable[[Tensor], Tensor], layout: ParameterLayout,
                 *, kind: str = "torch", exact: bool = True) -> None:
        self._function = function
        self.layout = layout
        self.kind = kind
        self.exact = exact
        self.start = torch.zeros(layout.size, dtype=layout.dtype)

    def torch(self, z: Tensor) -> Tensor:
        """``U(z)`` for z (..., D): shape ``z.shape[:-1]`` (rows evaluated one by one)."""
        if z.dim() == 1:
            return self._function(z)
        rows = z.reshape(-1, z.shape[-1])
        return torch.stack([self._function(row) for row in rows]).reshape(z.shape[:-1])

    def value_and_grad(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        """``(U(z), dU/dz)`` in float64 NumPy; ``(inf, zeros)`` where U is not finite."""
        with torch.enable_grad():
            point = torch.as_tensor(np.asarray(z, dtype=np.float64)).to(
                self.layout.dtype).requires_grad_(True)
            value = self._function(point)
            if not bool(torch.isfinite(value)):
                return float("inf"), np.zeros(point.shape[0])
            (grad,) = (torch.autograd.grad(value, point) if value.requires_grad
                       else (torch.zeros_like(point),))
        return float(value.detach()), grad.detach().cpu().double().numpy()

    def hessian(self, z: np.ndarray) -> np.ndarray:
        """The exact Hessian of U at z by double back-propagation, shape (D, D)."""
        point = torch.as_tensor(np.asarray(z, dtype=np.float64)).to(self.layout.dtype)
        hessian = torch.autograd.functional.hessian(self._function, point)
        return hessian.detach().cpu().double().numpy()


class TracedPotential(TorchPotential):
    """The potential of any model, from its Pyro trace.

    ``U(z) = -[log p(theta(z), data) + log |det J(z)|]`` with the log joint of the model's
    trace (every sample site, observed ones included, ``pyro.factor`` terms too) with its
    latent sites conditioned on theta(z) = the layout's constrained values. The cost per
    evaluation is one run of the Pyro program and its backward pass.

    Args:
        model: a bayes_irl model (:class:`~bayes_irl.protocols.Model`) or any Pyro program
            ``model(data)`` whose latent sites are continuous.
        data: its prepared data.

    Raises:
        ValueError: if the model has no latent site or a discrete one.
    """

    def __init__(self, model: Any, data: Any) -> None:
        self._model = model
        self._data = data
        parameters = inspect.signature(model).parameters
        # the whole data set (a subsampling model scores a minibatch by default)
        self._kwargs = {"subsample": False} if "subsample" in parameters else {}
        with torch.random.fork_rng(devices=[]), poutine.block():
            trace = poutine.trace(model).get_trace(data, **self._kwargs)
        sites = []
        for name, node in trace.nodes.items():
            if (node["type"] != "sample" or node["is_observed"] or site_is_subsample(node)
                    or node["infer"].get("_deterministic")):
                continue
            if node["fn"].support.is_discrete:
                raise ValueError(
                    f"latent site {name!r} is discrete; a potential needs continuous latent "
                    "sites (marginalise it in the model, or use method='importance')")
            sites.append((name, node["value"].shape, node["fn"].support))
        if not sites:
            raise ValueError("the model has no latent sample site to infer")
        dtype = trace.nodes[sites[0][0]]["value"].dtype
        super().__init__(self._negative_log_joint, ParameterLayout(sites, dtype=dtype),
                         kind="traced")
        self.start = self.layout.flatten(
            {name: trace.nodes[name]["value"].detach() for name, _, _ in sites})
        self.exact = not any(_estimates_its_normalizer(node["fn"])
                             for node in trace.nodes.values()
                             if node["type"] == "sample" and node["is_observed"])
        self._deterministic: bool | None = None

    @property
    def deterministic(self) -> bool:
        """Whether U is a function of z (False for a fresh trajectory bank per evaluation).

        An exact model is; otherwise U is evaluated twice at the prior draw under two
        random states (once, on first use).
        """
        if self._deterministic is None:
            self._deterministic = self.exact or self._is_deterministic()
        return self._deterministic

    def _negative_log_joint(self, z: Tensor) -> Tensor:
        values = self.layout.constrain(z)
        with poutine.block():
            conditioned = poutine.condition(self._model, data=values)
            trace = poutine.trace(conditioned).get_trace(self._data, **self._kwargs)
        return -(trace.log_prob_sum() + self.layout.log_abs_det_jacobian(z))

    def _is_deterministic(self) -> bool:
        """Whether U at the prior draw is the same under two random states.

        A model whose log density samples auxiliary randomness (an importance-sampled
        normaliser drawing a fresh bank) is not: it is for stochastic-gradient methods.
        """
        values = []
        for seed in (0, 1):
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                torch.manual_seed(seed)
                values.append(float(self._function(self.start)))
        return values[0] == values[1] or (np.isnan(values[0]) and np.isnan(values[1]))


def _estimates_its_normalizer(distribution: Any) -> bool:
    """Whether an observed site's distribution scores with an estimated normaliser.

    A :class:`~bayes_irl.models.MaxEntTrajectory` (possibly wrapped: masked, expanded,
    independent) over an importance or SMC normaliser (``is_exact`` False).
    """
    while distribution is not None:
        normalizer = vars(distribution).get("normalizer")
        if isinstance(normalizer, Normalizer):
            return not normalizer.is_exact
        distribution = vars(distribution).get("base_dist")
    return False


def model_potential(model: Any, data: Any) -> Potential:
    """The potential of ``model``'s posterior given prepared ``data``.

    The model's exact fast potential where it offers one for these data
    (:class:`~bayes_irl.protocols.SufficientStatistics`), else the generic
    :class:`TracedPotential` of its Pyro program. Check ``deterministic`` before running
    an exact method on it.

    Args:
        model: a bayes_irl model.
        data: its prepared data.
    """
    if isinstance(model, SufficientStatistics) and len(model.latent_dims) == 1:
        fast = model.sufficient_statistics_potential(data)
        if fast is not None:
            return fast
    return TracedPotential(model, data)
