"""Stochastic variational inference with any Pyro autoguide (or a custom guide).

The Pyro *guide* here is the variational family over the reward parameters theta; it is
not the guide *policy* (the proposal over trajectories of the importance normaliser).

Default guide: ``AutoMultivariateNormal``. The prototype measured posterior correlations
down to -0.76 between linear reward weights: the mean-field ``AutoNormal`` then
under-estimated the posterior sds 2-2.5x, while the full-covariance guide was within ~15%
of NUTS.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyro
import pyro.infer.autoguide as autoguide
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO
from pyro.nn import PyroParam
from pyro.optim import ClippedAdam
from tqdm.auto import tqdm

from bayes_irl.inference.backends.gaussian_vi import fit_gaussian_guide
from bayes_irl.inference.backends.importance_svi import (
    fit_importance_guide,
    importance_svi_applies,
)
from bayes_irl.inference.backends.laplace import (
    LaplaceFit,
    laplace_start,
    model_laplace,
)
from bayes_irl.inference.checkpoint import pyro_svi_snapshot, resume_pyro_svi
from bayes_irl.inference.global_random_state import preserve_global_state
from bayes_irl.inference.posterior import Posterior
from bayes_irl.inference.variational_families import GUIDES
from bayes_irl.models.potential import TorchPotential
from bayes_irl.parameter_layout import ParameterLayout
from bayes_irl.protocols import Potential

__all__ = [
    "SVIResult",
    "draw_from_guide",
    "guide_posterior",
    "make_guide",
    "run_laplace",
    "run_svi",
]



@dataclass
class SVIResult:
    """What :func:`run_svi` returns besides the draws.

    Attributes:
        guide: the fitted Pyro guide (callable with the model's arguments).
        losses: ELBO loss (negative ELBO estimate) per step, shape (num_steps_run,).
        wall_time: seconds spent in the optimisation loop.
        converged: whether the stopping rule fired before the step cap (always False
            without a stopping rule).
        learning_rates: the learning rate of each plateau stage, in order.
    """

    guide: Callable
    losses: np.ndarray
    wall_time: float
    converged: bool = False
    learning_rates: tuple = ()


def make_guide(model, guide) -> Callable:
    """Instantiate ``guide``: a name in :data:`GUIDES`, an autoguide class, or a callable.

    Raises:
        ValueError: for an unknown name.
    """
    if isinstance(guide, str):
        if guide not in GUIDES:
            raise ValueError(f"guide must be one of {sorted(GUIDES)} or a callable; got {guide!r}")
        return GUIDES[guide](model)
    if isinstance(guide, type) and issubclass(guide, autoguide.AutoGuide):
        return guide(model)
    if callable(guide):
        return guide
    raise ValueError(f"guide must be a name, an AutoGuide class or a callable; got {guide!r}")


def optimise(
    model,
    guide: Callable,
    data,
    *,
    num_steps: int,
    learning_rate: float,
    num_particles: int = 1,
    progress_bar: bool = True,
    callback: Callable[[int, float, Callable], None] | None = None,
    checkpoint=None,
    window: int | None = None,
    rtol: float = 1e-4,
    max_plateaus: int = 2,
    clip_norm: float | None = 10.0,
) -> SVIResult:
    """Run SVI with ClippedAdam and ``Trace_ELBO``: ``num_steps``, or until converged.

    Stopping rule (``window`` given): after every ``window`` steps the mean loss of the
    last window is compared with the one before. A plateau is a change below
    ``rtol · |mean loss|`` or below twice its standard error (no progress that the ELBO
    noise lets one see). At a plateau the learning rate drops 10x (a step schedule that
    settles the final iterate); after ``max_plateaus`` drops the next plateau stops the
    run. ``num_steps`` is then the cap.

    Args:
        model: the Pyro model, called as ``model(data)``.
        guide: the Pyro guide.
        data: prepared data.
        num_steps: optimisation steps.
        learning_rate: Adam step size (decayed 10x over the run, which stabilises the
            final iterate of the stochastic optimisation).
        num_particles: ELBO particles per step.
        progress_bar: show a tqdm bar with the running loss.
        callback: called as ``callback(step, loss, guide)`` after each step, e.g. to train
            a guide policy against rewards drawn from the current Pyro guide and refresh
            the importance samples between SVI steps.
        checkpoint: an :class:`~bayes_irl.inference.checkpoint.SVICheckpoint` (save every
            N steps and on SIGINT/SIGTERM; resume bit-identically), or None.
        window: steps per convergence window; None: run all ``num_steps`` with the
            learning rate decayed 10x over the run (the former fixed schedule).
        rtol: relative loss change that counts as a plateau.
        max_plateaus: learning-rate drops before a plateau stops the run.
        clip_norm: ClippedAdam's elementwise gradient clamp; None: no clamp. The clamp
            biases the fit when the gradient noise is large and skewed: with an
            importance normaliser's fresh bank per step (heavy-tailed self-normalised
            weights, n = 300 demonstrations) clamping at 10 moved the mean 1.34
            posterior sd off the exact one; unclamped, 0.04 sd
            (benchmarks/importance_posterior_bias.py, seed 2).

    Returns:
        The :class:`SVIResult`.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1; got {num_steps}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0; got {learning_rate}")
    if window is not None and window < 2:
        raise ValueError(f"window must be >= 2 or None; got {window}")
    lrd = 0.1 ** (1.0 / num_steps) if window is None else 1.0
    _check_clip_norm(clip_norm)
    optim = ClippedAdam({"lr": learning_rate, "lrd": lrd,
                         "clip_norm": float("inf") if clip_norm is None else clip_norm})
    svi = SVI(model, guide, optim, loss=Trace_ELBO(num_particles=num_particles))
    losses = np.empty(num_steps)
    rates = [learning_rate]
    converged = False
    last_check = 0
    start = time.perf_counter()
    first = 0 if checkpoint is None else resume_pyro_svi(
        checkpoint, svi, guide, data, losses, has_callback=callback is not None)

    def plateau_at(done: int) -> bool:
        """Whether the stopping rule sees a plateau after ``done`` steps."""
        if window is None or done - last_check < 2 * window or done % window:
            return False
        return _plateau(losses[done - 2 * window : done], rtol)

    # a resumed run replays the schedule over the restored losses (the optimiser's learning
    # rate itself is restored with its state), so it continues bit-identically
    for done in range(1, first + 1):
        if plateau_at(done):
            rates.append(rates[-1] * 0.1)
            last_check = done
    steps = first
    with tqdm(total=num_steps, initial=first, desc="SVI", disable=not progress_bar,
              leave=False) as bar, checkpoint or contextlib.nullcontext():
        for step in range(first, num_steps):
            loss = svi.step(data)
            if not np.isfinite(loss):
                raise FloatingPointError(
                    f"SVI loss became {loss} at step {step}; lower learning_rate or check "
                    "the data and prior"
                )
            losses[step] = loss
            if callback is not None:
                callback(step, loss, guide)
            if checkpoint is not None:
                checkpoint.step_done(step + 1, num_steps,
                                     lambda done=step + 1: pyro_svi_snapshot(svi, losses, done))
            if step % 50 == 0 or step == num_steps - 1:
                bar.set_postfix(loss=f"{loss:.3f}")
            bar.update()
            steps = done = step + 1
            if plateau_at(done):
                if len(rates) > max_plateaus:
                    converged = True
                    break
                rates.append(rates[-1] * 0.1)
                for state in optim.optim_objs.values():
                    for group in state.param_groups:
                        group["lr"] = rates[-1]
                last_check = done  # two fresh windows at the new rate
    return SVIResult(guide=guide, losses=losses[:steps], wall_time=time.perf_counter() - start,
                     converged=converged, learning_rates=tuple(rates))


