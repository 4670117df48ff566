"""Collaborative scores for recommendations, from the vectors a trained model directory carries.

When the served model directory holds collaborative vectors (``aisle train`` with
histories; ``aisle.embed.collaborative``), a customer's latest items make a query vector and
every item scores ``query · item + bias``: what customers with that history bought next. The
recommendation blend adds ``collaborative_weight · exp((score − best score) / T)`` (1 for the best
item; with ``T = collaborative_temperature`` = 1 the model's probability relative to it), and the
best-scoring items join the candidates.

The vectors are keyed by product id; for each index version they are laid out by its rows once
(``rows_for``). A product the training never saw (added since) gets its text vector times the
model's projection, so new products are scored too.

"Latest items" are the profile's items strongest first: the profile's weights already decay with
the customer's own activity and weigh purchases over views, and for a history of purchases that
order is the order they were bought in (ties go to the later purchase).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aisle.embed.bundled import resolve_model_dir
from aisle.embed.collaborative import CollaborativeVectors, has_collaborative
from aisle.index.loaded import LoadedIndex

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Layout:
    """The vectors laid out by one index version's rows."""

    version: str
    rows: int
    items: np.ndarray
    bias: np.ndarray


class CollaborativeScorer:
    """Scores a customer's next items with a trained model's collaborative vectors."""

    def __init__(self, vectors: CollaborativeVectors) -> None:
        self.vectors = vectors
        self._row_of = {item: row for row, item in enumerate(vectors.item_ids)}
        self._layout: _Layout | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_model(cls, model: str) -> CollaborativeScorer | None:
        """The scorer of the model directory ``model`` (None when it has no collaborative vectors).

        Raises:
            CollaborativeError: the files are there but damaged or inconsistent.
        """
        try:
            directory = resolve_model_dir(model)
        except FileNotFoundError:
            return None
        if not has_collaborative(Path(directory)):
            return None
        vectors = CollaborativeVectors.read(Path(directory))
        log.info("collaborative vectors of %d items (dim %d) from %s", len(vectors.item_ids), vectors.dim, directory)
        return cls(vectors)

    def rows_for(self, index: LoadedIndex) -> _Layout:
        """Item vectors and offsets by ``index``'s rows (cached for the latest version seen)."""
        layout = self._layout
        if layout is not None and layout.version == index.version and layout.rows == len(index):
            return layout
        with self._lock:
            vectors = self.vectors
            count = len(index)
            items = np.empty((count, vectors.dim), dtype=np.float32)
            bias = np.full(count, vectors.cold_bias, dtype=np.float32)
            trained = np.array([self._row_of.get(item, -1) for item in index.items.ids[:count]], dtype=np.int64)
            known = trained >= 0
            items[known] = vectors.items[trained[known]]
            bias[known] = vectors.bias[trained[known]]
            cold = np.flatnonzero(~known)
            if len(cold):
                text = np.asarray(index.text.vectors[cold], dtype=np.float32)
                if text.shape[1] == vectors.text_dim:
                    items[cold] = text @ vectors.projection
                else:  # another text model: no way to place new products, so they score nothing
                    items[cold] = 0.0
            layout = _Layout(index.version, count, items, bias)
            self._layout = layout
            return layout

    def scores(
        self,
        index: LoadedIndex,
        weights: dict[int, float],
        last_purchase: dict[int, float],
        temperature: float = 1.0,
    ) -> np.ndarray:
        """Relative next-item scores ``exp((score − best) / temperature)`` of every row of ``index``
        (empty without history).

        Args:
            index: the version whose rows ``weights`` name.
            weights: the profile's weight per row.
            last_purchase: row → time of its latest purchase (breaks ties between equal weights).
            temperature: above 1 flattens the scores, so that items below the first few still
                count beside the other sources.
        """
        if not weights:
            return np.empty(0)
        layout = self.rows_for(index)
        ordered = sorted(weights, key=lambda row: (-weights[row], -last_purchase.get(row, -np.inf), row))
        latest = np.array([row for row in ordered if row < layout.rows][: len(self.vectors.positions)], np.int64)
        if not len(latest):
            return np.empty(0)
        query = self.vectors.query_vector(layout.items[latest])
        raw = (layout.items @ query + layout.bias).astype(np.float64)
        return np.exp((raw - raw.max()) / temperature)
