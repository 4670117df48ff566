"""Assembling ``TrainingData`` from the shop's files or the shared data sets.

* ``--catalog FILE`` (+ ``--map``): the products; their ``embedding_text`` is what is trained on.
* ``--events FILE``: an interaction log (CSV or JSON Lines: ``user_id, item_id, timestamp[, type]``;
  timestamps in Unix seconds or ISO-8601). Each user's events in time order give one next-item
  case per event after the first, with the real times and types (the profile is computed from
  them exactly as the service would).
* ``--queries FILE --qrels FILE``: labelled searches (``query_id, query`` and ``query_id,
  product_id, gain``); every pair with gain > 0 is a query → product example.
* ``--sequences NAME`` / ``--search-set NAME``: the shared data sets (training rows only: the
  UniSRec train file, or one half of a search set's queries).
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from aisle.index.catalog import Catalog
from aisle.index.profile import EVENT_TYPES
from aisle.training.datasets import DatasetError, SearchSet, SequenceSet
from aisle.training.train_data import NextItemCase, QueryPair, TrainingData


def from_sequence_set(data: SequenceSet) -> TrainingData:
    """The set's items and its training rows (never its evaluation targets)."""
    row_of = {item: row for row, item in enumerate(data.item_ids)}
    cases = [NextItemCase(c.user, tuple(row_of[i] for i in c.history), row_of[c.target]) for c in data.train_cases]
    return TrainingData(list(data.item_ids), list(data.item_texts), sequences=cases)


def from_search_set(search_set: SearchSet) -> TrainingData:
    """The set's catalogue and its queries' labelled pairs."""
    return from_catalog(search_set.load_catalog(), queries=[(q.id, q.text, q.gains) for q in search_set.queries])


def from_catalog(
    catalog: Catalog,
    *,
    events_file: Path | None = None,
    queries: list[tuple[str, str, dict[str, float]]] | None = None,
) -> TrainingData:
    """Training data over a catalogue, from an event log and/or labelled queries.

    Raises:
        DatasetError: an unreadable file or a bad row (named by line).
    """
    ids = [p.id for p in catalog.products]
    row_of = {item: row for row, item in enumerate(ids)}
    data = TrainingData(ids, [p.embedding_text() for p in catalog.products])
    if events_file is not None:
        data.sequences = _cases_from_events(read_events(events_file), row_of)
    for query_id, text, gains in queries or []:
        for item, gain in sorted(gains.items()):
            if gain > 0 and item in row_of:
                data.queries.append(QueryPair(query_id, text, row_of[item]))
    return data


def read_labelled_queries(queries_file: Path, qrels_file: Path) -> list[tuple[str, str, dict[str, float]]]:
    """``(query id, text, {product id: gain})`` of every query that has labels."""
    gains: dict[str, dict[str, float]] = defaultdict(dict)
    for line, row in _rows(qrels_file):
        try:
            gains[str(row["query_id"])][str(row["product_id"])] = float(row.get("gain") or 1)
        except (KeyError, ValueError) as exc:
            raise DatasetError(f"{qrels_file} line {line}: bad qrels row ({exc})") from None
    out = []
    for line, row in _rows(queries_file):
        if "query_id" not in row or "query" not in row:
            raise DatasetError(f"{queries_file} line {line}: needs query_id and query")
        if str(row["query_id"]) in gains:
            out.append((str(row["query_id"]), str(row["query"]), gains[str(row["query_id"])]))
    return out


def read_events(path: Path) -> list[tuple[str, str, float, str]]:
    """``(user, item, timestamp, type)`` of every event in the file."""
    events = []
    for line, row in _rows(path):
        try:
            kind = str(row.get("type") or "purchase")
            if kind not in EVENT_TYPES:
                raise ValueError(f"unknown type '{kind}'")
            events.append((str(row["user_id"]), str(row["item_id"]), _timestamp(row["timestamp"]), kind))
        except (KeyError, ValueError) as exc:
            raise DatasetError(
                f"{path} line {line}: bad event ({exc}); expected user_id, item_id, timestamp[, type]"
            ) from None
    return events


def _cases_from_events(events: list[tuple[str, str, float, str]], row_of: dict[str, int]) -> list[NextItemCase]:
    by_user: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    for user, item, timestamp, kind in events:
        if item in row_of:  # events on products no longer in the catalogue cannot be trained on
            by_user[user].append((timestamp, row_of[item], kind))
    cases = []
    for user in sorted(by_user):
        ordered = sorted(by_user[user])
        for end in range(1, len(ordered)):
            history = ordered[:end]
            cases.append(
                NextItemCase(
                    user,
                    tuple(r for _, r, _ in history),
                    ordered[end][1],
                    timestamps=tuple(t for t, _, _ in history),
                    types=tuple(k for _, _, k in history),
                    now=ordered[end][0],
                )
            )
    return cases


def _timestamp(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    if not Path(path).is_file():
        raise DatasetError(f"file not found: {path}")
    with open(path, newline="", encoding="utf-8") as handle:
        if Path(path).suffix.lower() in (".jsonl", ".ndjson", ".json"):
            rows = []
            for number, text in enumerate(handle, start=1):
                if text.strip():
                    try:
                        rows.append((number, json.loads(text)))
                    except ValueError as exc:
                        raise DatasetError(f"{path} line {number}: not JSON ({exc})") from None
            return rows
        return [(number, row) for number, row in enumerate(csv.DictReader(handle), start=2)]