def _check_clip_norm(clip_norm) -> None:
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"clip_norm must be > 0 or None; got {clip_norm!r}")


def _plateau(losses: np.ndarray, rtol: float) -> bool:
    """Whether the second half of ``losses`` shows no improvement over the first half."""
    half = len(losses) // 2
    before, after = losses[:half], losses[half:]
    change = before.mean() - after.mean()
    noise = np.sqrt(before.var() / half + after.var() / half)
    return change < max(rtol * abs(after.mean()), 2 * noise)


def draw_from_guide(model, guide: Callable, data, num_samples: int) -> dict[str, torch.Tensor]:
    """Draw ``num_samples`` joint samples of the model's latent sites from the guide.

    Returns:
        latent site -> tensor of shape (num_samples, *site_shape).
    """
    latent = set(model.latent_dims)
    with torch.no_grad(), pyro.plate("_draws", num_samples, dim=-2):
        trace = poutine.trace(guide).get_trace(data)
    samples = {
        name: site["value"].reshape(num_samples, *site["value"].shape[-1:])
        for name, site in trace.nodes.items()
        if site["type"] == "sample" and name in latent
    }
    missing = latent - set(samples)
    if missing:
        raise ValueError(f"the guide does not sample the latent sites {sorted(missing)}")
    return samples


