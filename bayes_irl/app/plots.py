"""Plots of reward posteriors (matplotlib, on top of ArviZ).

:func:`plot_reward_posterior` draws, per reward parameter, the posterior mean with its
94% highest-density interval and, when known, the true value — the picture a user wants
after a fit on simulated data. For MDPs with a 2-D layout (grids, FrozenLake,
CliffWalking), :func:`plot_reward_map` / :func:`plot_reward_maps` draw the posterior of
the state reward over the grid (mean, sd or interval width, P(r(s) > 0) or P(best state))
with the soft-optimal policy's moves and the demonstrations' visit counts;
:func:`plot_action_posterior` shows the posterior of the soft-optimal action at chosen
states, :func:`plot_svi_loss` the SVI loss curve and :func:`plot_khat` the leave-one-out
k-hat of every demonstration.
"""

from __future__ import annotations

import arviz as az
import matplotlib.pyplot as plt
import numpy as np

__all__ = [
    "plot_action_posterior",
    "plot_khat",
    "plot_reward_map",
    "plot_reward_maps",
    "plot_reward_posterior",
    "plot_svi_loss",
    "state_reward_statistic",
]


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


# ---------------------------------------------------------------------- reward maps
_MAP_STATISTICS = ("mean", "sd", "interval_width", "prob_positive", "prob_best")


def _reward_draws(mdp, reward_model, draws, max_draws: int):
    """State rewards ``r[n, s]`` (N, S) of posterior draws (a Posterior or theta (N, D))."""
    import torch

    if hasattr(draws, "flat_samples"):
        theta = draws.flat_samples()[reward_model.site_name]
    else:
        theta = torch.as_tensor(draws)
    if theta.dim() != 2:
        raise ValueError(f"draws must have shape (N, D); got {tuple(theta.shape)}")
    if theta.shape[0] > max_draws:
        # evenly spaced draws: deterministic, and spread over every chain
        theta = theta[torch.linspace(0, theta.shape[0] - 1, max_draws).long()]
    with torch.no_grad():
        step = reward_model.step_rewards(theta)  # (N, S, A)
    if step.shape[-2:] != (mdp.num_states, mdp.num_actions):
        raise ValueError(
            f"reward_model gives rewards of shape {tuple(step.shape[-2:])}; the MDP has "
            f"(S, A) = ({mdp.num_states}, {mdp.num_actions})"
        )
    return step


def _grid(mdp, layout):
    layout = layout or mdp.layout
    if layout is None:
        raise ValueError(
            "a reward map needs a 2-D layout: build the MDP with layout=(rows, cols) "
            "(TabularMDP.from_gymnasium sets it for grid environments) or pass layout="
        )
    rows, cols = (int(v) for v in layout)
    if rows * cols != mdp.num_states:
        raise ValueError(f"layout {layout} has {rows * cols} cells; the MDP has {mdp.num_states}")
    return rows, cols


def state_reward_statistic(step_rewards, statistic: str, *, interval: float = 0.9):
    """Summarise posterior state rewards ``r[n, s] = mean_a step_rewards[n, s, a]``.

    Args:
        step_rewards: posterior step rewards, shape (N, S, A).
        statistic: ``"mean"``, ``"sd"``, ``"interval_width"`` (of the central
            ``interval``), ``"prob_positive"`` (P(r(s) > 0)) or ``"prob_best"`` (posterior
            probability that s has the highest reward).
        interval: mass of the central interval for ``"interval_width"``.

    Returns:
        numpy array of shape (S,).
    """
    r = step_rewards.mean(-1)  # (N, S)
    if statistic == "mean":
        out = r.mean(0)
    elif statistic == "sd":
        out = r.std(0)
    elif statistic == "interval_width":
        tail = (1 - interval) / 2
        out = r.quantile(1 - tail, 0) - r.quantile(tail, 0)
    elif statistic == "prob_positive":
        out = (r > 0).double().mean(0)
    elif statistic == "prob_best":
        best = r.argmax(-1)
        out = (best[:, None] == np.arange(r.shape[1])[None, :]).double().mean(0)
    else:
        raise ValueError(f"statistic must be one of {_MAP_STATISTICS}; got {statistic!r}")
    return out.cpu().numpy()


