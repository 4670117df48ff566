"""Frequently bought together and bought after: pairs from the same actor's events.

An actor is a user (events with a user id) or an anonymous session. Each actor keeps its last
``recent`` events, and a new event pairs with each of them:

* a **basket** pair when the two are within ``window_s`` of each other: both directions at
  full weight;
* otherwise a **sequence** pair, whatever the gap (customers buy weeks or months apart): the
  later item is what was bought *after* the earlier one, at full weight, and the reverse
  direction at ``before_weight``; both halve every ``after_half_life`` events in between, so
  consecutive events pair most.

A pair adds ``min(w_a, w_b)`` (the weaker event type's weight), so a view next to a purchase
counts like two views and a purchase next to a purchase counts most. Per item only the
``max_neighbours`` strongest partners are kept, which bounds memory on large catalogues.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

from aisle.index.profile import DecayConfig


class CoOccurrence:
    """Sparse, directed pair weights between rows of one index version (``pairs[a][b]``: b follows a)."""

    def __init__(
        self,
        config: DecayConfig,
        *,
        window_s: float,
        after_half_life: float = 2.0,
        before_weight: float = 0.5,
        recent: int = 8,
        max_neighbours: int = 200,
    ) -> None:
        self.config = config
        self.window_s = window_s
        self.after_half_life = after_half_life
        self.before_weight = before_weight
        self.recent = recent
        self.max_neighbours = max_neighbours
        self._pairs: dict[int, dict[int, float]] = {}
        self._recent: dict[str, deque[tuple[int, float, float]]] = {}
        self._lock = threading.Lock()

    def add(self, actor: str, row: int, event_type: str, timestamp: float) -> None:
        """Records one event of ``actor`` (a hashed user or session key) on ``row``."""
        weight = self.config.weight(event_type)
        with self._lock:
            history = self._recent.get(actor)
            if history is None:
                history = self._recent[actor] = deque(maxlen=self.recent)
            for distance, (other, other_weight, other_time) in enumerate(reversed(history), start=1):
                if other == row:
                    continue
                pair = min(weight, other_weight)
                if abs(other_time - timestamp) <= self.window_s:
                    self._bump(row, other, pair)
                    self._bump(other, row, pair)
                    continue
                pair *= 2.0 ** (-(distance - 1) / self.after_half_life)
                first, then = (other, row) if other_time <= timestamp else (row, other)
                self._bump(first, then, pair)
                if self.before_weight > 0:
                    self._bump(then, first, pair * self.before_weight)
            history.append((row, weight, timestamp))

    def forget_actor(self, actor: str) -> None:
        """Drops an actor's recent events (an expired session, an erased user); pairs stay anonymous."""
        with self._lock:
            self._recent.pop(actor, None)

    def remember_actor(self, actor: str, history: list[tuple[int, float, float]]) -> None:
        """Restores an actor's recent ``(row, weight, timestamp)`` events, oldest first (read back
        from the event log after the actor left memory), without counting any pair again."""
        with self._lock:
            self._recent[actor] = deque(history[-self.recent :], maxlen=self.recent)

    def recent_copy(self, actors: list[str]) -> list[list[tuple[int, float, float]]]:
        """The recent ``(row, weight, timestamp)`` events of each of ``actors``, oldest first."""
        with self._lock:
            return [list(self._recent.get(actor, ())) for actor in actors]

    def pairs_copy(self) -> dict[int, dict[int, float]]:
        """A copy of every pair weight (cheap: the caller packs it without holding any lock)."""
        with self._lock:
            return {row: dict(neighbours) for row, neighbours in self._pairs.items()}

    def pair_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every pair as ``(rows, others, weights)`` arrays (for snapshots)."""
        return pair_arrays(self.pairs_copy())

    def load_pairs(self, rows: np.ndarray, others: np.ndarray, weights: np.ndarray) -> None:
        """Replaces the pairs with ``pair_arrays``' output (a snapshot read back)."""
        pairs: dict[int, dict[int, float]] = {}
        for row, other, weight in zip(rows.tolist(), others.tolist(), weights.tolist(), strict=True):
            pairs.setdefault(row, {})[other] = weight
        with self._lock:
            self._pairs = pairs

    def _bump(self, row: int, other: int, amount: float) -> None:
        neighbours = self._pairs.setdefault(row, {})
        neighbours[other] = neighbours.get(other, 0.0) + amount
        if len(neighbours) > 2 * self.max_neighbours:
            keep = sorted(neighbours.items(), key=lambda kv: (-kv[1], kv[0]))[: self.max_neighbours]
            self._pairs[row] = dict(keep)

    def neighbours(self, row: int) -> dict[int, float]:
        with self._lock:
            return dict(self._pairs.get(row, {}))

    def scores(
        self, seeds: dict[int, float], limit: int, *, second_order: float = 0.0, hops: int = 20
    ) -> tuple[np.ndarray, np.ndarray]:
        """Items bought together with ``seeds`` (row → the seed's decayed weight), best first.

        A candidate's score is ``Σ seed_weight · pair_weight`` over the seeds, scaled so that the
        best is 1.0. Raw pair weights, not cosine-normalised ones: on the Amazon Scientific
        train split, normalising by item degrees lost HR@10 (popular partners are genuinely what
        people buy next).

        With ``second_order > 0`` the ``hops`` best of those partners nominate their own
        partners (A→B and B→C make C a candidate after A): each partner's share is its score
        times the pair weight over its strongest pair, the total scaled to best 1 and added with
        weight ``second_order`` before the final scaling. Sparse logs (few customers per item)
        pair the next purchase with the seeds rarely; the partners' partners reach further.
        """
        totals: dict[int, float] = {}
        with self._lock:
            for seed, seed_weight in seeds.items():
                for other, pair in self._pairs.get(seed, {}).items():
                    totals[other] = totals.get(other, 0.0) + seed_weight * pair
            if totals and second_order > 0:
                totals = self._with_second_order(totals, second_order, hops)
        if not totals:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        rows = np.fromiter(totals.keys(), dtype=np.int64, count=len(totals))
        values = np.fromiter(totals.values(), dtype=np.float64, count=len(totals))
        order = np.lexsort((rows, -values))[:limit]
        return rows[order], (values[order] / values[order[0]]).astype(np.float32)

    def _with_second_order(self, first: dict[int, float], weight: float, hops: int) -> dict[int, float]:
        """``first`` scaled to best 1 plus ``weight`` times the partners' partners (lock held)."""
        best = max(first.values())
        second: dict[int, float] = {}
        for partner, score in sorted(first.items(), key=lambda kv: (-kv[1], kv[0]))[:hops]:
            neighbours = self._pairs.get(partner)
            if not neighbours:
                continue
            strongest = max(neighbours.values())
            for other, pair in neighbours.items():
                second[other] = second.get(other, 0.0) + (score / best) * (pair / strongest)
        totals = {row: value / best for row, value in first.items()}
        if second:
            top = max(second.values())
            for row, value in second.items():
                totals[row] = totals.get(row, 0.0) + weight * value / top
        return totals


def pair_arrays(pairs: dict[int, dict[int, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``pairs`` (``CoOccurrence.pairs_copy``) as ``(rows, others, weights)`` arrays."""
    sizes = [len(neighbours) for neighbours in pairs.values()]
    rows = np.repeat(np.fromiter(pairs.keys(), np.int64, len(pairs)), sizes)
    others = np.fromiter((o for n in pairs.values() for o in n), np.int64, sum(sizes))
    weights = np.fromiter((w for n in pairs.values() for w in n.values()), np.float64, sum(sizes))
    return rows, others, weights
