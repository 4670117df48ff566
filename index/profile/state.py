"""What is kept in memory per user and per session, maintained in O(d) per event.

A ``ProfileState`` holds one ``ProfileAccumulator`` per vector space of the index (text, and
images when indexed), the event counts, and per (item, event type) the weight in log2 form
(``log2 Σ w·2^(A_i/H + t_i/h)`` on the two clocks of ``decay``, never overflowing), from which the
profile endpoint, price band, purchases and affinities are read.

A ``SessionState`` splits a session's events into anonymous ones (no user id), which are merged
into every user the session gets linked to, and identified ones (which already count for their
user); the session's own profile combines both.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from aisle.index.profile.decay import EVENT_TYPES, DecayConfig, exp2, log2_add
from aisle.index.profile.vector import ProfileAccumulator


@dataclass(slots=True)
class ItemStat:
    """One (item, event type) of a profile: ``log2 Σ w·2^(A_i/H + t_i/h)``, the latest time, the count."""

    log2_weight: float
    last_ts: float
    count: int = 1

    def merged(self, other: ItemStat) -> ItemStat:
        return ItemStat(
            log2_add(self.log2_weight, other.log2_weight),
            max(self.last_ts, other.last_ts),
            self.count + other.count,
        )


#: Event types get a small code in ``ItemTable`` keys (types outside ``EVENT_TYPES`` are added
#: on first sight: codes only need to be stable within one process).
_TYPE_CODES: dict[str, int] = {name: code for code, name in enumerate(EVENT_TYPES)}
_TYPE_NAMES: list[str] = list(EVENT_TYPES)
_CODE_BITS = 4
_ITEM_DTYPE = np.dtype([("key", "<i8"), ("log2_weight", "<f8"), ("last_ts", "<f8"), ("count", "<i4")])


def _type_code(event_type: str) -> int:
    code = _TYPE_CODES.get(event_type)
    if code is None:
        if len(_TYPE_NAMES) >= 1 << _CODE_BITS:
            raise ValueError(f"more than {1 << _CODE_BITS} event types")
        code = _TYPE_CODES[event_type] = len(_TYPE_NAMES)
        _TYPE_NAMES.append(event_type)
    return code


class ItemTable:
    """Per (item row, event type) statistics of one profile, packed in one NumPy record array.

    28 bytes per entry (key, log2 weight, latest time, count) instead of a dict of tuple keys and
    objects (about 250 bytes each): the largest part of a profile's memory. Profiles hold tens of
    entries, so a linear scan finds one as fast as hashing would.
    """

    __slots__ = ("_rows", "_size")

    def __init__(self) -> None:
        self._rows = np.empty(0, dtype=_ITEM_DTYPE)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def _find(self, key: int) -> int:
        found = np.flatnonzero(self._rows["key"][: self._size] == key)
        return int(found[0]) if len(found) else -1

    def get(self, key: tuple[int, str]) -> ItemStat | None:
        at = self._find(key[0] << _CODE_BITS | _type_code(key[1]))
        if at < 0:
            return None
        entry = self._rows[at]
        return ItemStat(float(entry["log2_weight"]), float(entry["last_ts"]), int(entry["count"]))

    def add(self, key: tuple[int, str], stat: ItemStat) -> None:
        """Adds ``stat`` to the entry of ``key`` (``ItemStat.merged``), or makes one."""
        packed = key[0] << _CODE_BITS | _type_code(key[1])
        at = self._find(packed)
        if at >= 0:
            entry = self._rows[at]
            merged = ItemStat(float(entry["log2_weight"]), float(entry["last_ts"]), int(entry["count"])).merged(stat)
            self._rows[at] = (packed, merged.log2_weight, merged.last_ts, merged.count)
            return
        if self._size == len(self._rows):
            grown = np.empty(max(4, len(self._rows) * 3 // 2 + 1), dtype=_ITEM_DTYPE)
            grown[: self._size] = self._rows[: self._size]
            self._rows = grown
        self._rows[self._size] = (packed, stat.log2_weight, stat.last_ts, stat.count)
        self._size += 1

    def items(self) -> Iterator[tuple[tuple[int, str], ItemStat]]:
        """``((row, event type), ItemStat)`` for every entry, in insertion order."""
        for key, log2_weight, last_ts, count in self._rows[: self._size].tolist():
            yield (key >> _CODE_BITS, _TYPE_NAMES[key & ((1 << _CODE_BITS) - 1)]), ItemStat(log2_weight, last_ts, count)

    def nbytes(self) -> int:
        return int(self._rows.nbytes)


@dataclass(slots=True)
class ProfileState:
    """A user's or a session's profile in every vector space, plus per-item statistics."""

    dims: dict[str, int]
    config: DecayConfig
    spaces: dict[str, ProfileAccumulator] = field(init=False)
    counts: dict[str, int] = field(default_factory=dict)
    items: ItemTable = field(default_factory=ItemTable)
    first_ts: float = math.inf
    last_ts: float = -math.inf
    linked_sessions: int = 0
    clock: float = 0.0

    def __post_init__(self) -> None:
        self.spaces = {name: ProfileAccumulator(dim, self.config) for name, dim in self.dims.items()}

    @property
    def total_events(self) -> int:
        return sum(self.counts.values())

    def add(self, row: int | None, event_type: str, timestamp: float, vectors: dict[str, np.ndarray]) -> None:
        """Counts one event; ``row`` None (an item unknown to the index) only counts.

        A space without a vector for the item (no image) gets a zero vector: every space's
        activity clock then agrees with the item statistics'.
        """
        self.counts[event_type] = self.counts.get(event_type, 0) + 1
        self.first_ts = min(self.first_ts, timestamp)
        self.last_ts = max(self.last_ts, timestamp)
        if row is None:
            return
        for name, accumulator in self.spaces.items():
            vector = vectors.get(name)
            accumulator.add(vector if vector is not None else np.zeros(accumulator.dim), event_type, timestamp)
        self.clock += self.config.step(event_type)
        self.items.add((row, event_type), ItemStat(self._log2_weight(event_type, timestamp, self.clock), timestamp))

    def _log2_weight(self, event_type: str, timestamp: float, clock: float) -> float:
        half_life = self.config.half_life(event_type)
        activity = self.config.activity()
        return (
            math.log2(self.config.weight(event_type))
            + (0.0 if math.isinf(activity) else clock / activity)
            + (0.0 if math.isinf(half_life) else timestamp / half_life)
        )

    def merge(self, other: ProfileState) -> None:
        """Appends every event of ``other`` (a session's anonymous events joining its user).

        On the activity clock they count as after this profile's own (``ProfileAccumulator.merge``).
        """
        for name, accumulator in other.spaces.items():
            self.spaces[name].merge(accumulator)
        for event_type, count in other.counts.items():
            self.counts[event_type] = self.counts.get(event_type, 0) + count
        activity = self.config.activity()
        shift = 0.0 if math.isinf(activity) else self.clock / activity
        for key, stat in other.items.items():
            self.items.add(key, ItemStat(stat.log2_weight + shift, stat.last_ts, stat.count))
        self.clock += other.clock
        self.first_ts = min(self.first_ts, other.first_ts)
        self.last_ts = max(self.last_ts, other.last_ts)

    def item_weights(self, latest: float | None = None) -> dict[tuple[int, str], float]:
        """The weight of every (row, event type) in the profile, as its vector weighs them.

        ``latest``: the time the gap clock counts back from (default: this profile's latest event).
        """
        latest = self.last_ts if latest is None else latest
        activity = self.config.activity()
        clock_age = 0.0 if math.isinf(activity) else self.clock / activity
        weights: dict[tuple[int, str], float] = {}
        for (row, event_type), stat in self.items.items():
            half_life = self.config.half_life(event_type)
            age = clock_age + (0.0 if math.isinf(half_life) else latest / half_life)
            weights[(row, event_type)] = exp2(stat.log2_weight - age)
        return weights


@dataclass(slots=True)
class SessionState:
    """A session: its anonymous and identified events, and the users it is linked to."""

    anonymous: ProfileState
    identified: ProfileState
    users: set[str] = field(default_factory=set)

    def parts(self) -> list[ProfileState]:
        return [part for part in (self.anonymous, self.identified) if part.total_events]

    @property
    def last_ts(self) -> float:
        """The session's latest event time (``-inf`` before any)."""
        return max(self.anonymous.last_ts, self.identified.last_ts)


def merged_item_weights(states: list[ProfileState]) -> dict[tuple[int, str], float]:
    """Item weights of several profiles added together (gap clock from the latest of all)."""
    latest = max((state.last_ts for state in states), default=-math.inf)
    weights: dict[tuple[int, str], float] = {}
    for state in states:
        for key, weight in state.item_weights(latest).items():
            weights[key] = weights.get(key, 0.0) + weight
    return weights
