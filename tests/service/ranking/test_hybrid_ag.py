"""Hybrid retrieval against its two halves on real data: the Amazon-Google fixture, real encoder.

The fixture (``<shared data>/fixture/search/amazon_google``: 504 products, 100 labelled queries)
is indexed exactly as ``aisle build`` would, with the bundled MiniLM (ONNX int8); every query
runs through ``Engine.search`` in each retrieval mode. Hybrid must match or beat both dense
only and BM25 only on MRR@10 there (the dev-set figures are in benchmarks/results/search_ag.json).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aisle.service.ranking.hybrid import FusionParams
from benchmarks.data import MissingDataError, shared_data_dir
from benchmarks.eval_search_ag import CachingEncoder, build_engine, load_queries, metrics, rank_all

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fixture_folder() -> Path:
    try:
        folder = shared_data_dir() / "fixture" / "search" / "amazon_google"
    except MissingDataError as exc:
        pytest.skip(str(exc))
    if not (folder / "corpus.csv").is_file():
        pytest.skip(f"Amazon-Google fixture not found at {folder}")
    return folder


@pytest.fixture(scope="module")
def scores(fixture_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, float]]:
    from benchmarks.eval_search_ag import real_encoder

    try:
        encoder = CachingEncoder(real_encoder())
    except ImportError as exc:  # the embed package is not installed in this environment
        pytest.skip(f"the real encoder is unavailable: {exc}")
    engine = build_engine(fixture_folder, encoder, tmp_path_factory.mktemp("ag") / "index")
    queries = load_queries(fixture_folder)
    return {
        mode: metrics(queries, rank_all(engine, queries, mode, FusionParams()))
        for mode in ("dense", "lexical", "hybrid")
    }


def test_hybrid_matches_or_beats_both_retrievers(scores: dict[str, dict[str, float]]) -> None:
    hybrid = scores["hybrid"]["mrr@10"]
    assert hybrid >= scores["dense"]["mrr@10"], scores
    assert hybrid >= scores["lexical"]["mrr@10"], scores
    # Not a tie by construction: the two retrievers rank differently on this data.
    assert scores["dense"]["mrr@10"] != scores["lexical"]["mrr@10"], scores


def test_labelled_product_in_the_top_ten(scores: dict[str, dict[str, float]]) -> None:
    assert scores["hybrid"]["hit@10"] >= 0.95, scores
    assert scores["hybrid"]["recall@10"] >= max(scores["dense"]["recall@10"], scores["lexical"]["recall@10"]) - 0.01
