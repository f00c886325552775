r"""Simulation-based calibration (SBC): do the posterior's intervals mean what they say?

Talts et al. (2018), "Validating Bayesian inference algorithms with simulation-based
calibration"; Modrák et al. (2023), "Simulation-based calibration checking for Bayesian
computation: the choice of test quantities shapes sensitivity"; Säilynoja, Bürkner &
Vehtari (2022), "Graphical test for discrete uniformity and its applications in goodness-
of-fit evaluation and multiple sample comparison".

One simulation s = 1..N:

    theta*_s ~ p(theta)                      (every latent site, from the model's prior)
    y_s ~ p(y | theta*_s)                    (a simulator: the model's own exact sampler,
                                              or a misspecified demonstrator)
    theta_s^(1..L) ~ q(theta | y_s)          (any fit(method=...) configuration, thinned
                                              to L near-independent draws)
    rank_s(f) = #{l : f(theta_s^(l), y_s) < f(theta*_s, y_s)}   (ties broken at random)

for every latent coordinate f(theta) = theta_j and for test quantities f(theta, y): the
log-likelihood of the data, the reward at chosen states and the value (expected return
under theta) of the posterior-mean policy. If q is the exact posterior, rank_s is uniform
on {0, ..., L} (Talts et al., Theorem 1), and the fractional rank

    u_s = (rank_s + U_s) / (L + 1),   U_s ~ Uniform(0, 1),

is exactly Uniform(0, 1). The central c-interval of the draws contains f(theta*) iff
|u - 1/2| <= c / 2, so its coverage is the mean of that indicator over simulations.

Uniformity test: Säilynoja et al.'s simultaneous ECDF test of the fractional ranks
(:mod:`bayes_irl.inference.calibration_statistics`, with the rank and coverage
statistics). A run is flagged miscalibrated when any quantity's p-value is below
``alpha / Q`` (Bonferroni over the Q quantities).

Results are an :class:`arviz.InferenceData` with the groups ``sbc`` (rank, pit, truth per
simulation and quantity; seconds per simulation) and ``sbc_summary`` (coverage of the
central 50/80/90/95% intervals with binomial standard errors, gamma, p-value, in-band flag
per quantity). Simulations run in worker processes (one torch thread each), seeded per
simulation, each saved to its own file as it finishes, so an interrupted run resumes.
"""


from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pyro
import torch
import xarray as xr
from tqdm.auto import tqdm

from bayes_irl.inference.calibration_simulators import (
    DemonstrationSimulator,
    Latents,
    LogNormalRationality,
    PreferenceSimulator,
    draw_prior,
)
from bayes_irl.inference.calibration_statistics import (
    COVERAGE_LEVELS,
    coverage,
    expected_coverage_band,
    fractional_ranks,
    uniformity_test,
)
from bayes_irl.inference.fit import fit
from bayes_irl.inference.posterior import Posterior, pointwise_log_likelihood
from bayes_irl.validation import positive_int

__all__ = [
    "COVERAGE_LEVELS",
    "CalibrationResult",
    "DemonstrationSimulator",
    "ImportanceNormalizerFit",
    "LogNormalRationality",
    "PreferenceSimulator",
    "coverage",
    "default_test_quantities",
    "draw_prior",
    "expected_coverage_band",
    "fractional_ranks",
    "run_calibration",
    "simulate_once",
    "uniformity_test",
]

FitFunction = Callable[[Any, Any, int], Posterior]
"""``fit_fn(model, raw_data, seed) -> Posterior``: a custom fit (instead of ``method``)."""
TestQuantities = Callable[[Any, Any, Latents], dict[str, Callable[[Latents], np.ndarray]]]
"""``test_quantities(model, prepared_data, held_out_draws) -> {name: f}`` with
``f(latents (N, ...)) -> (N,)``; a quantity may depend on the data and on posterior draws
that are not among the ranked ones."""