@preserve_global_state  # the caller's param store and RNG streams survive the fit
def run_svi(
    model,
    data,
    *,
    guide="multivariate_normal",
    num_steps: int = 5000,
    learning_rate: float = 0.05,
    num_particles: int = 1,
    num_samples: int = 1000,
    seed: int = 0,
    progress_bar: bool = True,
    callback: Callable[[int, float, Callable], None] | None = None,
    checkpoint=None,
    init: str = "laplace",
    window: int | None = None,
    rtol: float = 1e-4,
    clip_norm: float | None = 10.0,
    svi_backend: str = "auto",
) -> Posterior:
    """Fit by SVI and return ``num_samples`` independent draws from the fitted guide.

    Fast default (``init="laplace"``, wherever the model offers a cheap potential): the
    guide starts at the Laplace fit (MAP and inverse Hessian by L-BFGS; an
    ``AutoMultivariateNormal`` gets its loc and scale_tril, an ``AutoNormal`` its locs
    and the scales 1/sqrt(diag Hessian), the mean-field optimum of a Gaussian target,
    other autoguides their ``init_loc_fn`` at the MAP; a user's callable guide is used as
    given), the ELBO is evaluated on the potential (one recursion per step, whatever the
    number of demonstrations) and the run stops when the loss stops improving (see
    :func:`optimise`); the learning rate then starts at a fifth of ``learning_rate``.

    Args:
        model: a bayes_irl model.
        data: its prepared data.
        guide: autoguide name (see :data:`GUIDES`), AutoGuide class, or a guide callable.
        num_steps: SVI steps: the cap when ``window`` is set, else the exact count.
        learning_rate: initial Adam step size (from the prior; a fifth of it from the
            Laplace start).
        num_particles: ELBO particles per step.
        num_samples: posterior draws returned (one chain: they are independent, so
            r_hat is undefined and ESS equals the number of draws).
        seed: seeds Pyro's global RNG before the fit.
        progress_bar: show a tqdm bar.
        callback: per-step hook, see :func:`optimise`.
        checkpoint: an :class:`~bayes_irl.inference.checkpoint.SVICheckpoint`, see
            :func:`optimise`.
        init: ``"laplace"`` (default) or ``"prior"`` (the guide's own initialisation and
            the traced model: the former behaviour).
        window: convergence window in steps (see :func:`optimise`), opt-in. None
            (default): exactly ``num_steps`` steps with the learning rate decayed 10x over
            the run, because slow progress can hide in the ELBO noise (a minibatch fit
            stopped with sds 40% short; a Laplace-started 3x3 fit with sds 15% short).
        rtol: relative loss change that counts as a plateau.
        clip_norm: the elementwise gradient clamp (see :func:`optimise`); None for an
            importance normaliser with a fresh bank per step.
        svi_backend: ``"auto"`` (default): the NumPy loop of
            :mod:`~bayes_irl.inference.backends.lean_svi` where it applies (a Laplace
            start, the ``multivariate_normal`` or ``normal`` guide, a potential with a
            NumPy gradient in float64), which stops at ELBO-gradient stationarity
            (``num_steps`` is its cap, ``window`` its window, ``num_particles`` its
            antithetic pairs per step; ``rtol`` and ``clip_norm`` do not apply), else
            Pyro's SVI; ``"pyro"``: always Pyro's; ``"lean"``: the NumPy loop or a
            ValueError where it does not apply.

    Returns:
        A :class:`Posterior` with ``method="svi"``; ``extra["guide"]`` holds the fitted
        guide and the loss trace is stored in sample_stats as ``loss`` over ``svi_step``;
        attrs ``num_steps_run`` (steps taken), ``converged`` (1 if the stopping rule
        fired before the cap) and ``init``.

    Example:
        >>> from bayes_irl import GridWorld
        >>> from bayes_irl.models import DemonstrationModel
        >>> from bayes_irl.inference import ExactNormalizer
        >>> world = GridWorld.create(size=3, horizon=4, seed=0)
        >>> model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
        >>> data = model.prepare_data(world.sample_demonstrations(50))
        >>> post = run_svi(model, data, num_steps=50, num_samples=10, progress_bar=False)
        >>> post.samples["weights"].shape
        torch.Size([1, 10, 4])
    """
    if init not in ("laplace", "prior"):
        raise ValueError(f"init must be 'laplace' or 'prior'; got {init!r}")
    if svi_backend not in ("auto", "lean", "pyro"):
        raise ValueError(f"svi_backend must be 'auto', 'lean' or 'pyro'; got {svi_backend!r}")
    # checked whichever loop runs: the NumPy loop does not clamp, but a bad value is an error
    _check_clip_norm(clip_norm)
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    if (svi_backend != "pyro" and init == "laplace" and callback is None
            and _guide_class(guide) in (autoguide.AutoMultivariateNormal, autoguide.AutoNormal)
            and importance_svi_applies(model, data)):
        return _run_importance_svi(
            model, data, guide, num_steps=num_steps, learning_rate=learning_rate / 5,
            num_pairs=num_particles, num_samples=num_samples, seed=seed, window=window,
            checkpoint=checkpoint)
    laplace, no_start = None, ""
    if init == "laplace" and not getattr(model, "subsample_size", None) and callback is None:
        laplace, no_start = laplace_start(model, data)
    lean = svi_backend != "pyro" and _lean_applies(laplace, guide)
    if svi_backend == "lean" and not lean:
        raise ValueError(
            "svi_backend='lean' needs init='laplace', no subsampling and no callback, the "
            "'multivariate_normal' or 'normal' guide and a model with a float64 cheap "
            "potential that has a NumPy gradient; use svi_backend='auto' or 'pyro'")
    if lean:
        return _run_lean_svi(
            model, data, laplace, guide, num_steps=num_steps, learning_rate=learning_rate / 5,
            num_pairs=num_particles, num_samples=num_samples, seed=seed,
            window=window, checkpoint=checkpoint)
    target = model
    if laplace is None:
        guide_fn = make_guide(model, guide)
    else:
        target = _potential_model(model, laplace)
        guide_fn = _laplace_initialised_guide(target, guide, laplace, data)
        if _starts_at_laplace(guide):
            # already near the optimum: a smaller step. No convergence stop by default:
            # the loss plateau rule stopped a 3x3 global fit at 600 steps with sds 15% short
            # of the exact posterior (the slow drift hides in the one-particle ELBO noise);
            # the full schedule ends with sds within 7% (tests/test_fast_defaults.py)
            learning_rate = learning_rate / 5
    result = optimise(
        target,
        guide_fn,
        data,
        num_steps=num_steps,
        learning_rate=learning_rate,
        num_particles=num_particles,
        progress_bar=progress_bar,
        callback=callback,
        checkpoint=checkpoint,
        window=window,
        rtol=rtol,
        clip_norm=clip_norm,
    )
    if isinstance(guide_fn, autoguide.AutoLaplaceApproximation):
        guide_fn = guide_fn.laplace_approximation(data)
    return guide_posterior(
        model,
        data,
        guide_fn,
        losses=result.losses,
        num_samples=num_samples,
        attrs={
            "seed": seed,
            "num_steps": num_steps,
            "num_steps_run": len(result.losses),
            "converged": int(result.converged),
            "learning_rate": learning_rate,
            "learning_rates": ", ".join(f"{r:.3g}" for r in result.learning_rates),
            "num_particles": num_particles,
            "init": "prior" if laplace is None else "laplace",
            **({"laplace_start": no_start} if no_start else {}),
            "svi_backend": "pyro",
            "potential": "model" if laplace is None else laplace.potential.kind,
            "wall_time_s": result.wall_time + (0.0 if laplace is None else laplace.wall_time),
        },
    )


