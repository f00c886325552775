"""Collecting pairwise judgements from people: one UI-independent session.

The terminal loop (``bayes-irl ask``) and the notebook widget
(:class:`bayes_irl.app.preference_widget.PreferenceWidget`) are thin front-ends over
:class:`CollectionSession`, which owns everything that must not depend on the UI:

* **the answer file** (``.jsonl``): every answer is appended as one JSON line, flushed and
  fsynced before the session moves on, so an interrupt loses nothing; the file is only
  ever appended to, never rewritten. A line::

      {"query_id": 3, "timestamp": "2026-01-01T12:00:00.000000+00:00", "first": 4,
       "second": 9, "answer": "left", "outcome": 1.0, "strategy": "eig", "eig": 0.41}

  ``first``/``second`` index the item pool; ``answer`` is one of :data:`ANSWERS` (left =
  the first item preferred); ``outcome`` 1.0 / 0.0 / 0.5 (tie) or null for a skip. The
  file is readable by :func:`bayes_irl.models.load_preferences` (skips are ignored).
* **resuming**: opening a session on an existing file replays its answers (validated line
  by line; errors name the line) and continues with the next query id;
* **the next query**: the pair of largest expected information gain under the current
  posterior (:class:`~bayes_irl.inference.active.ActivePreferenceLearner`), or a random
  pair; the draws behind the EIG are seeded by (seed, query id), so a resumed session asks
  what an uninterrupted one would have asked. Skipped pairs are not asked again;
* **refitting** the posterior every ``refit_every`` answers (and once on resume, so the
  posterior always reflects the whole file at that point);
* **the stop rule**: a query budget and/or a posterior-entropy threshold.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from bayes_irl import GridWorld
    >>> from bayes_irl.models import PreferenceModel
    >>> world = GridWorld.create(size=3, horizon=4, seed=0)
    >>> model = PreferenceModel(world.reward_model, world.sample_demonstrations(6, seed=1),
    ...                         ties="davidson")
    >>> session = CollectionSession(model, Path(tempfile.mkdtemp()) / "answers.jsonl",
    ...                             budget=2)
    >>> query = session.next_query()
    >>> _ = session.answer(query, "left")
    >>> session.num_asked
    1
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import torch

from bayes_irl.inference.active import ActivePreferenceLearner
from bayes_irl.inference.fit import fit
from bayes_irl.models.preference_data import PairwiseComparisons
from bayes_irl.models.preference_io import load_preferences
from bayes_irl.models.preferences import PreferenceModel
from bayes_irl.validation import positive_int

__all__ = ["ANSWERS", "CollectionSession", "Query"]

ANSWERS: dict[str, float | None] = {"left": 1.0, "right": 0.0, "tie": 0.5, "skip": None}
"""Answer words and their outcomes (left = the first item of the query preferred)."""


@dataclass(frozen=True)
class Query:
    """One pairwise question.

    Attributes:
        query_id: 0, 1, 2, ... in the order asked (skips included).
        first: item index shown on the left.
        second: item index shown on the right.
        eig: expected information gain (nats) under the posterior when chosen; NaN for
            random queries.
    """

    query_id: int
    first: int
    second: int
    eig: float


class CollectionSession:
    """Ask, record, refit, stop: the state of one person's judging session.

    Args:
        model: a Bradley-Terry :class:`PreferenceModel` on an item pool (use
            ``ties="davidson"`` to accept "tie" answers).
        path: the ``.jsonl`` answer file; created if absent, resumed if present.
        strategy: ``"eig"`` (most informative pair) or ``"random"``.
        update: posterior update of the learner (``"laplace"`` default, fast).
        refit_every: refit the posterior after every k answers (skips do not count).
        budget: stop after this many queries (skips included); None = no budget.
        min_entropy: stop once the posterior's Gaussian entropy (nats) is at most this.
        num_draws: posterior draws behind the EIG.
        candidates: candidate pairs (P, 2); default every pair.
        fit_options: options of the learner's update (see ``ActivePreferenceLearner``).
        seed: seeds the query choice.

    Raises:
        ValueError: for a path that is not ``.jsonl``, bad options, or an existing answer
            file that does not fit the model (the message names the line).
    """

    def __init__(
        self,
        model: PreferenceModel,
        path,
        *,
        strategy: Literal["eig", "random"] = "eig",
        update: Literal["laplace", "importance", "fit"] = "laplace",
        refit_every: int = 1,
        budget: int | None = None,
        min_entropy: float | None = None,
        num_draws: int = 500,
        candidates: torch.Tensor | None = None,
        fit_options: dict | None = None,
        seed: int = 0,
    ) -> None:
        self.path = Path(path)
        if self.path.suffix != ".jsonl":
            raise ValueError(f"path must end in .jsonl; got {str(self.path)!r}")
        if strategy not in ("eig", "random"):
            raise ValueError(f"strategy must be 'eig' or 'random'; got {strategy!r}")
        self.refit_every = positive_int(refit_every, "refit_every")
        self.budget = None if budget is None else positive_int(budget, "budget")
        if min_entropy is not None and not math.isfinite(min_entropy):
            raise ValueError(f"min_entropy must be a finite float or None; got {min_entropy!r}")
        self.min_entropy = min_entropy
        self.model, self.strategy, self.seed = model, strategy, int(seed)
        self.learner = ActivePreferenceLearner(
            model, update=update, num_draws=num_draws, candidates=candidates,
            fit_options=fit_options, seed=seed,
        )
        self.records: list[dict] = []
        self._pending: Query | None = None
        self._since_refit = 0
        if self.path.exists():
            self._resume()

    # ------------------------------------------------------------------ file
    def _resume(self) -> None:
        """Replay the answers already in the file, then refit once."""
        m = self.model.items.shape[0]
        with self.path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{self.path} line {number}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{where}: not valid JSON ({err.msg})") from err
                if not isinstance(record, dict):
                    raise ValueError(f"{where}: expected a JSON object")
                answer = record.get("answer")
                if answer not in ANSWERS:
                    raise ValueError(f"{where}: answer must be one of {list(ANSWERS)}; got "
                                     f"{answer!r}")
                if record.get("query_id") != len(self.records):
                    raise ValueError(f"{where}: query_id must be {len(self.records)} (answers "
                                     f"are numbered in order); got {record.get('query_id')!r}")
                pair = (record.get("first"), record.get("second"))
                if not all(isinstance(v, int) and 0 <= v < m for v in pair):
                    raise ValueError(f"{where}: first and second must be item ids in [0, {m}) "
                                     f"of this session's item pool; got {pair}")
                self._apply(pair[0], pair[1], answer, refit=False)
                self.records.append(record)
        self.learner.refit()
        self._since_refit = 0

    def _append(self, record: dict) -> None:
        """Append one line and force it to disk before returning."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def _apply(self, first: int, second: int, answer: str, *, refit: bool) -> None:
        outcome = ANSWERS[answer]
        if outcome is None:
            self.learner.exclude(first, second)
        else:
            self.learner.observe(first, second, outcome, refit=refit)

    # ------------------------------------------------------------------ state
    @property
    def num_asked(self) -> int:
        """Queries answered so far (skips included), i.e. the next query id."""
        return len(self.records)

    @property
    def num_answered(self) -> int:
        """Answers that carry an outcome (skips excluded)."""
        return sum(r["answer"] != "skip" for r in self.records)

    def posterior_mean(self) -> torch.Tensor:
        """The learner's current estimate of theta, shape (D,)."""
        return self.learner.posterior_mean()

    def posterior_entropy(self) -> float:
        """Gaussian entropy (nats) of the current posterior (see the learner)."""
        return self.learner.posterior_entropy()

    def stop_reason(self) -> str | None:
        """Why the session is over (``"budget"``, ``"entropy"``, ``"exhausted"``), or None."""
        if self.budget is not None and self.num_asked >= self.budget:
            return "budget"
        if self.min_entropy is not None and self.posterior_entropy() <= self.min_entropy:
            return "entropy"
        if len(self.learner.candidates) == 0:
            return "exhausted"
        return None

    @property
    def done(self) -> bool:
        """True once the stop rule holds."""
        return self.stop_reason() is not None

    # ------------------------------------------------------------------ asking
    def next_query(self) -> Query | None:
        """Return the query to ask now (the same one until it is answered), or None when done."""
        if self._pending is not None:
            return self._pending
        if self.done:
            return None
        # draws (and random picks) depend on (seed, query id) only: resuming is exact
        self.learner.generator.manual_seed(self.seed * 1_000_003 + self.num_asked)
        first, second, eig = self.learner.select(self.strategy)
        self._pending = Query(self.num_asked, first, second, eig)
        return self._pending

    def answer(self, query: Query, answer: str) -> dict:
        """Record an answer to the pending query: append it to the file, then update.

        Args:
            query: the query returned by :meth:`next_query`.
            answer: ``"left"``, ``"right"``, ``"tie"`` or ``"skip"``.

        Returns:
            The record appended to the file.

        Raises:
            ValueError: for an unknown answer, a query that is not the pending one, or
                "tie" when the model has no tie model.
        """
        if answer not in ANSWERS:
            raise ValueError(f"answer must be one of {list(ANSWERS)}; got {answer!r}")
        if query != self._pending:
            raise ValueError(f"query {query} is not the pending query {self._pending}")
        if answer == "tie" and self.model.ties is None:
            raise ValueError("a 'tie' answer needs a model with ties='davidson' (or rao_kupper)")
        record = {
            "query_id": query.query_id,
            "timestamp": datetime.now(timezone.utc).isoformat(),
            "first": query.first,
            "second": query.second,
            "answer": answer,
            "outcome": ANSWERS[answer],
            "strategy": self.strategy,
            "eig": None if math.isnan(query.eig) else query.eig,
        }
        self._append(record)  # on disk before anything else can fail
        self.records.append(record)
        self._pending = None
        counts = ANSWERS[answer] is not None
        self._since_refit += counts
        refit = counts and self._since_refit >= self.refit_every
        self._apply(query.first, query.second, answer, refit=refit)
        if refit:
            self._since_refit = 0
        return record

    # ------------------------------------------------------------------ results
    def data(self) -> PairwiseComparisons:
        """The file's answers as comparisons of item ids (skips dropped)."""
        return load_preferences(self.path, items=self.model.items)

    def fit(self, **options):
        """Fit the model to the file's contents: ``fit(model, self.data(), **options)``."""
        return fit(self.model, self.data(), **options)
