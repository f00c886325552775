"""A Jupyter widget for collecting pairwise judgements (ipywidgets).

The two trajectories of the current query are drawn on the map side by side; four buttons
answer it (left / right / tie / skip). Each click goes to
:meth:`bayes_irl.inference.collection.CollectionSession.answer`, which appends the answer
to the session's JSONL file at once and refits the posterior every ``refit_every``
answers; the widget then shows the next query, or the stop reason. Display it with
``display(widget.view)``; in tests or scripted runs, :meth:`PreferenceWidget.click` presses
a button through its callbacks. Needs ``pip install bayes_irl[notebook]``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bayes_irl.app.trajectory_views import draw_pair
from bayes_irl.inference.collection import ANSWERS, CollectionSession, Query

__all__ = ["PreferenceWidget"]


class PreferenceWidget:
    """Buttons and a side-by-side map view over a :class:`CollectionSession`.

    Args:
        session: the collection session (its model's item pool is what is shown).
        num_states: S of the MDP (a square grid is drawn as N×N cells).
        background: optional (S,) values for the map's colours (e.g. one feature).
        draw: render the map on every query (False skips matplotlib, e.g. for fast
            scripted runs; the status line still updates).
        on_answer: optional callback ``on_answer(record)`` after each recorded answer.

    Attributes:
        buttons: answer word -> ``ipywidgets.Button``.
        status: ``ipywidgets.HTML`` with the progress and the posterior mean.
        figure: ``ipywidgets.Output`` holding the current pair's map.
        view: the widget to display (``ipywidgets.VBox``).
    """

    def __init__(
        self,
        session: CollectionSession,
        *,
        num_states: int,
        background=None,
        draw: bool = True,
        on_answer: Callable[[dict], None] | None = None,
    ) -> None:
        import ipywidgets as widgets

        self.session, self.num_states = session, int(num_states)
        self.background, self.draw, self.on_answer = background, draw, on_answer
        self.buttons = {
            word: widgets.Button(description=word, tooltip=f"answer: {word}")
            for word in ANSWERS
        }
        for word, button in self.buttons.items():
            button.on_click(lambda _button, word=word: self._answer(word))
        self.status = widgets.HTML()
        self.figure = widgets.Output()
        self.view = widgets.VBox(
            [self.figure, widgets.HBox(list(self.buttons.values())), self.status]
        )
        self.query: Query | None = None
        self._show_next()

    def click(self, answer: str) -> None:
        """Press the button of ``answer`` (``"left"``, ``"right"``, ``"tie"``, ``"skip"``)."""
        if answer not in self.buttons:
            raise ValueError(f"answer must be one of {list(self.buttons)}; got {answer!r}")
        self.buttons[answer].click()

    def _answer(self, word: str) -> None:
        if self.query is None:
            return
        record = self.session.answer(self.query, word)
        if self.on_answer is not None:
            self.on_answer(record)
        self._show_next()

    def _show_next(self) -> None:
        session = self.session
        self.query = session.next_query()
        mean = ", ".join(f"{v:.2f}" for v in session.posterior_mean().tolist())
        progress = f"{session.num_asked} answered"
        if session.budget is not None:
            progress += f" of {session.budget}"
        if self.query is None:
            for button in self.buttons.values():
                button.disabled = True
            self.status.value = (f"<b>done</b> ({session.stop_reason()}): {progress}; "
                                 f"posterior mean [{mean}]")
            self.figure.clear_output()
            return
        self.status.value = (f"query {self.query.query_id + 1}: {progress}; posterior mean "
                             f"[{mean}]; saved to {session.path}")
        if self.draw:
            self._draw(session.model.items[self.query.first],
                       session.model.items[self.query.second])

    def _draw(self, first: torch.Tensor, second: torch.Tensor) -> None:
        import matplotlib.pyplot as plt
        from IPython.display import display

        self.figure.clear_output(wait=True)
        fig = draw_pair(first, second, num_states=self.num_states, background=self.background)
        with self.figure:
            display(fig)
        plt.close(fig)
