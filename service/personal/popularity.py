"""Popular items: a recency-decayed, type-weighted count per item, maintained in O(1) per event.

``count(i) = Σ w(type) · 2^(−(now − t) / half_life)`` over the events on item ``i``. The counts
are kept relative to a reference time (rebased when they would grow large), exactly like the
profile sums, so out-of-order events are handled and nothing overflows.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from aisle.index.profile import REBASE_EXPONENT, DecayConfig, exp2


class Popularity:
    """Decayed counts over the rows of one index version, and the current top items."""

    def __init__(self, size: int, config: DecayConfig, half_life_s: float) -> None:
        self.config = config
        self.half_life = half_life_s if config.decay else math.inf
        self._counts = np.zeros(size, dtype=np.float64)
        self._ref: float | None = None
        self._peak = 0.0  # counts only grow (or all shrink together), so the max is kept exactly
        self._top: np.ndarray | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._counts)

    def grow(self, size: int) -> None:
        """Makes room for rows up to ``size`` (products added through the live catalogue)."""
        with self._lock:
            if size > len(self._counts):
                self._counts = np.concatenate([self._counts, np.zeros(size - len(self._counts))])

    def add(self, row: int, event_type: str, timestamp: float) -> None:
        with self._lock:
            if self._ref is None:
                self._ref = timestamp
            exponent = 0.0 if math.isinf(self.half_life) else (timestamp - self._ref) / self.half_life
            if exponent > REBASE_EXPONENT:
                self._counts *= 2.0**-exponent
                self._peak *= 2.0**-exponent
                self._ref = timestamp
                exponent = 0.0
            self._counts[row] += self.config.weight(event_type) * 2.0**exponent
            self._peak = max(self._peak, float(self._counts[row]))
            self._top = None

    def arrays(self) -> tuple[np.ndarray, float | None, float]:
        """``(counts, reference time, peak)``: the whole state (for snapshots)."""
        with self._lock:
            return self._counts.copy(), self._ref, self._peak

    def restore(self, counts: np.ndarray, ref: float | None, peak: float) -> None:
        """Replaces the state with ``arrays``' output (a snapshot read back)."""
        with self._lock:
            self._counts = np.asarray(counts, dtype=np.float64).copy()
            self._ref, self._peak, self._top = ref, peak, None

    def scores_of(self, rows: np.ndarray) -> np.ndarray:
        """Counts of ``rows`` scaled so that the most popular item has 1.0 (zeros without events)."""
        with self._lock:
            if self._peak <= 0:
                return np.zeros(len(rows))
            return self._counts[rows] / self._peak

    def decayed_counts(self, now: float) -> np.ndarray:
        """The absolute decayed counts at ``now``."""
        with self._lock:
            if self._ref is None or math.isinf(self.half_life):
                return self._counts.copy()
            return self._counts * exp2((self._ref - now) / self.half_life)

    def top(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, scores)`` of the ``n`` most popular items with any events, best first.

        The ranking is cached until the next event: a burst of reads costs one partial sort.
        """
        with self._lock:
            if self._top is None or len(self._top) < min(n, int(np.count_nonzero(self._counts))):
                nonzero = np.flatnonzero(self._counts)
                wanted = min(max(n, 256), len(nonzero))
                values = self._counts[nonzero]
                if wanted < len(nonzero):
                    part = np.argpartition(-values, wanted - 1)[:wanted]
                else:
                    part = np.arange(len(nonzero))
                order = part[np.lexsort((nonzero[part], -values[part]))]
                self._top = nonzero[order]
            rows = self._top[:n]
            return rows.copy(), (self._counts[rows] / (self._peak or 1.0)).astype(np.float32)
