"""A bounded LRU cache of query encodings, one per engine (so per index version).

Encoding the query text is the largest part of a search; the search bar and the suggest box
repeat their popular queries, so the encoding of a text seen recently is kept. The cache belongs
to the ``Engine``, which is replaced whole when a new index version is swapped in: a new version
starts with an empty cache, and nothing cached for one version can answer for another. Keys are
the exact text encoded (after spelling correction, which depends on the version's vocabulary).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

Value = TypeVar("Value")


class LruCache(Generic[Value]):
    """At most ``capacity`` values, the least recently used dropped first; counts its hits."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"cache capacity must be 0 (off) or more, not {capacity}")
        self.capacity = capacity
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, Value] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_compute(self, key: str, compute: Callable[[], Value]) -> Value:
        """The cached value of ``key``, or ``compute()`` stored under it.

        ``compute`` runs outside the lock: two threads missing the same key both compute it
        (the same value), which is cheaper than making every reader wait for one encoding.
        """
        if self.capacity == 0:
            self.misses += 1
            return compute()
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return value
            self.misses += 1
        value = compute()
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> dict[str, float | int]:
        """Entries, hits, misses and the hit rate so far."""
        lookups = self.hits + self.misses
        return {
            "entries": len(self._entries),
            "capacity": self.capacity,
            "hits": self.hits,
            "misses": self.misses,
            "hit_rate": round(self.hits / lookups, 4) if lookups else 0.0,
        }