def _lean_applies(laplace: LaplaceFit | None, guide) -> bool:
    """Whether :func:`_run_lean_svi` can fit ``guide`` from ``laplace`` (see ``run_svi``)."""
    return laplace is not None and _guide_class(guide) in (
        autoguide.AutoMultivariateNormal, autoguide.AutoNormal)


def _run_lean_svi(model, data, laplace: LaplaceFit, guide, *, num_steps: int,
                  learning_rate: float, num_pairs: int, num_samples: int, seed: int,
                  window: int | None, checkpoint) -> Posterior:
    """SVI of a Gaussian guide by :func:`.gaussian_vi.fit_gaussian_guide`.

    The fitted mean and Cholesky factor go into the same Pyro guide the Pyro path would
    return (started at them instead of the Laplace fit), and the draws come from
    N(mu, L L^T) directly. With a checkpoint the loop's state is saved every
    ``checkpoint.every`` steps and on SIGINT/SIGTERM, and a resumed run continues it
    bit-identically.
    """
    cls = _guide_class(guide)
    mean_field = cls is autoguide.AutoNormal
    window = 25 if window is None else window
    key = {"num_steps": num_steps, "seed": seed, "learning_rate": learning_rate,
           "num_pairs": num_pairs, "window": window, "mean_field": mean_field,
           "loc": laplace.loc.tolist(), "covariance": laplace.covariance.tolist()}
    saved = None if checkpoint is None else checkpoint.begin("gaussian_vi", key)
    state = None if saved is None else saved[0]
    if state is not None:
        checkpoint.resumed_from = state.step

    def on_step(steps: int, current) -> None:
        checkpoint.step_done(steps, num_steps, lambda: (current, {"step": steps}))

    with checkpoint or contextlib.nullcontext():
        fitted = fit_gaussian_guide(
            laplace.potential.value_and_grad,
            loc=laplace.loc.numpy(), covariance=laplace.covariance.numpy(),
            mean_field=mean_field, num_steps=num_steps, seed=seed,
            learning_rate=learning_rate, num_pairs=num_pairs, window=window, state=state,
            on_step=None if checkpoint is None else on_step)
    return _lean_posterior(
        model, data, cls, laplace.layout, laplace.potential, fitted, num_samples=num_samples,
        attrs={
            "seed": seed,
            "num_steps": num_steps,
            "learning_rate": learning_rate,
            "num_particles": num_pairs,
            "potential": laplace.potential.kind,
            "wall_time_s": fitted.wall_time + laplace.wall_time,
        })


