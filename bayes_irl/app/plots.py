"""Plots of reward posteriors (matplotlib, on top of ArviZ).

:func:`plot_reward_posterior` draws, per reward parameter, the posterior mean with its
94% highest-density interval and, when known, the true value — the picture a user wants
after a fit on simulated data.
"""

from __future__ import annotations

import arviz as az
import matplotlib.pyplot as plt
import numpy as np

__all__ = ["plot_reward_posterior"]


def plot_reward_posterior(
    idata: az.InferenceData,
    *,
    var_name: str | None = None,
    true_values=None,
    hdi_prob: float = 0.94,
    ax=None,
):
    """Plot posterior mean ± HDI per parameter, with the true values if given.

    Args:
        idata: InferenceData with a posterior group.
        var_name: posterior variable (default: the first one); must have one dimension
            besides (chain, draw), shape (D,).
        true_values: optional array of shape (D,).
        hdi_prob: HDI mass in (0, 1).
        ax: matplotlib axes to draw on; a new figure otherwise.

    Returns:
        The matplotlib axes.

    Raises:
        ValueError: if the variable is not a vector or ``true_values`` has the wrong shape.
    """
    var_name = var_name or list(idata.posterior.data_vars)[0]
    draws = idata.posterior[var_name]
    if draws.ndim != 3:
        raise ValueError(f"{var_name} must have dims (chain, draw, param); got {draws.dims}")
    labels = [str(c) for c in draws[draws.dims[-1]].values]
    mean = draws.mean(("chain", "draw")).values
    hdi = az.hdi(idata, var_names=[var_name], hdi_prob=hdi_prob)[var_name].values  # (D, 2)
    if ax is None:
        _, ax = plt.subplots(figsize=(max(4, 1.2 * len(labels)), 3.5))
    x = np.arange(len(labels))
    ax.errorbar(
        x,
        mean,
        yerr=[mean - hdi[:, 0], hdi[:, 1] - mean],
        fmt="o",
        capsize=4,
        label=f"posterior mean ± {int(hdi_prob * 100)}% HDI",
    )
    if true_values is not None:
        truth = np.asarray(true_values, dtype=float)
        if truth.shape != (len(labels),):
            raise ValueError(f"true_values must have shape ({len(labels)},); got {truth.shape}")
        ax.scatter(x, truth, marker="x", color="C3", s=60, zorder=3, label="true value")
    ax.axhline(0.0, color="0.8", lw=0.8, zorder=0)
    ax.set_xticks(x, labels, rotation=30 if len(labels) > 6 else 0)
    ax.set_ylabel(var_name)
    ax.set_title(f"Reward posterior ({idata.posterior.attrs.get('method', '')})")
    ax.legend(loc="best", fontsize="small")
    ax.figure.tight_layout()
    return ax
