"""Plots of posterior return distributions of policies (matplotlib).

:func:`plot_return_distributions` draws, for each policy, the histogram of its expected
return under the posterior reward draws, with its lower 5% quantile (the high-confidence
lower bound) and, when known, its true return.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["plot_return_distributions"]


def plot_return_distributions(
    returns: dict,
    *,
    true_returns: dict | None = None,
    lower: float = 0.05,
    bins: int = 40,
    ax=None,
):
    """Overlay the posterior return distributions of several policies.

    Args:
        returns: policy name -> returns over posterior draws, array of shape (N,).
        true_returns: optional policy name -> true expected return (a float).
        lower: quantile marked as the lower bound, in (0, 1).
        bins: histogram bins.
        ax: matplotlib axes; a new figure otherwise.

    Returns:
        The matplotlib axes.

    Raises:
        ValueError: for an empty ``returns``, non-finite values or ``lower`` outside (0, 1).
    """
    if not returns:
        raise ValueError("returns must hold at least one policy")
    if not 0 < lower < 1:
        raise ValueError(f"lower must lie in (0, 1); got {lower!r}")
    arrays = {name: np.asarray(values, dtype=float).reshape(-1) for name, values in returns.items()}
    for name, values in arrays.items():
        if values.size == 0 or not np.isfinite(values).all():
            raise ValueError(f"returns[{name!r}] must be a non-empty finite array")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    edges = np.histogram_bin_edges(np.concatenate(list(arrays.values())), bins=bins)
    for i, (name, values) in enumerate(arrays.items()):
        color = f"C{i % 10}"
        ax.hist(values, bins=edges, density=True, alpha=0.35, color=color, label=name)
        ax.axvline(np.quantile(values, lower), color=color, ls="--", lw=1)
        if true_returns is not None and name in true_returns:
            ax.axvline(float(true_returns[name]), color=color, lw=2)
    ax.set_xlabel("expected return under the posterior reward draws")
    ax.set_ylabel("density")
    title = f"dashed: {int(lower * 100)}% quantile"
    if true_returns:
        title += "; solid: true return"
    ax.set_title(title, fontsize="small")
    ax.legend(fontsize="small")
    ax.figure.tight_layout()
    return ax