def _lean_posterior(model, data, cls, layout: ParameterLayout, potential: Potential, fitted,
                    *, num_samples: int, attrs: dict) -> Posterior:
    """The Posterior of a NumPy-fitted Gaussian guide (mean and Cholesky factor in ``fitted``).

    The fitted parameters go into the same Pyro guide the Pyro path would return (over the
    model's latent sites with ``potential`` as their density), and the draws come from
    N(mu, L L^T) directly.
    """
    loc = torch.from_numpy(fitted.loc)
    chol = torch.from_numpy(fitted.scale_tril)
    result = LaplaceFit(layout=layout, loc=loc, covariance=chol @ chol.T, potential=potential,
                        grad_norm=math.nan, newton_decrement=math.nan,
                        num_evaluations=fitted.num_evaluations, num_newton_steps=0,
                        converged=fitted.converged, wall_time=fitted.wall_time)
    target = _potential_model(model, result)
    guide_fn = _laplace_initialised_guide(target, cls, result, data)
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        # register the fitted parameters in the (cleared) param store, as an SVI step
        # does: a PyroModule guide reads a parameter from the store when the name is there
        guide_fn(data)
    # draws from N(mu, L L^T) directly (the guide's MultivariateNormal would import SymPy)
    noise = torch.randn(num_samples, loc.shape[0], dtype=loc.dtype)
    return guide_posterior(
        model, data, guide_fn, losses=fitted.losses, num_samples=num_samples,
        draws=result.constrain(loc + noise @ chol.T),
        attrs={
            "num_steps_run": len(fitted.losses),
            "converged": int(fitted.converged),
            "learning_rates": f"{attrs['learning_rate']:.3g}",
            "init": "laplace",
            "svi_backend": "lean",
            "stationarity": fitted.stationarity,
            **attrs,
        },
    )