@dataclass(frozen=True)
class ImportanceNormalizerFit:
    """A ``fit_fn`` that fits each data set with a fresh importance normaliser.

    The calibrated model keeps its exact normaliser for what SBC needs exactly (the prior
    draw, the exact simulator and the test quantities); each fit gets a new
    :class:`~bayes_irl.inference.ImportanceNormalizer` over an untrained
    :class:`~bayes_irl.inference.TwistedProposal` (seeded by the simulation), so every
    simulation trains its own proposal and the results do not depend on which worker ran
    which simulation before.

    Args:
        method: the ``fit`` method (``"svi"``: the NumPy importance-normaliser SVI of
            :mod:`bayes_irl.inference.backends.importance_svi`).
        options: keyword options of ``fit``.
        num_samples: K, the bank size.
    """

    method: str = "svi"
    options: dict = field(default_factory=dict)
    num_samples: int = 4000

    @property
    def __name__(self) -> str:  # the run's configuration names the fit by this
        return f"{self.method}+importance_normalizer(K={self.num_samples})"

    def __call__(self, model: Any, raw: Any, seed: int) -> Posterior:
        """Fit ``model``'s reward on ``raw`` with a fresh importance normaliser."""
        from bayes_irl.inference.normalizers.importance import (
            ImportanceNormalizer,
            TwistedProposal,
        )
        from bayes_irl.models import DemonstrationModel

        normalizer = ImportanceNormalizer(TwistedProposal(model.space),
                                          num_samples=self.num_samples, seed=seed)
        fresh = DemonstrationModel(model.reward_model, normalizer)
        options = {"progress_bar": False, **self.options, "seed": seed}
        return fit(fresh, raw, method=self.method, **options)


# ---------------------------------------------------------------------------- quantities
def _flat_coordinates(model: Any, latents: Latents) -> dict[str, np.ndarray]:
    """Each latent coordinate as a quantity: ``"site[label]" -> (N,)``."""
    out = {}
    for site, (_, labels) in model.latent_dims.items():
        value = latents[site].detach().to(torch.float64)
        value = value.reshape(value.shape[0], -1).cpu().numpy()
        names = labels if labels is not None and len(labels) == value.shape[1] else range(
            value.shape[1])
        for j, label in enumerate(names):
            out[f"{site}[{label}]"] = value[:, j]
    return out


def default_test_quantities(
    model: Any, data: Any, draws: Latents, *, num_states: int = 3, num_value_draws: int = 256
) -> dict[str, Callable[[Latents], np.ndarray]]:
    """The test quantities of Modrák et al. (2023) for bayes_irl models.

    * ``log_likelihood``: ``sum_i log p(y_i | theta)``, the data's log-likelihood;
    * ``reward[s=k]``: ``mean_a r_theta(s_k, a)`` at ``num_states`` evenly spaced states
      (tabular rewards);
    * ``value_of_mean_policy``: ``E_{x ~ P(. | theta_bar)} R_theta(x)``, the expected return
      under theta of the maxent policy of the posterior-mean reward theta_bar (a function
      of the data through the fit), from ``num_value_draws`` trajectories drawn once with a
      fixed seed (models with ``simulate``).

    Args:
        model: the fitted model.
        data: its prepared data.
        draws: posterior draws that are not ranked, site -> (M, ...) (the quantity must
            not depend on the ranked draws, or theta* loses its exchangeability with them).
        num_states: states at which the reward is a test quantity.
        num_value_draws: trajectories of the posterior-mean policy.

    Returns:
        name -> ``f(latents (N, ...)) -> np.ndarray (N,)``.
    """
    reward = model.reward_model
    site = reward.site_name
    out: dict[str, Callable[[Latents], np.ndarray]] = {}

    def log_likelihood(latents: Latents) -> np.ndarray:
        log_lik, _ = pointwise_log_likelihood(model, data, latents)
        return sum(v.sum(-1) for v in log_lik.values()).numpy()

    out["log_likelihood"] = log_likelihood
    step_rewards = getattr(reward, "step_rewards", None)
    if callable(step_rewards):
        with torch.no_grad():
            num_s = step_rewards(draws[site][:1]).shape[-2]
        for state in sorted({int(round(x)) for x in np.linspace(0, num_s - 1, num_states)}):

            def reward_at(latents: Latents, state: int = state) -> np.ndarray:
                with torch.no_grad():
                    table = step_rewards(latents[site])  # (N, S, A)
                return table[..., state, :].mean(-1).to(torch.float64).numpy()

            out[f"reward[s={state}]"] = reward_at
    simulate = getattr(model, "simulate", None)
    if callable(simulate) and hasattr(model, "space"):
        theta_bar = draws[site].mean(0)
        generator = torch.Generator(device=theta_bar.device).manual_seed(12345)
        with torch.no_grad():
            paths = simulate(theta_bar, num_value_draws, generator=generator)
        states, actions = model.space.split(paths)

        def value(latents: Latents) -> np.ndarray:
            with torch.no_grad():
                theta = latents[site]
                returns = reward.returns(theta.unsqueeze(-2), states.unsqueeze(0),
                                         actions.unsqueeze(0))
            return returns.mean(-1).to(torch.float64).numpy()

        out["value_of_mean_policy"] = value
    return out


