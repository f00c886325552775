"""The Laplace back-end, ``fit(..., method="laplace")``: N(MAP, inverse Hessian).

The MAP and the Hessian come from :func:`bayes_irl.inference.backends.laplace.find_laplace`
on the model's potential (L-BFGS, then a Newton polish); a subsampling model takes Pyro's
``AutoLaplaceApproximation`` fitted by SVI instead (``optimizer="adam"``).
"""

from __future__ import annotations

import numpy as np
import pyro
import pyro.infer.autoguide as autoguide
import torch

from bayes_irl.inference.backends.laplace import model_laplace
from bayes_irl.inference.backends.pyro_guides import gaussian_guide, guide_posterior
from bayes_irl.inference.backends.svi import run_svi
from bayes_irl.inference.posterior import Posterior

__all__ = ["run_laplace"]


def run_laplace(
    model,
    data,
    *,
    optimizer: str | None = None,
    init_values: dict[str, torch.Tensor] | None = None,
    max_iter: int = 200,
    max_newton_steps: int = 20,
    **options,
) -> Posterior:
    """Laplace approximation: the MAP, then a Gaussian with the inverse Hessian as covariance.

    Args:
        model: a bayes_irl model.
        data: its prepared data.
        optimizer: how the MAP is found. ``"lbfgs"`` (the default, None, unless the model
            subsamples): SciPy's L-BFGS-B on the model's potential
            (:func:`bayes_irl.models.model_potential`: its exact fast one, or the one traced
            from its Pyro program), then Newton steps on its Hessian
            (:func:`bayes_irl.inference.backends.laplace.find_laplace`); the covariance is
            the inverse Hessian in the potential's unconstrained space (deterministic;
            ``num_steps`` and ``learning_rate`` are ignored). The MAP is a stationary
            point of the log joint, which sequential updates (active learning) rely on.
            A model whose potential is an estimate (``fresh_bank=True``) raises a
            ValueError. ``"adam"`` (the default for a model with
            ``subsample_size``): ``num_steps`` SVI steps of :func:`run_svi` with
            ``AutoLaplaceApproximation``.
        init_values: latent site -> initial value (constrained space), e.g. the previous
            MAP when refitting after one more observation; default Pyro's ``init_to_median``.
        max_iter: ``"lbfgs"`` only: the most L-BFGS iterations.
        max_newton_steps: ``"lbfgs"`` only: the most Newton steps of the polish on the
            exact Hessian after L-BFGS (see
            :func:`bayes_irl.inference.backends.laplace.find_laplace`).
        **options: the options of :func:`run_svi` (``guide`` defaults to ``"laplace"``;
            with ``"lbfgs"`` only ``seed`` and ``num_samples`` are used).

    Returns:
        A :class:`Posterior` of Gaussian draws around the MAP with ``method="laplace"``;
        ``extra["guide"]`` is the Gaussian guide (``AutoMultivariateNormal``):
        ``extra["guide"].get_posterior()`` is N(MAP, inverse Hessian) in the unconstrained
        space.

    Raises:
        ValueError: for an unknown ``optimizer``.
    """
    if optimizer is None:
        optimizer = "adam" if getattr(model, "subsample_size", None) else "lbfgs"
    if optimizer not in ("adam", "lbfgs"):
        raise ValueError(f"optimizer must be 'adam' or 'lbfgs'; got {optimizer!r}")
    init = {} if init_values is None else {
        "init_loc_fn": autoguide.init_to_value(values=dict(init_values))}

    class _Laplace(autoguide.AutoLaplaceApproximation):
        def __init__(self, model) -> None:
            super().__init__(model, **init)

    if optimizer == "adam":
        options.setdefault("guide", "laplace" if init_values is None else _Laplace)
        posterior = run_svi(model, data, **options)
        posterior.method = "laplace"
        posterior.attrs["objective"] = "laplace"
        return posterior
    seed = options.pop("seed", 0)
    num_samples = options.pop("num_samples", 1000)
    for ignored in ("num_steps", "learning_rate", "num_particles", "progress_bar", "guide"):
        options.pop(ignored, None)
    if options:
        raise ValueError(f"unknown options for run_laplace: {sorted(options)}")
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    laplace = model_laplace(model, data, init_values=init_values, max_iter=max_iter,
                            max_newton_steps=max_newton_steps)
    if laplace is not None:
        # N(MAP, Sigma) drawn directly: building the guide's MultivariateNormal calls
        # torch.broadcast_shapes, whose first call imports SymPy (2-4 s of a CLI fit)
        noise = torch.randn(num_samples, laplace.loc.shape[0], dtype=laplace.loc.dtype)
        chol = torch.linalg.cholesky(laplace.covariance)
        posterior = guide_posterior(
            model,
            data,
            gaussian_guide(model, data, laplace),
            losses=np.asarray([laplace.potential.value_and_grad(laplace.loc.numpy())[0]]),
            num_samples=num_samples,
            draws=laplace.constrain(laplace.loc + noise @ chol.T),
            attrs={
                "seed": seed,
                "optimizer": "lbfgs",
                "potential": laplace.potential.kind,
                "num_evaluations": laplace.num_evaluations,
                "num_newton_steps": laplace.num_newton_steps,
                "grad_norm": laplace.grad_norm,
                "newton_decrement": laplace.newton_decrement,
                "converged": int(laplace.converged),
                "wall_time_s": laplace.wall_time,
            },
        )
        posterior.method = "laplace"
        posterior.attrs["objective"] = "laplace"
        return posterior
    raise ValueError(
        "method='laplace' needs a deterministic log density: this model's potential is an "
        "estimate (an importance normaliser drawing a fresh bank per evaluation, "
        "fresh_bank=True), whose MAP is not defined; use method='svi', or a fixed bank")
