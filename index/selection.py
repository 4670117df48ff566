"""A set of allowed rows in the forms each search path needs, each computed once and kept.

A filter becomes a boolean mask (``aisle.index.filters``); an exact scan wants the allowed row numbers,
FAISS wants a bit-packed bitmap wrapped in an ``IDSelectorBitmap``. On a million rows each form
costs about a millisecond to derive, so a ``RowSelection`` derives them lazily and keeps them,
and a ``SelectionCache`` (one per index version, on its item table) keeps the selections of the
filters seen last: a repeated filter then costs nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from threading import Lock
from typing import Any

import numpy as np


class RowSelection:
    """An immutable set of allowed rows of one index version."""

    def __init__(self, mask: np.ndarray) -> None:
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim != 1:
            raise ValueError(f"a row mask must be one-dimensional, not of shape {mask.shape}")
        if mask.flags.writeable:
            mask = mask.copy()  # the selection must not change under a cached selector
            mask.flags.writeable = False
        self.mask = mask
        self._count: int | None = None
        self._rows: np.ndarray | None = None
        self._bitmap: np.ndarray | None = None
        self._selector: Any = None

    def __len__(self) -> int:
        return len(self.mask)

    @property
    def count(self) -> int:
        """How many rows are allowed."""
        if self._count is None:
            self._count = int(np.count_nonzero(self.mask))
        return self._count

    @property
    def rows(self) -> np.ndarray:
        """The allowed row numbers, ascending (int64, read-only)."""
        if self._rows is None:
            rows = np.flatnonzero(self.mask).astype(np.int64)
            rows.flags.writeable = False
            self._rows = rows
        return self._rows

    def faiss_selector(self) -> Any:
        """A FAISS ``IDSelectorBitmap`` over the allowed rows; valid while this object lives."""
        if self._selector is None:
            import faiss

            # IDSelectorBitmap reads bit (i & 7) of byte i >> 3: little bit order.
            self._bitmap = np.packbits(self.mask.view(np.uint8), bitorder="little")
            self._selector = faiss.IDSelectorBitmap(len(self.mask), faiss.swig_ptr(self._bitmap))
        return self._selector


class SelectionCache:
    """A small thread-safe LRU cache of ``RowSelection`` by filter key, one per index version."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[Hashable, RowSelection] = OrderedDict()
        self._lock = Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get_or_compute(self, key: Hashable, compute: Callable[[], np.ndarray]) -> RowSelection:
        """The cached selection for ``key``, or a new one from the mask ``compute()`` returns."""
        with self._lock:
            selection = self._entries.get(key)
            if selection is not None:
                self._entries.move_to_end(key)
                return selection
        # Computed outside the lock: two threads may both compute a new key, which is harmless.
        selection = RowSelection(compute())
        with self._lock:
            self._entries[key] = selection
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return selection
