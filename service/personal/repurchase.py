"""Consumables: items customers buy again, and the shop's typical interval between two purchases.

Per item: how many actors bought it, how many purchases were repeats (the same actor buying it
again) and the geometric mean of the intervals of those repeats. An item is a consumable when
at least ``min_repeats`` repeats were seen and at least ``min_rate`` of its buyers came back;
its typical interval is the geometric mean (robust to the odd purchase years later). A customer
who bought a consumable sees it again in recommendations once that interval has passed; other
purchases stay out for ``purchase_exclusion_days``.
"""

from __future__ import annotations

import math
import threading

import numpy as np


class Repurchase:
    """Repeat-purchase statistics over the rows of one index version, maintained in O(1) per purchase."""

    def __init__(self, size: int, *, min_repeats: int = 3, min_rate: float = 0.1) -> None:
        self.min_repeats = min_repeats
        self.min_rate = min_rate
        self._buyers = np.zeros(size, dtype=np.int32)
        self._repeats = np.zeros(size, dtype=np.int32)
        self._log_interval_sum = np.zeros(size, dtype=np.float64)
        self._lock = threading.Lock()

    def grow(self, size: int) -> None:
        """Room for rows added since (new products of the live catalogue), with no history."""
        extra = size - len(self._buyers)
        if extra > 0:
            self._buyers = np.concatenate([self._buyers, np.zeros(extra, dtype=np.int32)])
            self._repeats = np.concatenate([self._repeats, np.zeros(extra, dtype=np.int32)])
            self._log_interval_sum = np.concatenate([self._log_interval_sum, np.zeros(extra, dtype=np.float64)])

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(buyers, repeats, log interval sums)`` per row (for snapshots)."""
        with self._lock:
            return self._buyers.copy(), self._repeats.copy(), self._log_interval_sum.copy()

    def restore(self, buyers: np.ndarray, repeats: np.ndarray, log_interval_sum: np.ndarray) -> None:
        """Replaces the state with ``arrays``' output (a snapshot read back)."""
        with self._lock:
            self._buyers = np.asarray(buyers, dtype=np.int32).copy()
            self._repeats = np.asarray(repeats, dtype=np.int32).copy()
            self._log_interval_sum = np.asarray(log_interval_sum, dtype=np.float64).copy()

    def first_purchase(self, row: int) -> None:
        """An actor bought ``row`` for the first time."""
        with self._lock:
            self._buyers[row] += 1

    def repeat_purchase(self, row: int, interval_s: float) -> None:
        """An actor bought ``row`` again ``interval_s`` after their previous purchase of it."""
        if not interval_s > 0:
            return  # the same basket sent twice, or out of order: no interval to learn
        with self._lock:
            self._repeats[row] += 1
            self._log_interval_sum[row] += math.log(interval_s)

    def interval_s(self, row: int) -> float | None:
        """The typical interval between two purchases of ``row``, or None if it is no consumable."""
        with self._lock:
            repeats, buyers = int(self._repeats[row]), int(self._buyers[row])
            if repeats < self.min_repeats or repeats < self.min_rate * max(buyers, 1):
                return None
            return math.exp(self._log_interval_sum[row] / repeats)
