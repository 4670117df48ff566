"""One index version plus the query encoder: everything a request reads, swapped as one object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from embed.base import Encoder
from index.filters import Filters, filter_mask
from index.loaded import LoadedIndex


@dataclass(frozen=True)
class Hit:
    """A ranked result: the item's row, its final score and, when asked, the parts of it."""

    row: int
    score: float
    explain: dict[str, Any] | None = None


class Engine:
    """Answers search and similar-item queries on one immutable index version."""

    def __init__(self, index: LoadedIndex, encoder: Encoder, candidates: int = 200) -> None:
        self.index = index
        self.encoder = encoder
        self.candidates = candidates

    @property
    def version(self) -> str:
        return self.index.version

    def item_row(self, item_id: str) -> int | None:
        return self.index.items.row_of.get(item_id)

    def result(self, hit: Hit) -> dict[str, Any]:
        """A hit as the contract's result object."""
        result = {"id": self.index.items.ids[hit.row], "score": round(float(hit.score), 6)}
        result.update(self.index.items.to_result(hit.row))
        result["id"] = self.index.items.ids[hit.row]
        if hit.explain is not None:
            result["explain"] = hit.explain
        return result

    def search(
        self,
        query: str,
        k: int,
        *,
        filters: Filters | None = None,
        exclude_ids: list[str] | tuple[str, ...] = (),
        explain: bool = False,
    ) -> list[Hit]:
        vector = self.encoder.encode_queries([query])[0]
        return self._nearest(vector, k, filters, exclude_ids, explain)

    def similar(
        self,
        item_id: str,
        k: int,
        *,
        filters: Filters | None = None,
        exclude_ids: list[str] | tuple[str, ...] = (),
        explain: bool = False,
    ) -> list[Hit]:
        row = self.item_row(item_id)
        if row is None:
            raise KeyError(item_id)
        vector = np.asarray(self.index.text.vectors[row])
        return self._nearest(vector, k, filters, (*exclude_ids, item_id), explain)

    def _nearest(
        self,
        vector: np.ndarray,
        k: int,
        filters: Filters | None,
        exclude_ids: list[str] | tuple[str, ...],
        explain: bool,
    ) -> list[Hit]:
        items = self.index.items
        mask = filter_mask(items, filters)
        excluded = {items.row_of[i] for i in exclude_ids if i in items.row_of}
        rows, scores = self.index.text.ann.search(vector, k + len(excluded), mask)
        hits = [
            Hit(int(row), float(score), {"semantic": round(float(score), 6)} if explain else None)
            for row, score in zip(rows, scores) if int(row) not in excluded
        ]
        return hits[:k]