def _action_displacements(mdp, rows: int, cols: int) -> np.ndarray:
    """Expected move ``E[coord(s') - coord(s) | s, a]`` in (row, col), shape (S, A, 2)."""
    p = mdp.dense_transitions().cpu().numpy()
    coords = np.stack(np.divmod(np.arange(rows * cols), cols), -1).astype(float)  # (S, 2)
    return np.einsum("sat,tk->sak", p, coords) - coords[:, None, :]


def plot_reward_map(
    mdp,
    reward_model,
    draws,
    *,
    statistic: str = "mean",
    demonstrations=None,
    arrows: bool = True,
    kind: str = "causal",
    layout: tuple[int, int] | None = None,
    interval: float = 0.9,
    max_draws: int = 500,
    ax=None,
):
    """Draw a posterior summary of the state reward over the grid of a 2-D MDP.

    The state reward is ``r(s) = mean_a r(s, a)`` (for state features, r(s, a) = r(s)).

    Args:
        mdp: a :class:`~bayes_irl.TabularMDP` with ``layout`` (or pass ``layout``).
        reward_model: the tabular reward model that was fitted.
        draws: a :class:`~bayes_irl.inference.Posterior` or reward parameters (N, D).
        statistic: see :func:`state_reward_statistic`.
        demonstrations: optional :class:`~bayes_irl.TrajectoryBatch`: every cell is
            annotated with its number of visits (observed states s_0..s_L).
        arrows: overlay the action of highest probability at t = 0 under the soft-optimal
            policy of the posterior-mean reward, as its expected move on the grid (one
            scale for all arrows: a greedy stay, or a move into a wall, is a dot).
        kind: ``"causal"`` or ``"global"`` soft policy for the arrows.
        layout: ``(rows, cols)`` overriding ``mdp.layout``; state s is cell
            ``(s // cols, s % cols)``.
        interval: central-interval mass for ``statistic="interval_width"``.
        max_draws: at most this many (evenly spaced) draws are used.
        ax: matplotlib axes; a new figure otherwise.

    Returns:
        The matplotlib axes.

    Raises:
        ValueError: without a layout, or for a reward model that does not fit the MDP.
    """
    from bayes_irl.soft_bellman import soft_policy

    rows, cols = _grid(mdp, layout)
    step = _reward_draws(mdp, reward_model, draws, max_draws)
    values = state_reward_statistic(step, statistic, interval=interval).reshape(rows, cols)
    if ax is None:
        _, ax = plt.subplots(figsize=(1.0 + 0.55 * cols, 0.8 + 0.55 * rows))
    cmap = {"mean": "RdBu", "prob_positive": "RdBu"}.get(statistic, "viridis")
    if statistic == "mean":
        bound = float(np.abs(values).max()) or 1.0
        image = ax.imshow(values, cmap=cmap, vmin=-bound, vmax=bound)
    elif statistic == "prob_positive":
        image = ax.imshow(values, cmap=cmap, vmin=0.0, vmax=1.0)
    else:
        image = ax.imshow(values, cmap=cmap)
    label = {
        "mean": "posterior mean r(s)",
        "sd": "posterior sd of r(s)",
        "interval_width": f"{int(interval * 100)}% interval width of r(s)",
        "prob_positive": "P(r(s) > 0)",
        "prob_best": "P(s has the highest reward)",
    }[statistic]
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=label)
    if arrows:
        log_pi = soft_policy(mdp, step.mean(0), kind=kind)[0]  # (S, A) at t = 0
        best = log_pi.argmax(-1).cpu().numpy()
        move = _action_displacements(mdp, rows, cols)[np.arange(mdp.num_states), best]
        r_idx, c_idx = np.divmod(np.arange(mdp.num_states), cols)
        # one scale for every arrow, so that the longest move is one arrow length: a
        # greedy "stay" (or a move into a wall) under slip drifts by slip/A of a cell,
        # which a per-cell scale would blow up into a full arrow pointing away from it
        longest = float(np.abs(move).max())
        unit = move / longest if longest > 1e-9 else np.zeros_like(move)
        # arrows in data coordinates (x = column, y = row): imshow's y axis points down,
        # so the row change is V as it is, and a move to the row above points up on screen
        ax.quiver(
            c_idx,
            r_idx,
            unit[:, 1],
            unit[:, 0],
            angles="xy",
            scale_units="xy",
            scale=2.5,
            color="k",
            width=0.006,
            alpha=0.8,
        )
    if demonstrations is not None:
        states = demonstrations.states
        visits = np.bincount(states[states >= 0].cpu().numpy(), minlength=mdp.num_states).reshape(
            rows, cols
        )
        for r in range(rows):
            for c in range(cols):
                ax.text(
                    c + 0.42,
                    r + 0.42,
                    str(visits[r, c]),
                    ha="right",
                    va="bottom",
                    fontsize=6,
                    color="0.1",
                    bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7},
                )
    ax.set_xticks(range(cols))
    ax.set_yticks(range(rows))
    ax.set_title(label, fontsize="medium")
    return ax