# ---------------------------------------------------------------------------- one simulation
def _thin(posterior: Posterior, num: int) -> tuple[Latents, Latents]:
    """``num`` draws evenly spaced over the flattened draws, and the draws left over.

    Returns:
        ``(ranked, held_out)``, site -> (num, ...) and site -> (rest, ...); ``held_out``
        is the ranked set itself when the fit returned exactly ``num`` draws.
    """
    flat = posterior.flat_samples()
    total = next(iter(flat.values())).shape[0]
    if total < num:
        raise ValueError(
            f"the fit returned {total} draws; num_rank_draws={num} needs at least as many"
        )
    index = torch.from_numpy(np.linspace(0, total - 1, num).round().astype(np.int64))
    ranked = {k: v[index].detach() for k, v in flat.items()}
    rest = torch.ones(total, dtype=torch.bool)
    rest[index] = False
    if not bool(rest.any()):
        return ranked, ranked
    return ranked, {k: v[rest].detach() for k, v in flat.items()}


def simulate_once(
    model: Any,
    simulator: Callable[[Any, Latents, torch.Generator], Any],
    index: int,
    *,
    seed: int = 0,
    method: str | None = "laplace",
    options: dict | None = None,
    fit_fn: FitFunction | None = None,
    num_rank_draws: int = 99,
    test_quantities: TestQuantities | None = default_test_quantities,
) -> dict[str, Any]:
    """Run simulation ``index``: prior draw, data, fit, ranks.

    Args:
        model: the model to fit (its prior generates theta*).
        simulator: ``simulator(model, latents, generator) -> raw data``.
        index: the simulation's number (with ``seed`` it fixes every random choice).
        seed: the run's seed.
        method: a ``fit`` method (ignored when ``fit_fn`` is given).
        options: keyword options of ``fit`` (``seed`` and ``progress_bar`` are set here).
        fit_fn: optional ``fit_fn(model, raw_data, seed) -> Posterior``.
        num_rank_draws: L, thinned posterior draws the truth is ranked among.
        test_quantities: see :data:`TestQuantities`; None for latent coordinates only.

    Returns:
        Dict with ``names`` (Q quantity names), ``truth`` (Q,), ``rank`` (Q,), ``pit`` (Q,),
        ``seconds`` (fit and ranking), ``index``.
    """
    sim_seed = int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0] >> 1)
    truth = draw_prior(model, sim_seed)
    generator = torch.Generator().manual_seed(sim_seed + 1)
    raw = simulator(model, truth, generator)
    start = time.perf_counter()
    if fit_fn is not None:
        posterior = fit_fn(model, raw, sim_seed)
    else:
        opts = {"progress_bar": False, **(options or {}), "seed": sim_seed}
        posterior = fit(model, raw, method=method, **opts)
    draws, held_out = _thin(posterior, positive_int(num_rank_draws, "num_rank_draws"))
    batched_truth = {k: v.unsqueeze(0) for k, v in truth.items()}
    values_truth = _flat_coordinates(model, batched_truth)
    values_draws = _flat_coordinates(model, draws)
    if test_quantities is not None:
        data = posterior.data
        # Quantities that use the posterior (the posterior-mean policy) read the draws
        # that are NOT ranked: a quantity built from the ranked draws themselves breaks
        # the exchangeability of theta* with them (measured: p = 0.004 for a calibrated
        # Laplace fit at N = 30 when the ranked draws defined the policy).
        for name, f in test_quantities(model, data, held_out).items():
            values_truth[name] = np.asarray(f(batched_truth), dtype=float).reshape(1)
            values_draws[name] = np.asarray(f(draws), dtype=float).reshape(-1)
    names = list(values_truth)
    t = np.array([values_truth[n][0] for n in names])
    d = np.stack([values_draws[n] for n in names], -1)
    rank, pit = fractional_ranks(t, d, np.random.default_rng(sim_seed))
    return {
        "index": int(index),
        "names": names,
        "truth": t,
        "rank": rank,
        "pit": pit,
        "seconds": time.perf_counter() - start,
    }


