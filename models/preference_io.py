"""Read and write preference data: pairwise comparisons and rankings as CSV, JSONL or a DataFrame.

People's judgements arrive as tables, one row per judgement. Two ways to name the items:

* **by id**: integers indexing the trajectories of an item file (a demonstrations-format
  ``.npz``, see :mod:`bayes_irl.io`); the data then hold item indices and belong to a
  :class:`~bayes_irl.models.PreferenceModel` built on that item pool;
* **inline**: each item's states and actions written out (ragged lengths allowed); the
  data then hold trajectories, padded with -1 to a common horizon (the longest item, or
  ``horizon``), for a model built on the MDP (which pads them to its own horizon).

Columns (CSV header / JSONL keys / DataFrame columns; other columns, e.g. ``timestamp`` or
``query_id``, are kept in the file and ignored here):

=====================  ======================================================================
pairwise, by id        ``first``, ``second`` (int ids), ``outcome``
pairwise, inline       ``first_states``, ``first_actions``, ``second_states``,
                       ``second_actions``, ``outcome`` (CSV: space-separated ints;
                       JSONL: ``"first": {"states": [...], "actions": [...]}`` also works)
rankings, by id        ``ranking``: ids best first (CSV ``"3 1 7"``, JSONL ``[3, 1, 7]``)
rankings, inline       ``ranking_states``, ``ranking_actions``: items separated by ``|``
                       (CSV ``"0 1 2 | 0 4 5"``); JSONL ``"ranking": [{"states": ...}, ...]``
=====================  ======================================================================

``outcome`` is 1 (first preferred), 0 (second preferred) or 0.5 (a tie; the model needs
``ties=...``). A row whose ``answer`` is ``"skip"`` (a skipped query of
:mod:`bayes_irl.inference.collection`) is ignored. Trajectory convention as in
:mod:`bayes_irl.trajectories`: ``states`` s_0..s_L (L + 1 entries), ``actions`` a_0..a_{L-1}
(L entries, a_t taken in s_t), L >= 1.

Every malformed row raises a ValueError naming the file and line (CSV: the header is
line 1) or the DataFrame row. Writers never overwrite an existing file unless
``overwrite=True``; save -> load returns data with identical log-likelihoods.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch

from bayes_irl.models.choice import TIE
from bayes_irl.models.preference_data import PairwiseComparisons, Rankings
from bayes_irl.trajectories import PAD, TrajectoryBatch
from bayes_irl.validation import as_int_tensor

__all__ = [
    "load_preferences",
    "preferences_from_dataframe",
    "preferences_to_records",
    "read_records",
    "records_to_preferences",
    "save_preferences",
]

_SUFFIXES = (".csv", ".jsonl")
_INLINE_PAIR = ("first_states", "first_actions", "second_states", "second_actions")


# ---------------------------------------------------------------------------- reading
def read_records(path) -> list[tuple[str, dict]]:
    """Read the rows of a ``.csv`` (with header) or ``.jsonl`` file.

    Returns:
        ``[(location, row), ...]``; location is ``"<path> line <k>"`` for error messages.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: for another suffix, a missing header or a line that is not JSON.
    """
    path = Path(path)
    if path.suffix not in _SUFFIXES:
        raise ValueError(f"path must end in .csv or .jsonl; got {str(path)!r}")
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    records = []
    with path.open(newline="", encoding="utf-8") as handle:
        if path.suffix == ".csv":
            reader = csv.DictReader(handle)
            if not reader.fieldnames:
                raise ValueError(f"{path} line 1: a header row is required")
            for row in reader:
                if None in row:
                    raise ValueError(
                        f"{path} line {reader.line_num}: {len(row[None])} more fields than the "
                        f"{len(reader.fieldnames)} columns of the header"
                    )
                records.append((f"{path} line {reader.line_num}", row))
        else:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path} line {number}: not valid JSON ({err.msg})") from err
                if not isinstance(row, dict):
                    raise ValueError(f"{path} line {number}: expected a JSON object per line")
                records.append((f"{path} line {number}", row))
    return records


def _missing(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or (
        isinstance(value, float) and math.isnan(value))


def _field(row: dict, key: str, where: str):
    value = row.get(key)
    if _missing(value):
        raise ValueError(f"{where}: missing {key!r}")
    return value


def _parse_int(value, where: str, name: str) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{where}: {name} must be an integer; got {value!r}")
    try:
        number = float(value) if not isinstance(value, (int, np.integer)) else int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {name} must be an integer; got {value!r}") from None
    if not (math.isfinite(number) and number == int(number)):
        raise ValueError(f"{where}: {name} must be an integer; got {value!r}")
    return int(number)


def _parse_ints(value, where: str, name: str) -> list[int]:
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    elif isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{where}: {name} must be a list of integers; got {value!r}")
    return [_parse_int(v, where, name) for v in value]


def _parse_id(value, where: str, name: str, num_items: int | None) -> int:
    index = _parse_int(value, where, name)
    if index < 0 or (num_items is not None and index >= num_items):
        bound = "" if num_items is None else f" and < {num_items} (the items in the item file)"
        raise ValueError(f"{where}: {name} must be an item id >= 0{bound}; got {index}")
    return index


def _parse_outcome(value, where: str) -> float:
    try:
        outcome = float(value)
    except (TypeError, ValueError):
        outcome = float("nan")
    if outcome not in (0.0, 1.0, TIE):
        raise ValueError(
            f"{where}: outcome must be 1 (first preferred), 0 (second preferred) or 0.5 "
            f"(tie); got {value!r}"
        )
    return outcome


def _trajectory(states, actions, where: str, name: str) -> tuple[list[int], list[int]]:
    states = _parse_ints(states, where, f"{name} states")
    actions = _parse_ints(actions, where, f"{name} actions")
    if len(actions) < 1 or len(states) != len(actions) + 1:
        raise ValueError(
            f"{where}: {name} needs L >= 1 actions and L + 1 states; got {len(states)} states "
            f"and {len(actions)} actions"
        )
    if min(states) < 0 or min(actions) < 0:
        raise ValueError(f"{where}: {name} states and actions must be >= 0")
    return states, actions


def _inline_item(row: dict, key: str, where: str) -> tuple[list[int], list[int]]:
    """An inline item: JSON ``{"states", "actions"}`` under ``key`` or two columns."""
    nested = row.get(key)
    if isinstance(nested, dict):
        return _trajectory(_field(nested, "states", where), _field(nested, "actions", where),
                           where, key)
    return _trajectory(_field(row, f"{key}_states", where), _field(row, f"{key}_actions", where),
                       where, key)


def _split_items(value, where: str, name: str) -> list:
    if isinstance(value, str):
        return value.split("|")
    if isinstance(value, (list, tuple, np.ndarray)):
        return list(value)
    raise ValueError(f"{where}: {name} must list the ranked items; got {value!r}")


def _pad(items: list[tuple[list[int], list[int]]], horizon: int | None) -> torch.Tensor:
    """Stack ragged (states, actions) into the encoding (n, T + 1, 2), padded with PAD."""
    longest = max(len(a) for _, a in items)
    if horizon is None:
        horizon = longest
    elif longest > horizon:
        raise ValueError(f"an item has {longest} actions, more than horizon = {horizon}")
    out = torch.full((len(items), horizon + 1, 2), PAD, dtype=torch.int64)
    for i, (states, actions) in enumerate(items):
        out[i, : len(states), 0] = torch.tensor(states)
        out[i, : len(actions), 1] = torch.tensor(actions)
    return out


def _num_items(items) -> int | None:
    if items is None:
        return None
    if isinstance(items, (str, Path)):
        from bayes_irl.io import load_demonstrations

        items = load_demonstrations(items)
    if isinstance(items, TrajectoryBatch):
        return len(items)
    return int(torch.as_tensor(items).shape[0])


def records_to_preferences(
    records: Iterable[tuple[str, dict]], *, items=None, horizon: int | None = None
) -> PairwiseComparisons | Rankings:
    """Build comparisons or rankings from table rows (see the module docstring).

    Args:
        records: ``(location, row)`` pairs, as from :func:`read_records`.
        items: optional item pool the ids refer to (a :class:`TrajectoryBatch`, an int
            tensor (m, T + 1, 2) or the path of a demonstrations ``.npz``): ids are then
            range-checked row by row.
        horizon: pad inline items to this T (default: the longest item).

    Returns:
        :class:`PairwiseComparisons` (``first``/``second`` int64 (n,) ids, or trajectories
        (n, T + 1, 2); ``outcomes`` float64 (n,)) or :class:`Rankings` (ids (n, k) or
        trajectories (n, k, T + 1, 2)).

    Raises:
        ValueError: naming the row's location for any malformed row, for a mix of id and
            inline rows or of pairs and rankings, and for a table with no judgements.
    """
    num_items = _num_items(items)
    firsts, seconds, outcomes, rankings = [], [], [], []
    form = kind = None
    source = "the data"
    for where, row in records:
        source = where.rsplit(" line ", 1)[0].rsplit(" row ", 1)[0]
        if str(row.get("answer", "")).strip().lower() == "skip":
            continue
        row_kind = "ranking" if any(k.startswith("ranking") for k in row) else "pair"
        if row_kind == "pair":
            row_form = "inline" if isinstance(row.get("first"), dict) or any(
                k in row for k in _INLINE_PAIR) else "id"
        else:
            row_form = "inline" if "ranking_states" in row else "id"
            if row_form == "id" and not _missing(row.get("ranking")):
                entries = _split_items(row["ranking"], where, "ranking")
                row_form = "inline" if entries and isinstance(entries[0], dict) else "id"
        if kind is not None and (row_kind, row_form) != (kind, form):
            raise ValueError(
                f"{where}: a {row_form} {row_kind} row after {form} {kind} rows; one file "
                "holds one kind of judgement named one way"
            )
        kind, form = row_kind, row_form
        if kind == "pair":
            outcomes.append(_parse_outcome(_field(row, "outcome", where), where))
            if form == "id":
                firsts.append(_parse_id(_field(row, "first", where), where, "first", num_items))
                seconds.append(_parse_id(_field(row, "second", where), where, "second",
                                         num_items))
            else:
                firsts.append(_inline_item(row, "first", where))
                seconds.append(_inline_item(row, "second", where))
            continue
        if form == "id":
            ids = [_parse_id(v, where, "ranking", num_items)
                   for v in _parse_ints(_field(row, "ranking", where), where, "ranking")]
            ranked = ids
        elif "ranking_states" in row:
            states = _split_items(_field(row, "ranking_states", where), where, "ranking_states")
            actions = _split_items(_field(row, "ranking_actions", where), where,
                                   "ranking_actions")
            if len(states) != len(actions):
                raise ValueError(f"{where}: ranking_states and ranking_actions list "
                                 f"{len(states)} and {len(actions)} items")
            ranked = [_trajectory(s, a, where, f"ranked item {j}")
                      for j, (s, a) in enumerate(zip(states, actions, strict=True))]
        else:
            ranked = [_trajectory(_field(e, "states", where), _field(e, "actions", where), where,
                                  f"ranked item {j}")
                      for j, e in enumerate(_split_items(row["ranking"], where, "ranking"))]
        if len(ranked) < 2:
            raise ValueError(f"{where}: a ranking needs k >= 2 items; got {len(ranked)}")
        if rankings and len(ranked) != len(rankings[0]):
            raise ValueError(f"{where}: every ranking must rank the same number k = "
                             f"{len(rankings[0])} of items; got {len(ranked)}")
        if form == "id" and len(set(ranked)) != len(ranked):
            raise ValueError(f"{where}: a ranking must not repeat an item; got {ranked}")
        rankings.append(ranked)
    if kind is None:
        raise ValueError(f"{source} holds no judgements (every row skipped, or no rows)")
    if kind == "pair":
        result = torch.tensor(outcomes, dtype=torch.float64)
        if form == "id":
            return PairwiseComparisons(first=torch.tensor(firsts), second=torch.tensor(seconds),
                                       outcomes=result)
        both = _pad(firsts + seconds, horizon)
        n = len(outcomes)
        return PairwiseComparisons(first=both[:n], second=both[n:], outcomes=result)
    if form == "id":
        return Rankings(rankings=torch.tensor(rankings))
    n, k = len(rankings), len(rankings[0])
    flat = _pad([item for ranked in rankings for item in ranked], horizon)
    return Rankings(rankings=flat.reshape(n, k, *flat.shape[1:]))


def load_preferences(path, *, items=None, horizon: int | None = None):
    """Load comparisons or rankings from a ``.csv`` or ``.jsonl`` file.

    Args:
        path: the file (format in the module docstring).
        items: optional item pool that ids refer to (TrajectoryBatch, int tensor
            (m, T + 1, 2) or a demonstrations ``.npz`` path), for row-wise range checks.
        horizon: pad inline items to this T (default: the longest item).

    Returns:
        :class:`PairwiseComparisons` or :class:`Rankings` (see
        :func:`records_to_preferences`).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: naming the file and line of the first malformed row.

    Example:
        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> data = PairwiseComparisons(torch.tensor([0, 2]), torch.tensor([1, 0]),
        ...                            torch.tensor([1.0, 0.0]))
        >>> path = save_preferences(Path(tempfile.mkdtemp()) / "prefs.csv", data)
        >>> load_preferences(path).first
        tensor([0, 2])
    """
    return records_to_preferences(read_records(path), items=items, horizon=horizon)


def preferences_from_dataframe(frame, *, items=None, horizon: int | None = None):
    """Build comparisons or rankings from a pandas DataFrame, one judgement per row.

    Columns as in the module docstring; cells may be ints, space-separated strings or
    lists. Errors name the DataFrame row (its index label).

    Args:
        frame: the ``pandas.DataFrame``.
        items: optional item pool that ids refer to (see :func:`load_preferences`).
        horizon: pad inline items to this T (default: the longest item).

    Returns:
        :class:`PairwiseComparisons` or :class:`Rankings`.
    """
    if not hasattr(frame, "to_dict") or not hasattr(frame, "index"):
        raise ValueError(f"frame must be a pandas DataFrame; got {type(frame).__name__}")
    records = (
        (f"DataFrame row {label!r}", row)
        for label, row in zip(frame.index, frame.to_dict("records"), strict=True)
    )
    return records_to_preferences(records, items=items, horizon=horizon)


# ---------------------------------------------------------------------------- writing
def _item_record(item: torch.Tensor) -> dict:
    """``{"states", "actions"}`` of one encoded trajectory (T + 1, 2), padding trimmed."""
    length = int((item[:-1, 1] >= 0).sum())
    return {"states": item[: length + 1, 0].tolist(), "actions": item[:length, 1].tolist()}


def _as_encoded(value, name: str) -> torch.Tensor:
    if isinstance(value, TrajectoryBatch):
        return value.as_tensor()
    return as_int_tensor(value, name, "(ids or trajectories)")


def preferences_to_records(data: PairwiseComparisons | Rankings) -> list[dict]:
    """Return one JSON-ready dict per judgement (ids or inline items, as held by ``data``).

    Raises:
        ValueError: for another data type or mis-shaped fields.
    """
    if isinstance(data, PairwiseComparisons):
        first, second = _as_encoded(data.first, "first"), _as_encoded(data.second, "second")
        outcomes = np.asarray(data.outcomes, dtype=np.float64).reshape(-1).tolist()
        if first.shape[0] != len(outcomes) or second.shape[0] != len(outcomes):
            raise ValueError(f"first and second must hold n = {len(outcomes)} items each")
        if first.dim() == 1:
            return [{"first": int(a), "second": int(b), "outcome": y}
                    for a, b, y in zip(first.tolist(), second.tolist(), outcomes, strict=True)]
        return [{"first": _item_record(a), "second": _item_record(b), "outcome": y}
                for a, b, y in zip(first, second, outcomes, strict=True)]
    if isinstance(data, Rankings):
        ranked = _as_encoded(data.rankings, "rankings")
        if ranked.dim() == 2:
            return [{"ranking": row} for row in ranked.tolist()]
        return [{"ranking": [_item_record(item) for item in row]} for row in ranked]
    raise ValueError(f"data must be PairwiseComparisons or Rankings; got {type(data).__name__}")


def _csv_row(record: dict) -> dict:
    def ints(values) -> str:
        return " ".join(str(v) for v in values)

    row = {}
    for key, value in record.items():
        if key == "ranking" and value and isinstance(value[0], dict):
            row["ranking_states"] = " | ".join(ints(v["states"]) for v in value)
            row["ranking_actions"] = " | ".join(ints(v["actions"]) for v in value)
        elif isinstance(value, dict):
            row[f"{key}_states"], row[f"{key}_actions"] = ints(value["states"]), ints(
                value["actions"])
        elif isinstance(value, list):
            row[key] = ints(value)
        else:
            row[key] = repr(value) if isinstance(value, float) else value
    return row


def _lines(records: list[dict], suffix: str) -> Iterator[str]:
    if suffix == ".jsonl":
        for record in records:
            yield json.dumps(record) + "\n"
        return
    rows = [_csv_row(r) for r in records]
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    yield buffer.getvalue()


def save_preferences(path, data: PairwiseComparisons | Rankings, *, overwrite: bool = False):
    """Write comparisons or rankings as ``.csv`` or ``.jsonl`` (chosen by the suffix).

    Items held as indices are written as ids; items held as trajectories are written
    inline, padding trimmed. :func:`load_preferences` reads the file back to data with
    identical log-likelihoods.

    Args:
        path: a ``.csv`` or ``.jsonl`` path.
        data: the comparisons or rankings.
        overwrite: replace an existing file (default: refuse).

    Returns:
        The path written.

    Raises:
        FileExistsError: if ``path`` exists and ``overwrite`` is False.
        ValueError: for another suffix or malformed data.
    """
    path = Path(path)
    if path.suffix not in _SUFFIXES:
        raise ValueError(f"path must end in .csv or .jsonl; got {str(path)!r}")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
    records = preferences_to_records(data)
    if not records:
        raise ValueError("data hold no judgements")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w" if overwrite else "x", newline="", encoding="utf-8") as handle:
        handle.writelines(_lines(records, path.suffix))
    return path
