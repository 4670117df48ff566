"""Bookkeeping of the caps rule ("at most n per brand or category within the first w positions").

The tracker counts, per cap, how many placed items of each group sit inside the cap's window,
and keeps a boolean array of the candidates whose group is full, so that asking "which
candidates may go at position p" is one OR of a few arrays.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import numpy as np

from aisle.index.items import ItemTable
from aisle.service.ranking.rules import Cap


@dataclass
class _CapState:
    cap: Cap
    codes: np.ndarray
    empty_code: int
    window: int
    counts: dict[int, int] = field(default_factory=dict)
    blocked: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    any_full: bool = False

    def counts_at(self, position: int) -> bool:
        return position < self.window

    def group(self, index: int) -> int | None:
        code = int(self.codes[index])
        return None if code == self.empty_code else code

    def full(self, index: int) -> bool:
        group = self.group(index)
        return group is not None and self.counts.get(group, 0) >= self.cap.max

    def count(self, index: int) -> bool:
        """Counts candidate ``aisle.index``; True when that fills its group (``blocked`` changed)."""
        group = self.group(index)
        if group is None:
            return False
        self.counts[group] = self.counts.get(group, 0) + 1
        if self.counts[group] != self.cap.max:
            return False
        self.blocked |= self.codes == group
        self.any_full = True
        return True


_EMPTY_CODES: weakref.WeakKeyDictionary[ItemTable, dict[str, int]] = weakref.WeakKeyDictionary()


def empty_code(items: ItemTable, field: str) -> int:
    """The code of the blank brand (category) in ``items``, or -1 (cached per item table)."""
    codes = _EMPTY_CODES.get(items)
    if codes is None:
        codes = {
            name: next((code for code, value in enumerate(names) if not value.strip()), -1)
            for name, names in (("brand", items.brand_names), ("category", items.category_names))
        }
        _EMPTY_CODES[items] = codes
    return codes[field]


def _uncount(state: _CapState, index: int) -> None:
    group = state.group(index)
    if group is None or state.counts.get(group, 0) == 0:
        return
    state.counts[group] -= 1
    if state.counts[group] < state.cap.max:
        state.blocked[state.codes == group] = False


class CapTracker:
    """The caps of one request over its candidates (candidate index = position in ``rows``)."""

    def __init__(self, caps: tuple[Cap, ...], items: ItemTable, rows: np.ndarray, k: int) -> None:
        self._states: list[_CapState] = []
        # ``blocked`` is asked once per position but changes only when a group fills up.
        self._changes = 0
        self._cache_key: tuple | None = None
        self._cached: np.ndarray | None = None
        for cap in caps:
            codes = (items.brand_codes if cap.field == "brand" else items.category_codes)[rows]
            # Items without a brand (category) share the code of "", which is not a group.
            empty = empty_code(items, cap.field)
            window = min(cap.within or k, k)
            self._states.append(_CapState(cap, codes, empty, window, blocked=np.zeros(len(rows), dtype=bool)))

    def __bool__(self) -> bool:
        return bool(self._states)

    def blocked(self, position: int) -> np.ndarray | None:
        """Candidates that would break a cap at ``position``, or None when none would.

        The array is shared: read it, do not modify it.
        """
        key = (tuple(state.counts_at(position) for state in self._states), self._changes)
        if key != self._cache_key:
            active = [s.blocked for s in self._states if s.counts_at(position) and s.any_full]
            if not active:
                combined = None
            elif len(active) == 1:
                combined = active[0]
            else:
                combined = np.logical_or.reduce(active)
            self._cache_key, self._cached = key, combined
        return self._cached

    def allows(self, index: int, position: int) -> bool:
        """Whether candidate ``aisle.index`` may go at ``position``."""
        return not any(state.counts_at(position) and state.full(index) for state in self._states)

    def add(self, index: int, position: int) -> None:
        """Records candidate ``aisle.index`` placed at ``position``."""
        for state in self._states:
            if state.counts_at(position) and state.count(index):
                self._changes += 1

    def move(self, index: int, planned: int, position: int) -> bool:
        """Moves an item counted at ``planned`` to the earlier ``position``, if no cap breaks.

        Only windows the item enters by the move are checked and counted: it was counted in the
        others already.
        """
        entering = [s for s in self._states if s.counts_at(position) and not s.counts_at(planned)]
        if any(state.full(index) for state in entering):
            return False
        for state in entering:
            if state.count(index):
                self._changes += 1
        return True

    def remove(self, index: int, position: int) -> None:
        """Forgets candidate ``aisle.index`` recorded at ``position`` (a pin that could not be placed)."""
        self._changes += 1
        for state in self._states:
            if state.counts_at(position):
                _uncount(state, index)

    def withheld(self, position: int, best: int, choice: int) -> list[str]:
        """The caps that kept candidate ``best`` from ``position`` (so that ``choice`` got it)."""
        if best == choice:
            return []
        names = [
            f"cap:{state.cap.field}" for state in self._states if state.counts_at(position) and state.blocked[best]
        ]
        return list(dict.fromkeys(names))
