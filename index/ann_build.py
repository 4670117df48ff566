"""Building FAISS indexes: which type a catalogue gets, its cells and its memory estimate.

The index types themselves, and what each costs at query time, are described in ``aisle.index.ann``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from aisle.index.ann import GRAPH_TYPES, INDEX_TYPES, IVF_TYPES, AnnParams, IndexType

#: Up to this many products the default index is an exact scan (``flat``).
FLAT_MAX_ITEMS = 20_000
#: Vectors per ``add`` call when a graph build shows its progress.
ADD_CHUNK = 50_000


def estimate_memory_bytes(index_type: str, count: int, dim: int, hnsw_m: int = 32) -> int:
    """Approximate resident size of a FAISS index of ``count`` vectors of ``dim`` dimensions."""
    codes = (dim + 1) // 2  # ivf-pq: one 4-bit code per dimension
    per_vector = {"flat": 4 * dim, "hnsw": 4 * dim, "hnsw-sq8": dim, "ivf": 4 * dim + 8, "ivf-pq": codes + 8}[
        index_type
    ]
    # HNSW keeps 2·M int32 neighbour ids on the bottom layer, ~M/(M-1)·... above: about 8·M bytes.
    graph = 8 * hnsw_m + 16 if index_type in GRAPH_TYPES else 0
    lists = ivf_lists_for(count) if index_type in IVF_TYPES else 0
    # ivf-pq: each cell pads its codes to a block of 32 (half a block on average), plus codebooks.
    extra = lists * 16 * codes + 64 * dim if index_type == "ivf-pq" else 0
    return count * (per_vector + graph) + 4 * dim * lists + extra


def ivf_lists_for(count: int) -> int:
    """Default number of IVF cells: about ``4·√count`` (4,000 at a million), and at least 39
    training vectors per cell, as FAISS's k-means wants."""
    return max(1, min(int(4 * math.sqrt(max(count, 1))), count // 39))


def choose_index_type(count: int, dim: int = 384, memory_budget_mb: float | None = None, hnsw_m: int = 32) -> IndexType:
    """The default index type for ``count`` products of ``dim`` dimensions.

    Args:
        count: number of products.
        dim: vector dimensions.
        memory_budget_mb: the most memory the index may take; ``hnsw`` is replaced by
            ``hnsw-sq8`` when its estimate exceeds this. ``None`` means no limit.
        hnsw_m: the graph degree the index will use.
    """
    if count <= FLAT_MAX_ITEMS:
        return "flat"
    if memory_budget_mb is not None and (
        estimate_memory_bytes("hnsw", count, dim, hnsw_m) > memory_budget_mb * 1024 * 1024
    ):
        return "hnsw-sq8"
    return "hnsw"


def build_faiss_index(
    vectors: np.ndarray,
    params: AnnParams,
    show_progress: bool = False,
    fill_ivf: Callable[[Any, np.ndarray], Any] | None = None,
) -> Any:
    """Builds a FAISS index over ``vectors`` (rows are unit-norm float32), rows added in order.

    Args:
        vectors: the matrix to index; row ``r`` becomes FAISS id ``r``.
        params: index type and parameters.
        show_progress: draw a progress bar while building a graph (minutes for millions).
        fill_ivf: adds ``vectors`` to the trained, empty inverted file elsewhere (shards on a
            cluster, ``aisle.index.distributed``) and returns the filled index; ``None`` adds here.
    """
    import faiss

    dim = vectors.shape[1]
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if params.type == "flat":
        index = faiss.IndexFlatIP(dim)
    elif params.type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    elif params.type == "hnsw-sq8":
        index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        if len(vectors):
            index.train(vectors)
    elif params.type in IVF_TYPES:
        index = _trained_ivf(vectors, params)
        if fill_ivf is not None and len(vectors):
            return fill_ivf(index, vectors)
    else:
        raise ValueError(f"unknown index type '{params.type}'; choose one of {', '.join(INDEX_TYPES)}")
    if params.type in GRAPH_TYPES:
        index.hnsw.efConstruction = params.ef_construction
        index.hnsw.efSearch = params.ef_search
    if params.type not in GRAPH_TYPES or not show_progress or len(vectors) <= ADD_CHUNK:
        if len(vectors):
            index.add(vectors)
        return index
    from tqdm import tqdm

    # Adding in chunks builds the same graph (HNSW inserts one vector at a time anyway) and
    # lets the bar move; each chunk is still added by all OpenMP threads.
    with tqdm(total=len(vectors), desc=f"{params.type} index", unit="vectors", unit_scale=True) as bar:
        for start in range(0, len(vectors), ADD_CHUNK):
            chunk = vectors[start : start + ADD_CHUNK]
            index.add(chunk)
            bar.update(len(chunk))
    return index


def _trained_ivf(vectors: np.ndarray, params: AnnParams) -> Any:
    """An empty ``IndexIVFFlat`` (or ``IndexIVFPQFastScan``) whose cells are k-means centroids of
    (a sample of) ``vectors``; for ``ivf-pq`` the codebooks are trained on the same sample.

    The sample is fixed (evenly spaced rows, 64 per cell at most) and so are FAISS's k-means
    seeds, so equal vectors give equal indexes.
    """
    import faiss

    dim = vectors.shape[1]
    lists = params.ivf_lists or ivf_lists_for(len(vectors))
    if params.type == "ivf-pq":
        # One 4-bit sub-quantiser per dimension: coarser codes lose the small differences between
        # near-duplicates that decide the top 10 (benchmarks/results/DECISIONS.md, "Vector index").
        index = faiss.IndexIVFPQFastScan(faiss.IndexFlatIP(dim), dim, lists, dim, 4, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = 1234
    if len(vectors):
        step = max(1, len(vectors) // (64 * lists))
        index.train(np.ascontiguousarray(vectors[::step]))
    index.nprobe = params.nprobe
    return index


def resolved_params(params: AnnParams, count: int) -> AnnParams:
    """``params`` with what the build decides filled in (the IVF cell count), for the manifest."""
    if params.type in IVF_TYPES and not params.ivf_lists:
        return replace(params, ivf_lists=ivf_lists_for(count))
    return params
