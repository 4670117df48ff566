"""What is kept in memory per user and per session, maintained in O(d) per event.

A ``ProfileState`` holds one ``ProfileAccumulator`` per vector space of the index (text, and
images when indexed), the event counts, and per (item, event type) the decayed weight in log2
form (``log2 Σ w·2^(t/h)``, exact for events in any order, never overflowing), from which the
profile endpoint, price band, purchases and affinities are read.

A ``SessionState`` splits a session's events into anonymous ones (no user id), which are merged
into every user the session gets linked to, and identified ones (which already count for their
user); the session's own profile combines both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from aisle.index.profile import DecayConfig, ProfileAccumulator, exp2


def log2_add(a: float, b: float) -> float:
    """``log2(2^a + 2^b)`` without overflow."""
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    top = max(a, b)
    return top + math.log2(2.0 ** (a - top) + 2.0 ** (b - top))


@dataclass
class ItemStat:
    """One (item, event type) of a profile: ``log2 Σ w·2^(t/h)``, the latest time and the count."""

    log2_weight: float
    last_ts: float
    count: int = 1

    def merged(self, other: ItemStat) -> ItemStat:
        return ItemStat(
            log2_add(self.log2_weight, other.log2_weight),
            max(self.last_ts, other.last_ts),
            self.count + other.count,
        )


@dataclass
class ProfileState:
    """A user's or a session's profile in every vector space, plus per-item statistics."""

    dims: dict[str, int]
    config: DecayConfig
    spaces: dict[str, ProfileAccumulator] = field(init=False)
    counts: dict[str, int] = field(default_factory=dict)
    items: dict[tuple[int, str], ItemStat] = field(default_factory=dict)
    first_ts: float = math.inf
    last_ts: float = -math.inf
    linked_sessions: int = 0

    def __post_init__(self) -> None:
        self.spaces = {name: ProfileAccumulator(dim, self.config) for name, dim in self.dims.items()}

    @property
    def total_events(self) -> int:
        return sum(self.counts.values())

    def add(self, row: int | None, event_type: str, timestamp: float, vectors: dict[str, np.ndarray]) -> None:
        """Counts one event; ``row`` None (an item unknown to the index) only counts."""
        self.counts[event_type] = self.counts.get(event_type, 0) + 1
        self.first_ts = min(self.first_ts, timestamp)
        self.last_ts = max(self.last_ts, timestamp)
        if row is None:
            return
        for name, vector in vectors.items():
            self.spaces[name].add(vector, event_type, timestamp)
        stat = ItemStat(self._log2_weight(event_type, timestamp), timestamp)
        key = (row, event_type)
        known = self.items.get(key)
        self.items[key] = stat if known is None else known.merged(stat)

    def _log2_weight(self, event_type: str, timestamp: float) -> float:
        half_life = self.config.half_life(event_type)
        return math.log2(self.config.weight(event_type)) + (0.0 if math.isinf(half_life) else timestamp / half_life)

    def merge(self, other: ProfileState) -> None:
        """Adds every event of ``other`` (a session's anonymous events joining its user)."""
        for name, accumulator in other.spaces.items():
            self.spaces[name].merge(accumulator)
        for event_type, count in other.counts.items():
            self.counts[event_type] = self.counts.get(event_type, 0) + count
        for key, stat in other.items.items():
            known = self.items.get(key)
            self.items[key] = stat if known is None else known.merged(stat)
        self.first_ts = min(self.first_ts, other.first_ts)
        self.last_ts = max(self.last_ts, other.last_ts)

    def item_weights(self, now: float) -> dict[tuple[int, str], float]:
        """The decayed weight at ``now`` of every (row, event type) in the profile."""
        weights: dict[tuple[int, str], float] = {}
        for (row, event_type), stat in self.items.items():
            half_life = self.config.half_life(event_type)
            age = 0.0 if math.isinf(half_life) else now / half_life
            weights[(row, event_type)] = exp2(stat.log2_weight - age)
        return weights


@dataclass
class SessionState:
    """A session: its anonymous and identified events, and the users it is linked to."""

    anonymous: ProfileState
    identified: ProfileState
    users: set[str] = field(default_factory=set)

    def parts(self) -> list[ProfileState]:
        return [part for part in (self.anonymous, self.identified) if part.total_events]


def merged_item_weights(states: list[ProfileState], now: float) -> dict[tuple[int, str], float]:
    """Item weights of several profiles added together."""
    weights: dict[tuple[int, str], float] = {}
    for state in states:
        for key, weight in state.item_weights(now).items():
            weights[key] = weights.get(key, 0.0) + weight
    return weights
