"""Turning ordered histories into timed events, and events into the served profile's weights.

Sequence data such as UniSRec's Amazon splits carries the order of interactions but no times.
Evaluation and training both place them on one synthetic timeline: the ``j``-th of ``n`` history
items (oldest first) happened at ``j · step_s`` seconds, and the profile is asked for at
``n · step_s``, the moment of the next interaction. The per-event weights then come from
``aisle.index.profile.event_log2_weights``, the very function the service uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from aisle.index.profile import DAY_S, DecayConfig, ProfileEvent, event_log2_weights


@dataclass(frozen=True)
class Timeline:
    """How an untimed history becomes events.

    Attributes:
        step_s: seconds between two consecutive interactions.
        event_type: the type every interaction is given (Amazon reviews follow purchases).
        max_events: only the most recent ``max_events`` interactions are kept (older ones would
            weigh next to nothing after decay and only cost time).
    """

    step_s: float = DAY_S
    event_type: str = "purchase"
    max_events: int = 50

    def events(
        self,
        history: Sequence[int],
        timestamps: Sequence[float] | None = None,
        types: Sequence[str] | None = None,
        now: float | None = None,
    ) -> tuple[list[ProfileEvent], float]:
        """``(events, now)`` for a history of item rows, oldest first.

        Real ``timestamps`` (and ``types``, and the moment ``now`` of the next interaction) are
        used when the data has them; otherwise the synthetic timeline places the events.
        """
        keep = min(len(history), self.max_events)
        start = len(history) - keep
        if timestamps is None:
            times = [(start + position) * self.step_s for position in range(keep)]
            now = len(history) * self.step_s
        else:
            times = [float(t) for t in list(timestamps)[start:]]
            now = float(now) if now is not None else (times[-1] if times else 0.0)
        kinds = list(types)[start:] if types is not None else [self.event_type] * keep
        rows = list(history)[start:]
        return [ProfileEvent(row, kind, t) for row, kind, t in zip(rows, kinds, times)], now


def log2_weights(events: Sequence[ProfileEvent], config: DecayConfig) -> np.ndarray:
    """``log2`` of every event's weight in the profile, exactly as the service weighs it."""
    return event_log2_weights(events, config)


@dataclass
class PaddedHistories:
    """Histories as fixed-width arrays for batched profile computation.

    Attributes:
        rows: ``(cases, width)`` item rows, left-padded with 0 where ``valid`` is False.
        log2_weight: ``(cases, width)`` log2 decayed weights (``-inf`` at padding).
        valid: ``(cases, width)`` True where a real event sits.
    """

    rows: np.ndarray
    log2_weight: np.ndarray
    valid: np.ndarray

    def __len__(self) -> int:
        return len(self.rows)


class TimedHistory(Protocol):
    """A history as training cases carry it (``aisle.training.train_data.NextItemCase``)."""

    @property
    def history(self) -> tuple[int, ...]: ...
    @property
    def timestamps(self) -> tuple[float, ...] | None: ...
    @property
    def types(self) -> tuple[str, ...] | None: ...
    @property
    def now(self) -> float | None: ...


def pad_histories(cases: Sequence[TimedHistory], timeline: Timeline, config: DecayConfig) -> PaddedHistories:
    """Events and weights of many histories, right-aligned so the newest event is last."""
    width = max(1, min(timeline.max_events, max((len(c.history) for c in cases), default=1)))
    rows = np.zeros((len(cases), width), dtype=np.int64)
    weights = np.full((len(cases), width), -np.inf, dtype=np.float64)
    valid = np.zeros((len(cases), width), dtype=bool)
    for case, item in enumerate(cases):
        events, _ = timeline.events(item.history, item.timestamps, item.types, item.now)
        if not events:
            continue
        start = width - len(events)
        rows[case, start:] = [e.row for e in events]
        weights[case, start:] = log2_weights(events, config)
        valid[case, start:] = True
    return PaddedHistories(rows, weights, valid)
