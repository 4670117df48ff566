"""Small in-memory item tables and candidate lists for the reranker tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aisle.index.items import ItemTable
from aisle.service.ranking.types import Candidates


@dataclass(frozen=True)
class Item:
    """One product of a test catalogue (only the fields ranking reads)."""

    id: str
    brand: str = ""
    category: str = ""
    price: float | None = None
    in_stock: bool = True
    margin: float | None = None
    boost: float | None = None


def item_table(items: Sequence[Item]) -> ItemTable:
    """An ``ItemTable`` as ``ItemTable.read`` would build it from an items file."""
    columns = {
        "id": [item.id for item in items],
        "title": [f"title {item.id}" for item in items],
        "description": ["" for _ in items],
        "brand": [item.brand for item in items],
        "category": [item.category for item in items],
        "price": [item.price for item in items],
        "in_stock": [item.in_stock for item in items],
        "image": ["" for _ in items],
        "margin": [item.margin for item in items],
        "boost": [item.boost for item in items],
        "attributes": [json.dumps({}) for _ in items],
        "content_hash": [f"hash-{item.id}" for item in items],
    }
    return ItemTable(columns)


def unit_vectors(count: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def candidates(
    rows: Sequence[int],
    relevance: Sequence[float],
    vectors: np.ndarray | None = None,
    parts: dict[str, Sequence[float]] | None = None,
) -> Candidates:
    """Candidates whose relevance is all ``semantic`` unless ``parts`` are given."""
    rows_array = np.asarray(rows, dtype=np.int64)
    relevance_array = np.asarray(relevance, dtype=np.float64)
    parts_arrays = (
        {name: np.asarray(values, dtype=np.float64) for name, values in parts.items()}
        if parts is not None
        else {"semantic": relevance_array.copy()}
    )
    return Candidates(
        rows=rows_array,
        relevance=relevance_array,
        parts=parts_arrays,
        vectors=None if vectors is None else vectors[rows_array],
    )