def plot_reward_maps(
    mdp,
    reward_model,
    draws,
    *,
    demonstrations=None,
    kind: str = "causal",
    layout: tuple[int, int] | None = None,
    third: str = "prob_positive",
    max_draws: int = 500,
):
    """Three reward maps side by side: mean (with arrows and visits), sd, and ``third``.

    Args:
        mdp: the MDP (with a layout, or pass ``layout``).
        reward_model: the fitted tabular reward model.
        draws: a Posterior or reward parameters (N, D).
        demonstrations: optional batch whose visit counts annotate the mean map.
        kind: soft policy of the arrows.
        layout: ``(rows, cols)`` overriding ``mdp.layout``.
        third: statistic of the third panel (``"prob_positive"`` or ``"prob_best"``, ...).
        max_draws: at most this many draws are used.

    Returns:
        The matplotlib figure.
    """
    rows, cols = _grid(mdp, layout)
    fig, axes = plt.subplots(1, 3, figsize=(3 * (1.6 + 0.55 * cols), 1.0 + 0.55 * rows))
    common = dict(kind=kind, layout=(rows, cols), max_draws=max_draws)
    plot_reward_map(mdp, reward_model, draws, demonstrations=demonstrations, ax=axes[0], **common)
    plot_reward_map(mdp, reward_model, draws, statistic="sd", arrows=False, ax=axes[1], **common)
    plot_reward_map(mdp, reward_model, draws, statistic=third, arrows=False, ax=axes[2], **common)
    fig.tight_layout()
    return fig


