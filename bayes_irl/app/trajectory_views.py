"""Show a person two trajectories side by side: as text (terminal) or on the map (matplotlib).

Both views assume grid states ``s = row * N + col`` (the layout of
:class:`bayes_irl.GridWorld`) when S is a perfect square N², and fall back to the state
sequence otherwise. A trajectory is the encoding (T + 1, 2) of
:mod:`bayes_irl.trajectories`: ``item[t, 0] = s_t``, ``item[t, 1] = a_t``, -1 past its
length.
"""

from __future__ import annotations

import math

import torch

__all__ = ["draw_pair", "grid_side", "text_pair"]

_STEP_MARKS = "0123456789abcdefghijklmnopqrstuvwxyz"


def grid_side(num_states: int) -> int | None:
    """Return N when ``num_states`` = N² (a square grid), else None."""
    side = math.isqrt(num_states)
    return side if side * side == num_states and side >= 2 else None


def _visited_states(item: torch.Tensor) -> list[int]:
    """The observed states s_0..s_L of one trajectory (T + 1, 2)."""
    return [int(s) for s in item[:, 0].tolist() if s >= 0]


def _text_grid(item: torch.Tensor, side: int) -> list[str]:
    """Rows of an N×N grid; each visited cell shows the step of its first visit."""
    cells = [["." for _ in range(side)] for _ in range(side)]
    for t, state in enumerate(_visited_states(item)):
        row, col = divmod(state, side)
        if cells[row][col] == ".":
            cells[row][col] = _STEP_MARKS[t] if t < len(_STEP_MARKS) else "+"
    return [" ".join(row) for row in cells]


def _cells(item: torch.Tensor, side: int) -> str:
    """The path as (row, col) cells: ``(0,1) (1,1) (1,1) ...``."""
    return " ".join("({},{})".format(*divmod(s, side)) for s in _visited_states(item))


def text_pair(first: torch.Tensor, second: torch.Tensor, *, num_states: int) -> str:
    """Render two trajectories side by side as text: LEFT | RIGHT.

    On a square grid each visited cell shows the time step of its first visit (0 = the
    start) and the full paths follow as (row, col) cells, so staying in place and
    revisits are visible; otherwise the two state sequences are listed.

    Args:
        first: the left trajectory (T + 1, 2).
        second: the right trajectory (T + 1, 2).
        num_states: S of the MDP.

    Returns:
        A multi-line string.
    """
    side = grid_side(num_states)
    if side is None:
        return "\n".join(
            f"{name:5s}: " + " -> ".join(str(s) for s in _visited_states(item))
            for name, item in (("LEFT", first), ("RIGHT", second))
        )
    left, right = _text_grid(first, side), _text_grid(second, side)
    width = len(left[0])
    lines = [f"{'LEFT':<{width}}   |   RIGHT"]
    lines += [f"{a:<{width}}   |   {b}" for a, b in zip(left, right, strict=True)]
    lines += [f"LEFT  path: {_cells(first, side)}", f"RIGHT path: {_cells(second, side)}"]
    return "\n".join(lines)


def draw_pair(first: torch.Tensor, second: torch.Tensor, *, num_states: int, background=None):
    """Draw two trajectories on the map, side by side (matplotlib).

    Args:
        first: the left trajectory (T + 1, 2).
        second: the right trajectory (T + 1, 2).
        num_states: S of the MDP (a square grid is drawn as N×N cells).
        background: optional (S,) values shown as the map's colours (e.g. one feature);
            default a blank map.

    Returns:
        The matplotlib figure (two axes: left and right).
    """
    import matplotlib.pyplot as plt

    side = grid_side(num_states)
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.4))
    for ax, item, title in ((axes[0], first, "left"), (axes[1], second, "right")):
        states = _visited_states(item)
        if side is None:
            ax.plot(range(len(states)), states, "o-")
            ax.set_xlabel("step")
            ax.set_ylabel("state")
        else:
            image = (torch.zeros(num_states) if background is None
                     else torch.as_tensor(background, dtype=torch.float64))
            ax.imshow(image.reshape(side, side).numpy(), cmap="Greys", alpha=0.35)
            rows, cols = zip(*(divmod(s, side) for s in states), strict=True)
            ax.plot(cols, rows, "-", color="tab:blue", lw=2.5, alpha=0.8)
            ax.plot(cols[0], rows[0], "o", color="tab:green", ms=11, label="start")
            ax.plot(cols[-1], rows[-1], "*", color="tab:red", ms=15, label="end")
            ax.set_xticks(range(side))
            ax.set_yticks(range(side))
            ax.set_xlim(-0.5, side - 0.5)
            ax.set_ylim(side - 0.5, -0.5)
            ax.grid(True, color="white", lw=0.5)
        ax.set_title(title)
    axes[0].legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig
