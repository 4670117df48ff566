"""ANN search paths on synthetic clustered vectors: every branch returns allowed rows, k of them.

The real-vector recall and exact-match tests are in ``test_ann_real.py``; these exercise each
branch of the filtered search (exact scan, widened graph walk, fallback) on small data by moving
its thresholds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aisle.index import ann, ann_build
from aisle.index.ann import AnnIndex, AnnParams, exact_search
from aisle.index.ann_build import choose_index_type, estimate_memory_bytes
from aisle.index.selection import RowSelection


def clustered(count: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((64, dim)).astype(np.float32)
    vectors = centres[rng.integers(0, 64, count)] + 0.5 * rng.standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return clustered(4_000), clustered(40, seed=1)


@pytest.fixture(scope="module")
def indexes(data) -> dict[str, AnnIndex]:
    return {kind: AnnIndex.build(data[0], AnnParams(type=kind)) for kind in ann.INDEX_TYPES}


@pytest.fixture(params=list(ann.INDEX_TYPES))
def index(request, indexes) -> AnnIndex:
    return indexes[request.param]


def overlap(rows: np.ndarray, reference: np.ndarray) -> float:
    return len(set(rows.tolist()) & set(reference.tolist())) / max(1, len(reference))


def test_unfiltered_search_finds_the_true_neighbours(index: AnnIndex, data) -> None:
    vectors, queries = data
    recalls = [overlap(index.search(q, 10)[0], exact_search(vectors, q, 10)[0]) for q in queries]
    assert np.mean(recalls) >= 0.99
    rows, scores = index.search(queries[0], 10)
    assert np.all(np.diff(scores) <= 1e-6)  # best first
    np.testing.assert_allclose(scores, vectors[rows] @ queries[0], atol=1e-5)  # exact cosine scores


@pytest.mark.parametrize("share", [0.002, 0.05, 0.5, 0.95])
@pytest.mark.parametrize("path", ["exact-scan", "graph-walk"])
def test_filtered_search_returns_k_allowed_rows(index: AnnIndex, data, share: float, path: str, monkeypatch) -> None:
    vectors, queries = data
    if path == "graph-walk":  # force the filtered graph walk (or IVF scan) even for few allowed rows
        monkeypatch.setattr(ann, "GRAPH_STEP_COST_ROWS", 0)
        monkeypatch.setattr(ann, "IVF_ROW_COST", 0)
    rng = np.random.default_rng(int(share * 1000))
    mask = rng.random(len(vectors)) < share
    selection = RowSelection(mask)
    recalls = []
    for query in queries:
        rows, _ = index.search(query, 10, selection)
        assert len(rows) == min(10, selection.count)
        assert mask[rows].all()
        assert len(set(rows.tolist())) == len(rows)
        reference = exact_search(vectors, query, 10, selection.rows)[0]
        recalls.append(overlap(rows, reference))
    assert np.mean(recalls) >= 0.98


def test_graph_walk_that_finds_too_few_falls_back_to_an_exact_scan(data, indexes, monkeypatch) -> None:
    vectors, queries = data
    index = indexes["hnsw"]
    monkeypatch.setattr(ann, "GRAPH_STEP_COST_ROWS", 0)
    # Allowed rows far from the query: the walk ends near the query, where nothing is allowed.
    query = queries[0]
    farthest = np.argsort(vectors @ query)[:12]
    mask = np.zeros(len(vectors), dtype=bool)
    mask[farthest] = True
    monkeypatch.setattr(ann, "filtered_ef", lambda ef, share: 16)  # a deliberately narrow beam
    rows, _ = index.search(query, 10, mask)
    np.testing.assert_array_equal(np.sort(rows), np.sort(exact_search(vectors, query, 10, np.flatnonzero(mask))[0]))


def test_edge_cases(index: AnnIndex, data) -> None:
    vectors, queries = data
    assert len(index.search(queries[0], 0)[0]) == 0
    assert len(index.search(queries[0], 5, np.zeros(len(vectors), dtype=bool))[0]) == 0
    one = np.zeros(len(vectors), dtype=bool)
    one[123] = True
    assert index.search(queries[0], 10, one)[0].tolist() == [123]
    with pytest.raises(ValueError, match="filter mask has 3 rows"):
        index.search(queries[0], 5, np.ones(3, dtype=bool))


def test_k_larger_than_ef_search_still_returns_k(index: AnnIndex, data) -> None:
    _, queries = data
    k = index.params.ef_search + 100
    rows, _ = index.search(queries[0], k)
    assert len(rows) == len(set(rows.tolist())) == k


def test_save_and_load_round_trip(tmp_path: Path, index: AnnIndex, data) -> None:
    vectors, queries = data
    index.save(tmp_path / "index.faiss")
    loaded = AnnIndex.load(tmp_path / "index.faiss", vectors, index.params)
    assert len(loaded) == len(vectors)
    np.testing.assert_array_equal(loaded.search(queries[3], 10)[0], index.search(queries[3], 10)[0])


def test_ivf_cells_follow_the_catalogue_size_and_are_recorded(data) -> None:
    vectors, _ = data
    assert (
        ann_build.ivf_lists_for(1_000_000) == 4000
        and ann_build.ivf_lists_for(100) == 2
        and ann_build.ivf_lists_for(10) == 1
    )
    params = ann_build.resolved_params(AnnParams(type="ivf"), len(vectors))
    assert params.ivf_lists == ann_build.ivf_lists_for(len(vectors))
    built = AnnIndex.build(vectors, params)
    assert built.faiss_index.nlist == params.ivf_lists and built.faiss_index.nprobe == params.nprobe
    again = AnnIndex.build(vectors, params)  # fixed sample and seed: the same cells
    np.testing.assert_array_equal(built.search(vectors[5], 10)[0], again.search(vectors[5], 10)[0])


def test_index_type_follows_size_and_memory_budget() -> None:
    assert choose_index_type(10_000) == "flat"
    assert choose_index_type(ann_build.FLAT_MAX_ITEMS) == "flat"
    assert choose_index_type(ann_build.FLAT_MAX_ITEMS + 1) == "hnsw"
    assert choose_index_type(1_000_000, 384) == "hnsw"
    hnsw_mb = estimate_memory_bytes("hnsw", 1_000_000, 384) / 2**20
    assert 1_500 < hnsw_mb < 2_000  # ~1.7 GB for a million MiniLM vectors
    assert choose_index_type(1_000_000, 384, memory_budget_mb=hnsw_mb + 1) == "hnsw"
    assert choose_index_type(1_000_000, 384, memory_budget_mb=hnsw_mb - 1) == "hnsw-sq8"
    assert choose_index_type(10_000, 384, memory_budget_mb=1) == "flat"


def test_memory_estimate_is_close_to_faiss(index: AnnIndex, data) -> None:
    vectors, _ = data
    estimate = estimate_memory_bytes(index.params.type, len(vectors), vectors.shape[1])
    assert 0.7 < estimate / index.memory_bytes() < 1.3, (index.params.type, estimate, index.memory_bytes())


def test_a_search_runs_faiss_on_one_thread_and_restores_the_setting(index: AnnIndex, data) -> None:
    import faiss

    _, queries = data
    before = faiss.omp_get_max_threads()
    with ann.one_openmp_thread():
        assert faiss.omp_get_max_threads() == 1
    index.search(queries[0], 10)
    index.search(queries[0], 10, np.ones(len(index), dtype=bool))
    assert faiss.omp_get_max_threads() == before