def _run_importance_svi(model, data, guide, *, num_steps: int, learning_rate: float,
                        num_pairs: int, num_samples: int, seed: int, window: int | None,
                        checkpoint) -> Posterior:
    """SVI with the importance normaliser: a fresh bank per step, the proposal trained.

    See :func:`~bayes_irl.inference.backends.importance_svi.fit_importance_guide`.
    """
    if checkpoint is not None:
        raise ValueError(
            "checkpoint= is not supported by importance-normaliser SVI on the NumPy loop "
            "(its proposal's training state is not saved); pass svi_backend='pyro'")
    cls = _guide_class(guide)
    found = fit_importance_guide(
        model, data, mean_field=cls is autoguide.AutoNormal, num_steps=num_steps,
        learning_rate=learning_rate, num_pairs=num_pairs,
        window=25 if window is None else window, seed=seed)
    diag = found.diagnostics
    site = model.reward_model.site_name
    layout = ParameterLayout.real_vector(site, found.fitted.loc.shape[0])
    bank_potential = TorchPotential(lambda theta: found.potential({site: theta}), layout,
                                    kind="importance_bank")
    return _lean_posterior(
        model, data, cls, layout, bank_potential, found.fitted, num_samples=num_samples,
        attrs={
            "seed": seed,
            "num_steps": num_steps,
            "learning_rate": learning_rate,
            "num_particles": num_pairs,
            "potential": "importance_fresh_bank",
            "khat": diag["khat_median"],
            "mode_shift": diag["mode_shift"],
            "bank_size": diag["bank_size"],
            "num_banks": diag["num_banks"],
            "start_rounds": diag["start_rounds"],
            "wall_time_s": found.wall_time,
        })


def _guide_class(guide):
    """The autoguide class of a guide name, or ``guide`` itself."""
    return GUIDES.get(guide) if isinstance(guide, str) else guide


def _potential_model(model, laplace: LaplaceFit) -> Callable:
    """The model's latent sites with the cheap potential as their only density.

    The model runs with its densities masked and its observed sites hidden (so the guide
    sees the same latent sites, plates and shapes), and ``pyro.factor`` adds
    ``-U(theta)``, the whole log joint, computed from the sufficient statistics.
    """
    if laplace.potential.kind == "traced" or not laplace.layout.is_identity:
        return model  # the potential is the model's own trace: nothing cheaper to put in
    hidden = list(model.observed_sites)
    (site,) = laplace.layout.names

    def potential_model(data, *args, **kwargs):
        with poutine.trace() as tracer, poutine.mask(mask=False), poutine.block(hide=hidden):
            model(data, *args, **kwargs)
        theta = tracer.trace.nodes[site]["value"]
        pyro.factor("_log_joint", -laplace.potential.torch(theta))

    return potential_model


def _starts_at_laplace(guide) -> bool:
    """Whether :func:`_laplace_initialised_guide` starts ``guide`` at the Laplace fit.

    Normalising flows and user-written guides keep their own initialisation, so they keep
    the fixed schedule of a start from scratch.
    """
    cls = _guide_class(guide)
    return (
        isinstance(cls, type)
        and issubclass(cls, autoguide.AutoGuide)
        and not issubclass(cls, autoguide.AutoNormalizingFlow)
        and (
            cls in (autoguide.AutoMultivariateNormal, autoguide.AutoNormal)
            or "init_loc_fn" in inspect.signature(cls.__init__).parameters
        )
    )


