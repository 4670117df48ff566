"""Approximate nearest-neighbour search over unit vectors (inner product = cosine) with FAISS.

Index types, chosen by catalogue size unless overridden:

* ``flat``: exact search. Default up to ``FLAT_MAX_ITEMS`` products, where it is already fast.
* ``hnsw``: HNSW graph over float32 vectors. Default above that.
* ``hnsw-sq8``: HNSW over 8-bit scalar-quantised vectors: about a quarter of the memory of
  ``hnsw`` for a small loss of recall; choose it when memory matters (millions of products).

Every search may carry a filter (a boolean mask over rows). Filtered search runs inside FAISS
with an ``IDSelectorBitmap``; when the filter is very selective, or the graph walk cannot find k
allowed rows, it falls back to an exact scan of the allowed rows, so that results always satisfy
the filter and k results come back whenever at least k rows match.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np

IndexType = Literal["flat", "hnsw", "hnsw-sq8"]
INDEX_TYPES: tuple[str, ...] = ("flat", "hnsw", "hnsw-sq8")
FLAT_MAX_ITEMS = 50_000
#: Below this many allowed rows an exact scan of them beats a filtered graph walk.
EXACT_SCAN_MAX_ROWS = 4_096


@dataclass(frozen=True)
class AnnParams:
    """Index type and its parameters, recorded in the manifest."""

    type: IndexType = "flat"
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 128

    def to_dict(self) -> dict:
        return asdict(self)


def choose_index_type(count: int) -> IndexType:
    """The default index type for a catalogue of ``count`` products."""
    return "flat" if count <= FLAT_MAX_ITEMS else "hnsw"


def build_faiss_index(vectors: np.ndarray, params: AnnParams):
    """Builds a FAISS index over ``vectors`` (rows are unit-norm float32)."""
    import faiss

    dim = vectors.shape[1]
    if params.type == "flat":
        index = faiss.IndexFlatIP(dim)
    elif params.type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    elif params.type == "hnsw-sq8":
        index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, params.hnsw_m,
                                  faiss.METRIC_INNER_PRODUCT)
        index.train(vectors)
    else:
        raise ValueError(f"unknown index type '{params.type}'; choose one of {INDEX_TYPES}")
    if params.type != "flat":
        index.hnsw.efConstruction = params.ef_construction
        index.hnsw.efSearch = params.ef_search
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


class AnnIndex:
    """A FAISS index plus the vectors it was built from (for exact filtered scans)."""

    def __init__(self, faiss_index, vectors: np.ndarray, params: AnnParams) -> None:
        self.faiss_index = faiss_index
        self.vectors = vectors
        self.params = params

    @classmethod
    def build(cls, vectors: np.ndarray, params: AnnParams) -> AnnIndex:
        return cls(build_faiss_index(vectors, params), vectors, params)

    @classmethod
    def load(cls, path: Path, vectors: np.ndarray, params: AnnParams) -> AnnIndex:
        import faiss

        index = faiss.read_index(str(path))
        if params.type != "flat":
            index.hnsw.efSearch = params.ef_search
        return cls(index, vectors, params)

    def save(self, path: Path) -> None:
        import faiss

        faiss.write_index(self.faiss_index, str(path))

    def __len__(self) -> int:
        return int(self.faiss_index.ntotal)

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` rows for one query vector.

        Args:
            query: a unit vector of shape ``(dim,)``.
            k: how many rows to return at most.
            allowed: optional boolean mask over rows; only rows where it is True are returned.

        Returns:
            ``(rows, scores)``: int64 row numbers and float32 cosine scores, best first. Fewer
            than ``k`` only when fewer rows exist or are allowed.
        """
        n = len(self)
        if n == 0 or k <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        if allowed is None:
            return self._faiss_search(query, min(k, n), None)
        allowed_count = int(np.count_nonzero(allowed))
        if allowed_count == 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        wanted = min(k, allowed_count)
        if allowed_count <= EXACT_SCAN_MAX_ROWS:
            return exact_search(self.vectors, query[0], wanted, np.flatnonzero(allowed))
        rows, scores = self._faiss_search(query, wanted, allowed)
        if len(rows) < wanted:  # the graph walk ran out of allowed neighbours
            return exact_search(self.vectors, query[0], wanted, np.flatnonzero(allowed))
        return rows, scores

    def _faiss_search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        params = None
        if allowed is not None:
            bitmap = np.packbits(allowed.astype(np.uint8), bitorder="little")
            selector = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bitmap))
            if self.params.type == "flat":
                params = faiss.SearchParameters(sel=selector)
            else:
                # Filtered walks skip disallowed nodes; widen the beam so k allowed ones are found.
                params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(self.params.ef_search, 2 * k))
            params._keep = (bitmap, selector)  # the selector must outlive the search call
        elif self.params.type != "flat" and k > self.params.ef_search:
            params = faiss.SearchParametersHNSW(efSearch=k)
        scores, rows = self.faiss_index.search(query, k, params=params)
        keep = rows[0] >= 0
        return rows[0][keep].astype(np.int64), scores[0][keep].astype(np.float32)


def exact_search(
    vectors: np.ndarray, query: np.ndarray, k: int, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top ``k`` by inner product over ``rows`` (all rows when None)."""
    candidates = vectors if rows is None else vectors[rows]
    scores = candidates @ query.astype(np.float32)
    k = min(k, len(scores))
    if k == 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    top = top[np.lexsort((top, -scores[top]))]  # score desc, then row asc for determinism
    chosen = top if rows is None else rows[top]
    return chosen.astype(np.int64), scores[top].astype(np.float32)
