"""Approximate nearest-neighbour search over unit vectors (inner product = cosine) with FAISS.

Index types, and how a build chooses one (``aisle.index.ann_build.choose_index_type``;
``aisle build --index-type`` overrides it):

* ``flat``: exact search. The default up to ``ann_build.FLAT_MAX_ITEMS`` products. A query
  reads every vector, so it is bound by memory bandwidth and grows with the catalogue.
* ``hnsw``: an HNSW graph over the float32 vectors, the default above that: sub-linear time at
  high recall. In memory it needs about ``4·dim + 8·M`` bytes per product.
* ``hnsw-sq8``: the same graph over 8-bit scalar-quantised vectors, about ``dim + 8·M`` bytes
  per product. Chosen instead of ``hnsw`` when a memory budget is given
  (``memory_budget_mb``, ``aisle build --memory-budget-mb``) and ``hnsw`` would exceed it. The
  quantised scores only pick candidates: ``refine_count(k)`` of them are re-scored exactly
  from the float vectors, which stay on disk (memory-mapped) rather than in the index, so
  results and scores match ``hnsw``'s.
* ``ivf``: an inverted file (``IndexIVFFlat``): k-means cells (``ivf_lists``, about ``4·√count``),
  a query scans the ``nprobe`` cells nearest to it exactly. Never chosen automatically: it is
  for catalogues made of many near-duplicate variants (a hundred colour/size versions of each
  product), where HNSW graphs lose recall because each node's neighbour list fills up with its
  own product's variants, while the variants share a cell; on spread-out catalogues IVF must
  scan many of its cells and ``hnsw`` is the better choice (``benchmarks/results/index-*.json``,
  ``latency-1m-t1*.json``).
* ``ivf-pq``: the same cells, but each product is stored as a 4-bit product-quantisation code per
  dimension (FAISS's SIMD "fast-scan" layout): 192 bytes for a MiniLM vector instead of 1,536.
  A scanned code costs about a quarter of a float vector, and ``refine_count(k)`` candidates are
  re-scored exactly from the float vectors (memory-mapped, as for ``hnsw-sq8``), so scores are
  true cosines. On the million-item variant catalogue it finds the same rows as ``ivf`` at less
  than half the CPU time. Tried there and not better: FAISS's RaBitQ fast-scan codes, PCA before
  the codes (the variants differ in every dimension), and fewer, larger cells (recall falls
  faster than the cell search). Figures: ``benchmarks/results/DECISIONS.md``, "Vector index".

Filtered search (a set of allowed rows, see ``aisle.index.filters``) is correct by construction: rows
outside the filter are never returned, and ``k`` rows come back whenever at least ``k`` are
allowed. ``flat`` scans only the allowed rows (``exact_subset``); the IVF types scan ``nprobe / share``
cells with the selector, or the allowed rows when they are fewer. HNSW either walks the graph
with FAISS's ``IDSelectorBitmap`` and an ``efSearch`` widened in inverse proportion to the
share of allowed rows (a filter keeping 10 % of the catalogue then meets about as many allowed
candidates as an unfiltered walk, and keeps its recall), or scans the allowed rows exactly,
whichever costs less: one step of beam width costs about as much as scanning
``GRAPH_STEP_COST_ROWS`` rows (measured on MiniLM vectors, one thread), so few allowed rows, or
a very selective filter on a large catalogue, are scanned. A walk that finds fewer than ``k``
allowed rows falls back to the scan.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from aisle.index.selection import RowSelection

IndexType = Literal["flat", "hnsw", "hnsw-sq8", "ivf", "ivf-pq"]
INDEX_TYPES: tuple[str, ...] = ("flat", "hnsw", "hnsw-sq8", "ivf", "ivf-pq")
GRAPH_TYPES: tuple[str, ...] = ("hnsw", "hnsw-sq8")
IVF_TYPES: tuple[str, ...] = ("ivf", "ivf-pq")
#: Types whose FAISS scores are approximate: their candidates are re-scored from the vectors.
REFINED_TYPES: tuple[str, ...] = ("hnsw-sq8", "ivf-pq")
#: One unit of ``efSearch`` in a filtered walk costs about as much as an exact scan of this many
#: allowed rows (``benchmarks/bench_index.py`` times both paths).
GRAPH_STEP_COST_ROWS = 25
#: Scanning one row of an IVF cell costs about as much as one row of an exact scan of allowed
#: rows (both read the float vector once); the cheaper of the two paths is taken.
IVF_ROW_COST = 1.0
#: An ``ivf-pq`` code costs a fifth to a quarter of that (a million rows, one core).
IVF_PQ_ROW_COST = 0.25
#: hnsw-sq8 and ivf-pq fetch ``REFINE_FACTOR·k + REFINE_EXTRA`` candidates and re-score them
#: exactly: approximate scores only reorder candidates near the k-th.
REFINE_FACTOR = 2
REFINE_EXTRA = 10
#: Up to this many rows, ``exact_subset`` gathers them with NumPy instead of calling FAISS.
SMALL_SUBSET_ROWS = 1024


@dataclass(frozen=True)
class AnnParams:
    """Index type and its parameters, recorded in the manifest.

    Attributes:
        type: ``flat``, ``hnsw``, ``hnsw-sq8``, ``ivf`` or ``ivf-pq``.
        hnsw_m: graph degree (neighbours per node; twice that on the bottom layer).
        ef_construction: beam width while building the graph.
        ef_search: beam width while searching; raised to ``k`` when ``k`` is larger. The
            default reaches high recall on spread-out catalogues but not on ones made of many
            copies of each product, where ``ivf`` does better (``benchmarks/results/index-*.json``);
            a narrower beam is faster and less exact.
        ivf_lists: ``ivf``/``ivf-pq``: number of k-means cells (0: ``ivf_lists_for(count)``).
        nprobe: ``ivf``/``ivf-pq``: cells scanned per query.
    """

    type: IndexType = "flat"
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 512
    ivf_lists: int = 0
    nprobe: int = 32

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class AnnIndex:
    """A FAISS index plus the float vectors it was built from (memory-mapped).

    The vectors serve exact scans of filtered rows and the exact re-scoring of ``hnsw-sq8`` and
    ``ivf-pq`` candidates; row ``r`` of both is FAISS id ``r``.
    """

    def __init__(self, faiss_index: Any, vectors: np.ndarray, params: AnnParams) -> None:
        self.faiss_index = faiss_index
        self.vectors = vectors
        self.params = params
        self._contiguous: np.ndarray | None = None

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        params: AnnParams,
        show_progress: bool = False,
        fill_ivf: Callable[[Any, np.ndarray], Any] | None = None,
    ) -> AnnIndex:
        """Builds the FAISS index over ``vectors`` (see ``aisle.index.ann_build.build_faiss_index``)."""
        from aisle.index.ann_build import build_faiss_index

        return cls(build_faiss_index(vectors, params, show_progress, fill_ivf), vectors, params)

    @classmethod
    def load(cls, path: Path, vectors: np.ndarray, params: AnnParams) -> AnnIndex:
        import faiss

        index = faiss.read_index(str(path))
        if params.type in GRAPH_TYPES:
            index.hnsw.efSearch = params.ef_search
        elif params.type in IVF_TYPES:
            index.nprobe = params.nprobe
        return cls(index, vectors, params)

    def with_search_params(self, ef_search: int | None = None, nprobe: int | None = None) -> AnnIndex:
        """The same index searched with another default breadth: HNSW beam or IVF cells.

        Sets the FAISS object's own setting too: this index keeps the FAISS object, so call it on
        a freshly loaded index, never on one that is serving. A parameter that does not apply to
        the index type is ignored.
        """
        for name, value in (("ef_search", ef_search), ("nprobe", nprobe)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        params = self.params
        if ef_search is not None and params.type in GRAPH_TYPES:
            self.faiss_index.hnsw.efSearch = ef_search
            params = replace(params, ef_search=ef_search)
        if nprobe is not None and params.type in IVF_TYPES:
            self.faiss_index.nprobe = nprobe
            params = replace(params, nprobe=nprobe)
        return self if params is self.params else AnnIndex(self.faiss_index, self.vectors, params)

    def save(self, path: Path) -> None:
        import faiss

        faiss.write_index(self.faiss_index, str(path))

    def __len__(self) -> int:
        return int(self.faiss_index.ntotal)

    def memory_bytes(self) -> int:
        """The FAISS index's serialised size, a close proxy for its resident memory."""
        import faiss

        return int(faiss.serialize_index(self.faiss_index).nbytes)

    def search(
        self, query: np.ndarray, k: int, allowed: np.ndarray | RowSelection | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` rows for one query vector.

        Args:
            query: a unit vector of shape ``(dim,)``.
            k: how many rows to return at most.
            allowed: optional boolean mask over rows (or a ``RowSelection`` of one); only
                rows where it is True are returned.

        Returns:
            ``(rows, scores)``: int64 row numbers and float32 cosine scores, best first. Fewer
            than ``k`` only when fewer rows exist or are allowed.
        """
        n = len(self)
        if n == 0 or k <= 0:
            return _empty()
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        if allowed is None:
            return self.graph_search(query[0], min(k, n))
        selection = allowed if isinstance(allowed, RowSelection) else RowSelection(allowed)
        if len(selection.mask) != n:
            raise ValueError(f"filter mask has {len(selection.mask)} rows, the index {n}")
        wanted = min(k, selection.count)
        if wanted == 0:
            return _empty()
        breadth, scan = self.filtered_plan(selection.count, wanted)
        if scan:
            return self.exact_subset(query[0], wanted, selection.rows)
        rows, scores = self.graph_search(query[0], wanted, selection, breadth)
        if len(rows) < wanted:  # the search met fewer allowed rows than asked for
            return self.exact_subset(query[0], wanted, selection.rows)
        return rows, scores

    def filtered_plan(self, allowed: int, wanted: int) -> tuple[int, bool]:
        """How a search of ``allowed`` rows for ``wanted`` results runs: ``(breadth, scan)``.

        ``breadth`` is the HNSW beam or the IVF cells, widened in inverse proportion to the
        allowed share so that the search meets about as many allowed rows as an unfiltered one;
        ``scan`` is True when scanning the allowed rows exactly costs less (always for ``flat``).
        """
        n = len(self)
        share = allowed / n
        if self.params.type == "flat":
            return 0, True
        if self.params.type in IVF_TYPES:
            lists = int(self.faiss_index.nlist)
            breadth = min(lists, filtered_ef(self.params.nprobe, share))
            row_cost = IVF_PQ_ROW_COST if self.params.type == "ivf-pq" else IVF_ROW_COST
            scanned_rows = breadth * n / lists * row_cost
        else:
            breadth = filtered_ef(max(self.params.ef_search, wanted), share)
            scanned_rows = breadth * GRAPH_STEP_COST_ROWS
        return breadth, allowed <= scanned_rows

    def exact_subset(self, query: np.ndarray, k: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact top ``k`` among ``rows`` (ascending row numbers), ties broken by row number.

        FAISS reads the chosen rows in place from the (memory-mapped) vectors: no gather copy
        and no BLAS thread pool, which makes it several times faster than NumPy for a filter's
        thousands of rows. The few hundred candidates that ``hnsw-sq8`` and ``ivf-pq`` re-score
        are the opposite case: there a NumPy gather and sort is faster than FAISS.
        """
        import faiss

        vectors = self._contiguous_vectors()
        k = min(k, len(rows))
        if k == 0:
            return _empty()
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(-1)
        if len(rows) <= SMALL_SUBSET_ROWS:
            rows = np.asarray(rows, dtype=np.int64)
            exact = vectors[rows] @ query
            order = np.lexsort((rows, -exact))[:k]
            return rows[order], exact[order].astype(np.float32, copy=False)
        subset = np.ascontiguousarray(rows, dtype=np.int64)
        scores = np.empty(k, dtype=np.float32)
        found = np.empty(k, dtype=np.int64)
        with one_openmp_thread():
            faiss.knn_inner_products_by_idx(
                faiss.swig_ptr(query),
                faiss.swig_ptr(vectors),
                faiss.swig_ptr(subset),
                vectors.shape[1],
                1,
                len(vectors),
                len(subset),
                k,
                faiss.swig_ptr(scores),
                faiss.swig_ptr(found),
                len(subset),
            )
        found, scores = _valid(found, scores)
        order = np.lexsort((found, -scores))
        return found[order], scores[order]

    def _contiguous_vectors(self) -> np.ndarray:
        if self._contiguous is None:
            # A C-contiguous float32 memory map is used as it is (no copy).
            self._contiguous = np.ascontiguousarray(self.vectors, dtype=np.float32)
        return self._contiguous

    def graph_search(
        self, query: np.ndarray, k: int, selection: RowSelection | None = None, ef: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """One FAISS search as it is: the HNSW walk, IVF scan or flat scan, without any fallback.

        ``search`` decides when to use it; this is public so that benchmarks can time each path.

        Args:
            query: a unit vector of shape ``(dim,)``.
            k: rows wanted.
            selection: the allowed rows, checked by FAISS during the search.
            ef: the search breadth: HNSW beam width (default ``ef_search``) or IVF cells
                scanned (default ``nprobe``).
        """
        import faiss

        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        refine = self.params.type in REFINED_TYPES
        fetch = refine_count(k) if refine else k
        if self.params.type == "flat":
            params = faiss.SearchParameters()
        elif self.params.type in IVF_TYPES:
            params = faiss.SearchParametersIVF(nprobe=self.params.nprobe if ef is None else ef)
        else:
            ef = self.params.ef_search if ef is None else ef
            params = faiss.SearchParametersHNSW(efSearch=max(ef, fetch))
        if selection is not None:
            params.sel = selection.faiss_selector()
        with one_openmp_thread():
            scores, rows = self.faiss_index.search(query, fetch, params=params)
        rows, scores = _valid(rows[0], scores[0])
        if refine and len(rows):  # exact scores for the quantised candidates
            return self.exact_subset(query[0], k, np.sort(rows))
        return rows, scores


@contextmanager
def one_openmp_thread() -> Iterator[None]:
    """Runs FAISS on the calling thread alone for one query, then restores the thread's setting.

    FAISS parallelises over queries, so a single query gains nothing from OpenMP threads but
    pays for waking them, several times over on a busy machine. The setting is per calling thread, so concurrent requests
    and index builds elsewhere keep theirs.
    """
    import faiss

    previous = faiss.omp_get_max_threads()
    if previous == 1:
        yield
        return
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def refine_count(k: int) -> int:
    """How many hnsw-sq8 or ivf-pq candidates are re-scored exactly to return ``k``."""
    return REFINE_FACTOR * k + REFINE_EXTRA


def filtered_ef(ef: int, allowed_share: float) -> int:
    """The beam width that meets about ``ef`` allowed rows when ``allowed_share`` of rows pass."""
    return math.ceil(ef / max(allowed_share, 1e-9))


def exact_search(
    vectors: np.ndarray, query: np.ndarray, k: int, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top ``k`` by inner product over ``rows`` (all rows when None).

    Ties are broken by row number, so the result is deterministic.
    """
    candidates = vectors if rows is None else vectors[rows]
    scores = np.asarray(candidates, dtype=np.float32) @ query.astype(np.float32)
    k = min(k, len(scores))
    if k == 0:
        return _empty()
    top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    top = top[np.lexsort((top, -scores[top]))]  # score desc, then row asc
    chosen = top if rows is None else rows[top]
    return chosen.astype(np.int64), scores[top].astype(np.float32)


def _valid(rows: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = rows >= 0  # FAISS pads with -1 when it finds fewer than k
    return rows[keep].astype(np.int64), scores[keep].astype(np.float32)


def _empty() -> tuple[np.ndarray, np.ndarray]:
    return np.empty(0, np.int64), np.empty(0, np.float32)