# ---------------------------------------------------------------------------- the run
_WORKER_STATE: dict[str, Any] = {}


def _worker_init(state: dict[str, Any]) -> None:
    torch.set_num_threads(1)
    _WORKER_STATE.update(state)


def _worker(index: int) -> dict[str, Any]:
    s = _WORKER_STATE
    pyro.clear_param_store()
    result = simulate_once(s["model"], s["simulator"], index, **s["kwargs"])
    if s["directory"] is not None:
        _save(Path(s["directory"]), result)
    return result


def _path(directory: Path, index: int) -> Path:
    return directory / f"simulation_{index:05d}.npz"


def _save(directory: Path, result: dict[str, Any]) -> None:
    path = _path(directory, result["index"])
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
    np.savez(tmp, names=np.array(result["names"]), truth=result["truth"],
             rank=result["rank"], pit=result["pit"], seconds=result["seconds"],
             index=result["index"])
    os.replace(tmp, path)


def _load(directory: Path, index: int) -> dict[str, Any] | None:
    path = _path(directory, index)
    if not path.exists():
        return None
    with np.load(path) as f:
        return {"index": int(f["index"]), "names": [str(n) for n in f["names"]],
                "truth": f["truth"], "rank": f["rank"], "pit": f["pit"],
                "seconds": float(f["seconds"])}