def plot_action_posterior(
    mdp,
    reward_model,
    draws,
    states,
    *,
    kind: str = "causal",
    time: int = 0,
    action_names=None,
    max_draws: int = 500,
    ax=None,
):
    """Posterior of the soft-optimal policy ``pi_t(a | s)`` at chosen states.

    For every draw the soft-optimal policy of its reward is computed; bars show the
    posterior mean of ``pi_t(a | s)`` with its central 90% interval.

    Args:
        mdp: the MDP.
        reward_model: the fitted tabular reward model.
        draws: a Posterior or reward parameters (N, D).
        states: the states to show (ints).
        kind: ``"causal"`` or ``"global"``.
        time: step t in [0, T).
        action_names: optional A labels.
        max_draws: at most this many draws are used.
        ax: matplotlib axes; a new figure otherwise.

    Returns:
        The matplotlib axes.
    """
    from bayes_irl.soft_bellman import soft_policy

    states = [int(s) for s in states]
    if not states or min(states) < 0 or max(states) >= mdp.num_states:
        raise ValueError(f"states must be a non-empty list in [0, {mdp.num_states}); got {states}")
    if not 0 <= time < mdp.horizon:
        raise ValueError(f"time must lie in [0, {mdp.horizon}); got {time}")
    step = _reward_draws(mdp, reward_model, draws, max_draws)
    pi = soft_policy(mdp, step, kind=kind)[:, time].exp()[:, states]  # (N, len, A)
    mean = pi.mean(0).cpu().numpy()
    lo, hi = (pi.quantile(q, 0).cpu().numpy() for q in (0.05, 0.95))
    names = (
        list(action_names)
        if action_names is not None
        else [f"a{a}" for a in range(mdp.num_actions)]
    )
    if ax is None:
        _, ax = plt.subplots(figsize=(1.5 + 0.9 * len(states) * mdp.num_actions / 4, 3.2))
    width = 0.8 / mdp.num_actions
    x = np.arange(len(states))
    for a in range(mdp.num_actions):
        ax.bar(
            x + (a - (mdp.num_actions - 1) / 2) * width,
            mean[:, a],
            width,
            yerr=[mean[:, a] - lo[:, a], hi[:, a] - mean[:, a]],
            capsize=2,
            label=names[a],
        )
    ax.set_xticks(x, [f"s={s}" for s in states])
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"pi_{time}(a | s)")
    ax.set_title("Posterior of the soft-optimal action (mean, 90% interval)", fontsize="medium")
    ax.legend(fontsize="small", ncol=min(mdp.num_actions, 5))
    ax.figure.tight_layout()
    return ax


def plot_svi_loss(posterior, *, ax=None):
    """Plot the SVI loss (negative ELBO) per step of a Posterior fitted with SVI/Laplace.

    Raises:
        ValueError: when the posterior has no loss trace (MCMC, importance).
    """
    losses = getattr(posterior, "extra", {}).get("losses")
    if losses is None:
        raise ValueError(
            f"the posterior (method {getattr(posterior, 'method', '?')!r}) has no SVI loss "
            "trace; fit with method='svi' or 'laplace'"
        )
    losses = np.asarray(losses)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    ax.plot(losses, lw=0.8, alpha=0.6, label="loss")
    window = max(len(losses) // 50, 1)
    if window > 1:
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(np.arange(window - 1, len(losses)), smooth, lw=1.5, label=f"mean of {window}")
    ax.set_xlabel("step")
    ax.set_ylabel("negative ELBO")
    ax.set_title("SVI loss", fontsize="medium")
    ax.legend(fontsize="small")
    ax.figure.tight_layout()
    return ax


def plot_khat(posterior_or_loo, *, ax=None):
    """Plot the PSIS k-hat of every demonstration (leave-one-out), with the 0.7 line.

    Args:
        posterior_or_loo: a Posterior, its InferenceData, or an ``ELPDData`` from
            :func:`bayes_irl.inference.compare.loo`.
        ax: matplotlib axes; a new figure otherwise.

    Returns:
        The matplotlib axes. Demonstrations above 0.7 have an unreliable LOO estimate
        (they influence the posterior strongly).
    """
    if hasattr(posterior_or_loo, "pareto_k"):
        khat = posterior_or_loo.pareto_k
    else:
        from bayes_irl.inference.compare import loo

        khat = loo(posterior_or_loo).pareto_k
    values = np.asarray(khat)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    bad = values > 0.7
    ax.scatter(np.arange(len(values))[~bad], values[~bad], s=8, label="k-hat <= 0.7")
    ax.scatter(np.arange(len(values))[bad], values[bad], s=12, color="C3", label="k-hat > 0.7")
    ax.axhline(0.7, color="C3", lw=0.8, ls="--")
    ax.set_xlabel("demonstration")
    ax.set_ylabel("PSIS k-hat")
    ax.set_title("Leave-one-out k-hat per demonstration", fontsize="medium")
    ax.legend(fontsize="small")
    ax.figure.tight_layout()
    return ax