def _laplace_initialised_guide(model, guide, laplace: LaplaceFit, data) -> Callable:
    """The guide ``guide`` (name, class or callable) for ``model``, started at the Laplace fit."""
    cls = _guide_class(guide)
    if cls is autoguide.AutoMultivariateNormal:
        made = autoguide.AutoMultivariateNormal(model)
        made._setup_prototype(data)
        # the guide's scale_tril is diag(scale) @ U with U unit lower triangular:
        # cov = L L^T with L = chol(cov) gives scale = diag(L), U = L / scale (rows)
        chol = torch.linalg.cholesky(laplace.covariance)
        scale = chol.diagonal().clone()
        made.loc = torch.nn.Parameter(laplace.loc.clone())
        made.scale = PyroParam(scale, made.scale_constraint)
        made.scale_tril = PyroParam(chol / scale[:, None], made.scale_tril_constraint)
        return made
    values = {k: v.detach().clone() for k, v in laplace.constrain(laplace.loc).items()}
    if cls is autoguide.AutoNormal:
        # mean-field optimum for a Gaussian target: the precision's diagonal
        precision = torch.linalg.inv(laplace.covariance).diagonal()
        made = autoguide.AutoNormal(model, init_loc_fn=autoguide.init_to_value(values=values))
        made._setup_prototype(data)
        for site, scales in laplace.layout.unconstrained(precision.rsqrt()).items():
            setattr(made.scales, site, PyroParam(scales, made.scale_constraint, event_dim=0))
        return made
    if _starts_at_laplace(guide):  # other autoguides taking init_loc_fn (flows do not)
        return cls(model, init_loc_fn=autoguide.init_to_value(values=values))
    return make_guide(model, guide)


def gaussian_guide(model, data, laplace: LaplaceFit) -> autoguide.AutoMultivariateNormal:
    """``AutoMultivariateNormal`` fixed at N(MAP, Sigma) of a :class:`LaplaceFit`.

    The guide's unconstrained space is the potential's z: the model's latent sites in
    sampling order, each through ``biject_to`` of its support.
    """
    guide = autoguide.AutoMultivariateNormal(model)
    guide._setup_prototype(data)
    scale = laplace.covariance.diagonal().sqrt()
    correlation = laplace.covariance / scale[:, None] / scale[None, :]
    with torch.no_grad():
        del guide.loc
        del guide.scale
        del guide.scale_tril
        guide.register_buffer("loc", laplace.loc.clone())
        guide.register_buffer("scale", scale)
        guide.register_buffer("scale_tril", torch.linalg.cholesky(correlation))
    return guide


def guide_posterior(
    model, data, guide_fn: Callable, *, losses: np.ndarray, num_samples: int, attrs: dict,
    draws: dict[str, torch.Tensor] | None = None,
) -> Posterior:
    """Package a fitted guide as a one-chain :class:`Posterior` of ``num_samples`` draws.

    Args:
        model: the fitted model.
        data: its prepared data.
        guide_fn: the fitted Pyro guide.
        losses: ELBO loss per step, shape (num_steps,).
        num_samples: independent draws from the guide.
        attrs: run metadata; the guide's class and the final loss are added.
        draws: the draws when the caller has them (latent site -> (num_samples, ...)),
            else they are drawn from the guide.

    Returns:
        The Posterior (``method="svi"``; the loss trace in sample_stats as ``loss``).
    """
    if draws is None:
        draws = draw_from_guide(model, guide_fn, data, num_samples)
    return Posterior(
        samples={k: v.unsqueeze(0) for k, v in draws.items()},
        method="svi",
        model=model,
        data=data,
        attrs={
            "objective": "elbo",  # what was optimised: the convergence checks read it
            **attrs,
            "guide": type(guide_fn).__name__,
            "final_loss": float(losses[-10:].mean()),
        },
        extra={
            "guide": guide_fn,
            "losses": losses,
            "sample_stats_extra": {"loss": (losses, "svi_step")},
        },
    )


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