@dataclass
class CalibrationResult:
    """Ranks of N simulations and their summaries.

    Attributes:
        names: the Q quantity names (latent coordinates ``site[label]``, test quantities).
        rank: int ranks, shape (N, Q), in {0, ..., ``num_rank_draws``}.
        pit: fractional ranks in (0, 1), shape (N, Q).
        truth: the quantities at the prior draw, shape (N, Q).
        seconds: fit and ranking time per simulation, shape (N,).
        num_rank_draws: L.
        attrs: run metadata (method, options, seed, ...).
    """

    names: list[str]
    rank: np.ndarray
    pit: np.ndarray
    truth: np.ndarray
    seconds: np.ndarray
    num_rank_draws: int
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def num_simulations(self) -> int:
        """N."""
        return self.rank.shape[0]

    def coverage(self, levels=COVERAGE_LEVELS) -> xr.DataArray:
        """Coverage of central intervals, dims ``(quantity, level)``."""
        cov, _ = coverage(self.pit, levels)
        return xr.DataArray(cov, dims=("quantity", "level"),
                            coords={"quantity": self.names, "level": list(levels)})

    def uniformity(self, *, num_null: int = 2000, seed: int = 0) -> xr.Dataset:
        """Gamma statistic and p-value per quantity (see :func:`uniformity_test`)."""
        gamma, p = uniformity_test(self.pit, num_null=num_null, seed=seed)
        return xr.Dataset(
            {"gamma": ("quantity", gamma), "p_value": ("quantity", p),
             "inside_band": ("quantity", p > 0.05)},
            coords={"quantity": self.names},
        )

    def miscalibrated(self, *, alpha: float = 0.05, num_null: int = 2000) -> bool:
        """True when some quantity's p-value is below ``alpha / Q`` (Bonferroni)."""
        p = self.uniformity(num_null=num_null)["p_value"].values
        return bool(p.min() < alpha / len(self.names))

    def summary_table(self, levels=(0.5, 0.8, 0.9, 0.95)):
        """A pandas table: coverage per level, uniformity p-value, in-band flag."""
        table = self.coverage(levels).to_pandas()
        table.columns = [f"cov{int(round(100 * c))}" for c in levels]
        uni = self.uniformity()
        table["p_uniform"] = uni["p_value"].values
        table["in_band"] = uni["inside_band"].values
        return table

    def to_inference_data(self) -> az.InferenceData:
        """An InferenceData with the groups ``sbc`` and ``sbc_summary`` (module docstring)."""
        coords = {"simulation": np.arange(self.num_simulations), "quantity": self.names}
        sbc = xr.Dataset(
            {"rank": (("simulation", "quantity"), self.rank),
             "pit": (("simulation", "quantity"), self.pit),
             "truth": (("simulation", "quantity"), self.truth),
             "seconds": ("simulation", self.seconds)},
            coords=coords,
            attrs={**{k: _attr(v) for k, v in self.attrs.items()},
                   "num_rank_draws": self.num_rank_draws},
        )
        cov, se = coverage(self.pit)
        uni = self.uniformity()
        summary = xr.Dataset(
            {"coverage": (("quantity", "level"), cov),
             "coverage_se": (("quantity", "level"), se),
             "gamma": ("quantity", uni["gamma"].values),
             "p_value": ("quantity", uni["p_value"].values),
             "inside_band": ("quantity", uni["inside_band"].values)},
            coords={"quantity": self.names, "level": list(COVERAGE_LEVELS)},
        )
        idata = az.InferenceData()
        idata.add_groups({"sbc": sbc, "sbc_summary": summary}, warn_on_custom_groups=False)
        return idata

    @classmethod
    def from_inference_data(cls, idata: az.InferenceData) -> CalibrationResult:
        """Rebuild the result from :meth:`to_inference_data` (e.g. read from NetCDF)."""
        sbc = idata["sbc"]
        attrs = dict(sbc.attrs)
        return cls(
            names=[str(q) for q in sbc["quantity"].values], rank=sbc["rank"].values,
            pit=sbc["pit"].values, truth=sbc["truth"].values, seconds=sbc["seconds"].values,
            num_rank_draws=int(attrs.pop("num_rank_draws")), attrs=attrs,
        )


def _attr(value: Any) -> Any:
    if isinstance(value, (int, float, str, np.integer, np.floating)) and not isinstance(
            value, bool):
        return value
    return json.dumps(value, default=str) if isinstance(value, (dict, list, tuple)) else str(
        value)


