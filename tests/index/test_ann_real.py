"""FAISS against a brute-force NumPy reference on real MiniLM vectors of real product texts.

8,196 real products (Amazon-Google, Industrial & Scientific, ESCI) are encoded with the bundled
model, then perturbed copies bring the catalogue to ``ROWS`` so that the HNSW graphs have
something to get wrong. Queries are the real WANDS search queries. Every index type is built
with its default parameters.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from aisle.index import ann, ann_build
from aisle.index.ann import INDEX_TYPES, AnnIndex, AnnParams
from aisle.index.filters import Filters, select_rows
from aisle.index.items import ItemTable, write_items
from benchmarks import realdata

pytestmark = pytest.mark.slow

ROWS = 30_000
SIGMA = 0.7
K = 10


@pytest.fixture(scope="module")
def corpus(real_vectors, real_products, tmp_path_factory) -> tuple[np.ndarray, ItemTable]:
    vectors, sources = realdata.perturbed_with_sources(real_vectors, ROWS, SIGMA, seed=7)
    products = realdata.products_for_rows(real_products, sources)
    path = tmp_path_factory.mktemp("items") / "items.parquet"
    write_items(path, products, [p.content_hash() for p in products])
    return vectors, ItemTable.read(path)


#: ``ivf`` and ``ivf-pq`` are chosen by hand, for catalogues of many near-duplicate variants,
#: where 32 to 64 cells suffice; on these spread-out vectors they need about a third of their
#: cells (``benchmarks/results/index-*.json`` sweep both). The other types run with defaults.
IVF_NPROBE_HERE = 256


@pytest.fixture(scope="module")
def indexes(corpus) -> dict[str, AnnIndex]:
    vectors, _ = corpus
    params = {kind: AnnParams(type=kind) for kind in INDEX_TYPES}
    for kind in ann.IVF_TYPES:
        params[kind] = ann_build.resolved_params(AnnParams(type=kind, nprobe=IVF_NPROBE_HERE), len(vectors))
    return {kind: AnnIndex.build(vectors, params[kind]) for kind in INDEX_TYPES}


@pytest.fixture(scope="module")
def exact_scores(corpus, real_queries) -> np.ndarray:
    """Brute force in float64 NumPy: every query's score with every row."""
    vectors, _ = corpus
    return real_queries.astype(np.float64) @ vectors.astype(np.float64).T


def reference(scores_row: np.ndarray, k: int, mask: np.ndarray | None = None):
    """The rows and scores of the true top k (ties broken by row number)."""
    rows = np.arange(len(scores_row)) if mask is None else np.flatnonzero(mask)
    scores = scores_row[rows]
    if len(rows) > k:  # keep the k best and everything tied with the k-th, then sort those
        kth = -np.partition(-scores, k - 1)[k - 1]
        rows, scores = rows[scores >= kth], scores[scores >= kth]
    order = np.lexsort((rows, -scores))[:k]
    return rows[order], scores[order]


def assert_same_results(rows, scores, ref_rows, ref_scores) -> None:
    """Equal top k up to ties: the same scores, and any differing row ties the k-th score."""
    assert len(rows) == len(ref_rows)
    np.testing.assert_allclose(np.sort(scores)[::-1], ref_scores, atol=1e-5)
    for row in set(rows.tolist()) ^ set(ref_rows.tolist()):
        tied_score = ref_scores[-1]
        score = scores[rows.tolist().index(row)] if row in rows else ref_scores[ref_rows.tolist().index(row)]
        assert abs(score - tied_score) <= 1e-5, f"row {row} is not a tie at the k-th score"


def recall(rows: np.ndarray, ref_rows: np.ndarray) -> float:
    if len(ref_rows) == 0:  # nothing to find: right only if nothing was returned
        return float(len(rows) == 0)
    return len(set(rows.tolist()) & set(ref_rows.tolist())) / len(ref_rows)


@pytest.mark.parametrize("kind", INDEX_TYPES)
def test_recall_at_10_with_default_settings(indexes, corpus, real_queries, exact_scores, kind: str) -> None:
    vectors, _ = corpus
    index = indexes[kind]
    recalls = []
    for query, scores_row in zip(real_queries, exact_scores):
        rows, scores = index.search(query, K)
        ref_rows, _ = reference(scores_row, K)
        recalls.append(recall(rows, ref_rows))
        np.testing.assert_allclose(scores, vectors[rows] @ query, atol=1e-5)  # true cosines
    assert np.mean(recalls) >= 0.99, f"{kind}: recall@10 {np.mean(recalls):.4f}"


def filters_to_check(items: ItemTable) -> dict[str, Filters]:
    brands = Counter(items.brand(row) for row in range(len(items)) if items.brand(row))
    common_brand, _ = brands.most_common(1)[0]
    rare_brand = next(b for b, n in sorted(brands.items(), key=lambda kv: (kv[1], kv[0])) if n >= 3)
    return {
        "category top level (~25 %)": Filters(category="Dept 1"),
        "category two levels (~6 %)": Filters(category="dept 1 > aisle 2"),
        "category leaf (~1.6 %)": Filters(category="Dept 1 > Aisle 2 > Shelf 3"),
        "common brand": Filters(brand=common_brand),
        "rare brand": Filters(brand=rare_brand),
        "price range": Filters(price_min=20, price_max=60),
        "in stock (~80 %)": Filters(in_stock=True),
        "out of stock (~20 %)": Filters(in_stock=False),
        "combined": Filters(category="Dept 2", price_max=250, in_stock=True),
        "very selective": Filters(category="Dept 0 > Aisle 0 > Shelf 0", brand=common_brand, in_stock=True),
        "nothing matches": Filters(brand="no such brand"),
    }


def scans_exactly(index: AnnIndex, allowed: int) -> bool:
    """Whether the search scans the allowed rows rather than walking the graph or IVF cells."""
    return index.filtered_plan(allowed, K)[1]


@pytest.mark.parametrize("kind", INDEX_TYPES)
def test_filtered_search_matches_the_reference(indexes, corpus, real_queries, exact_scores, kind: str) -> None:
    _, items = corpus
    index = indexes[kind]
    for name, filters in filters_to_check(items).items():
        selection = select_rows(items, filters)
        assert selection is not None
        recalls = []
        for query, scores_row in zip(real_queries[:60], exact_scores[:60]):
            rows, scores = index.search(query, K, selection)
            ref_rows, ref_scores = reference(scores_row, K, selection.mask)
            assert selection.mask[rows].all(), f"{name}: a result breaks the filter"
            assert len(rows) == min(K, selection.count), f"{name}: {len(rows)} results for {selection.count} matches"
            if kind == "flat" or scans_exactly(index, selection.count):
                assert_same_results(rows, scores, ref_rows, ref_scores)
            recalls.append(recall(rows, ref_rows))
        assert np.mean(recalls) >= 0.99, f"{kind}, {name} ({selection.count} rows): recall {np.mean(recalls):.4f}"
