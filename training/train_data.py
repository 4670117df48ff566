"""What ``aisle train`` learns from: the catalogue's texts, next-item cases and query → product pairs.

Everything refers to items by their row in the catalogue, whose text is exactly what the index
encodes (``Product.embedding_text``), so the model is trained on the inputs it will serve.
A validation split, carved from the training data with a fixed seed, drives early stopping:
for next-item cases it is the last case of a sample of users (the same shape as a leave-one-out
evaluation, and no validation target is ever a training target of that user); for queries it is a
sample of queries with all their labelled products.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class NextItemCase:
    """A history of item rows (oldest first) and the row of the item that came next.

    ``timestamps`` and ``types`` (one per history item) and ``now`` (the time of the next
    interaction) come from real event logs; without them ``aisle.training.timeline.Timeline`` places
    the history on its synthetic timeline.
    """

    user: str
    history: tuple[int, ...]
    target: int
    timestamps: tuple[float, ...] | None = None
    types: tuple[str, ...] | None = None
    now: float | None = None


@dataclass(frozen=True)
class QueryPair:
    """A query and one product row labelled relevant for it (gain > 0)."""

    query_id: str
    query: str
    target: int


@dataclass
class TrainingData:
    """The catalogue texts and the supervision, by catalogue row.

    Attributes:
        item_ids: product id of every row.
        item_texts: the text the index encodes for every row.
        sequences: next-item cases.
        queries: query → relevant product pairs.
    """

    item_ids: list[str]
    item_texts: list[str]
    sequences: list[NextItemCase] = field(default_factory=list)
    queries: list[QueryPair] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.item_ids) != len(self.item_texts):
            raise ValueError("item_ids and item_texts differ in length")
        rows = len(self.item_ids)
        for case in self.sequences:
            if not all(0 <= r < rows for r in (*case.history, case.target)):
                raise ValueError(f"next-item case of user {case.user} names a row outside the catalogue")
        for pair in self.queries:
            if not 0 <= pair.target < rows:
                raise ValueError(f"query {pair.query_id} names a row outside the catalogue")

    def is_empty(self) -> bool:
        return not self.sequences and not self.queries


@dataclass
class Split:
    """Training and validation parts of ``TrainingData``."""

    train_sequences: list[NextItemCase]
    valid_sequences: list[NextItemCase]
    train_queries: list[QueryPair]
    valid_queries: dict[str, tuple[str, frozenset[int]]]

    def summary(self) -> dict[str, int]:
        return {
            "train_sequences": len(self.train_sequences),
            "valid_sequences": len(self.valid_sequences),
            "train_query_pairs": len(self.train_queries),
            "valid_queries": len(self.valid_queries),
        }


def split_for_validation(data: TrainingData, fraction: float, seed: int, max_valid_cases: int = 2000) -> Split:
    """Holds out a seeded sample for early stopping.

    Next-item cases: for a ``fraction`` of users (at most ``max_valid_cases``) the user's
    longest case is held out; their shorter cases stay in training (their targets are earlier
    items, never the held-out one). Queries: a ``fraction`` of query ids with all their pairs.
    """
    if not 0 <= fraction < 1:
        raise ValueError(f"the validation fraction must be within [0, 1), not {fraction}")
    rng = random.Random(seed)
    by_user: dict[str, list[NextItemCase]] = defaultdict(list)
    for case in data.sequences:
        by_user[case.user].append(case)
    users = sorted(by_user)
    rng.shuffle(users)
    held_users = set(users[: min(max_valid_cases, round(fraction * len(users)))])
    valid_sequences: list[NextItemCase] = []
    held_cases: set[int] = set()
    for user in sorted(held_users):
        last = max(by_user[user], key=lambda case: len(case.history))
        valid_sequences.append(last)
        held_cases.add(id(last))
    train_sequences = [case for case in data.sequences if id(case) not in held_cases]

    query_ids = sorted({pair.query_id for pair in data.queries})
    rng.shuffle(query_ids)
    held_queries = set(query_ids[: min(max_valid_cases, round(fraction * len(query_ids)))])
    valid_queries: dict[str, tuple[str, frozenset[int]]] = {}
    for pair in data.queries:
        if pair.query_id in held_queries:
            text, targets = valid_queries.get(pair.query_id, (pair.query, frozenset()))
            valid_queries[pair.query_id] = (text, targets | {pair.target})
    train_queries = [pair for pair in data.queries if pair.query_id not in held_queries]
    return Split(train_sequences, valid_sequences, train_queries, valid_queries)


def cases_from_histories(histories: dict[str, Sequence[int]], min_history: int = 1) -> list[NextItemCase]:
    """Every prefix of every user's history as a next-item case (the train-file convention).

    Args:
        histories: user → item rows in time order.
        min_history: shortest history a case may have.
    """
    cases: list[NextItemCase] = []
    for user, rows in histories.items():
        for end in range(max(1, min_history), len(rows)):
            cases.append(NextItemCase(user, tuple(rows[:end]), rows[end]))
    return cases