def run_calibration(
    model: Any,
    simulator: Callable[[Any, Latents, torch.Generator], Any],
    *,
    num_simulations: int,
    method: str | None = "laplace",
    options: dict | None = None,
    fit_fn: FitFunction | None = None,
    num_rank_draws: int = 99,
    test_quantities: TestQuantities | None = default_test_quantities,
    seed: int = 0,
    num_workers: int = 1,
    directory: str | os.PathLike | None = None,
    progress_bar: bool = True,
) -> CalibrationResult:
    """Simulation-based calibration of one fit configuration (see the module docstring).

    Args:
        model: a bayes_irl model (its prior generates theta*; it is fitted to each data set).
        simulator: ``simulator(model, latents, generator) -> raw data``, e.g.
            :class:`DemonstrationSimulator` or :class:`PreferenceSimulator`.
        num_simulations: N >= 2.
        method: a ``fit(method=...)`` name (``"laplace"``, ``"svi"``, ``"nuts"``, ...).
        options: keyword options of ``fit`` (``num_samples`` must give >= L draws).
        fit_fn: a custom fit instead of ``method`` (``fit_fn(model, raw, seed)``).
        num_rank_draws: L near-independent draws per fit (thinned evenly over the draws; for
            MCMC keep L below the bulk ESS). Ranks take L + 1 values.
        test_quantities: see :data:`TestQuantities`; None for latent coordinates only.
        seed: the run's seed (simulation i uses a seed derived from ``(seed, i)``).
        num_workers: worker processes (each one torch thread); 1 runs in this process.
        directory: where each finished simulation is saved (``simulation_#####.npz``); a
            rerun with the same directory loads those and runs only the missing ones
            (the directory's ``run.json`` must match the configuration).
        progress_bar: show a tqdm bar over simulations.

    Returns:
        The :class:`CalibrationResult`.

    Raises:
        ValueError: for bad sizes, an existing directory of a different configuration, or
            simulations with different quantities.

    Example:
        >>> from bayes_irl import GridWorld
        >>> from bayes_irl.inference import ExactNormalizer
        >>> from bayes_irl.models import DemonstrationModel
        >>> world = GridWorld.create(size=3, num_features=2, horizon=4, seed=0)
        >>> model = DemonstrationModel(world.reward_model, ExactNormalizer(world.mdp))
        >>> result = run_calibration(
        ...     model, DemonstrationSimulator(50), num_simulations=3, method="laplace",
        ...     options={"optimizer": "lbfgs", "num_samples": 99}, progress_bar=False)
        >>> result.rank.shape[0]
        3
    """
    num = positive_int(num_simulations, "num_simulations", minimum=2)
    workers = positive_int(num_workers, "num_workers")
    if fit_fn is None and method is None:
        raise ValueError("give a fit method= or a fit_fn=")
    kwargs = {"seed": int(seed), "method": method, "options": dict(options or {}),
              "fit_fn": fit_fn, "num_rank_draws": int(num_rank_draws),
              "test_quantities": test_quantities}
    config = {"method": method if fit_fn is None else getattr(fit_fn, "__name__", "fit_fn"),
              "options": kwargs["options"], "seed": int(seed),
              "num_rank_draws": int(num_rank_draws), "simulator": repr(simulator),
              "model": type(model).__name__}
    results: dict[int, dict] = {}
    folder = None
    if directory is not None:
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        run_file = folder / "run.json"
        text = json.dumps(config, sort_keys=True, default=str)
        if run_file.exists():
            if run_file.read_text() != text:
                raise ValueError(
                    f"directory {folder} holds simulations of another configuration "
                    f"({run_file}); use a new directory"
                )
        else:
            run_file.write_text(text)
        for i in range(num):
            loaded = _load(folder, i)
            if loaded is not None:
                results[i] = loaded
    todo = [i for i in range(num) if i not in results]
    state = {"model": model, "simulator": simulator, "kwargs": kwargs,
             "directory": None if folder is None else str(folder)}
    bar = tqdm(total=num, initial=len(results), desc="SBC", disable=not progress_bar)
    with bar:
        if workers == 1 or len(todo) <= 1:
            threads = torch.get_num_threads()
            try:
                _worker_init(state)
                for i in todo:
                    results[i] = _worker(i)
                    bar.update()
            finally:
                torch.set_num_threads(threads)
        else:
            context = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init,
                                     initargs=(state,)) as pool:
                futures = [pool.submit(_worker, i) for i in todo]
                for future in as_completed(futures):
                    result = future.result()
                    results[result["index"]] = result
                    bar.update()
    ordered = [results[i] for i in range(num)]
    names = ordered[0]["names"]
    if any(r["names"] != names for r in ordered):
        raise ValueError("simulations produced different quantities; check test_quantities")
    return CalibrationResult(
        names=list(names),
        rank=np.stack([r["rank"] for r in ordered]),
        pit=np.stack([r["pit"] for r in ordered]),
        truth=np.stack([r["truth"] for r in ordered]),
        seconds=np.array([r["seconds"] for r in ordered]),
        num_rank_draws=int(num_rank_draws),
        attrs={**config, "num_simulations": num, "num_workers": workers},
    )
