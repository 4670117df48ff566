"""Search relevance evaluation: recall@10, MRR@10 and NDCG@10 against qrels.

In process, a loaded version answers with its dense ANN index (the query encoded by the same
encoder the service uses) or its BM25 index. Hybrid fusion and personalization are the service's
(``aisle.service.ranking``), which ``aisle.training`` must not import: those are measured through HTTP,
either against a running service (``--via-http URL``) or against a local ``aisle serve`` that
the evaluation starts itself on the evaluated index (``aisle.training.local_service``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aisle.embed.base import Encoder
from aisle.index.loaded import LoadedIndex
from aisle.training.datasets import SearchQuery, SearchSet
from aisle.training.search_metrics import search_summary

K = 10
IN_PROCESS_MODES = ("dense", "lexical")
HTTP_MODES = ("hybrid", "dense", "lexical")


@dataclass
class SearchReport:
    """Metrics of one run and how they were obtained; ``rankings`` are kept for overlap checks."""

    metrics: dict[str, float | int]
    settings: dict[str, Any]
    seconds: float
    rankings: dict[str, list[str]]

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "settings": self.settings, "seconds": round(self.seconds, 2)}


def rank_in_process(
    index: LoadedIndex, encoder: Encoder | None, queries: Sequence[SearchQuery], mode: str, depth: int = K
) -> dict[str, list[str]]:
    """query id → ranked product ids from the version's dense or BM25 index."""
    if mode not in IN_PROCESS_MODES:
        raise ValueError(
            f"mode '{mode}' is not available in process (only {', '.join(IN_PROCESS_MODES)}): hybrid "
            "fusion lives in the service; evaluate it with --engine service or --via-http URL"
        )
    ids = index.items.ids
    rankings: dict[str, list[str]] = {}
    if mode == "dense":
        if encoder is None:
            raise ValueError("dense search needs the encoder the index was built with")
        vectors = encoder.encode_queries([q.text for q in queries])
        for query, vector in zip(queries, vectors):
            rows, _ = index.text.ann.search(vector, depth)
            rankings[query.id] = [ids[int(r)] for r in rows]
    else:
        for query in queries:
            rows, _ = index.lexical.search(query.text, depth)
            rankings[query.id] = [ids[int(r)] for r in rows]
    return rankings


def rank_over_http(client: Any, queries: Sequence[SearchQuery], mode: str, depth: int = K) -> dict[str, list[str]]:
    """query id → ranked product ids from ``POST /search`` of a running service."""
    if mode not in HTTP_MODES:
        raise ValueError(f"unknown retrieval mode '{mode}'; choose one of {', '.join(HTTP_MODES)}")
    rankings: dict[str, list[str]] = {}
    for query in queries:
        response = client.post("/search", json={"query": query.text[:512], "k": depth, "retrieval": mode})
        response.raise_for_status()
        rankings[query.id] = [result["id"] for result in response.json()["results"]]
    return rankings


def summarize(
    search_set: SearchSet, rankings: dict[str, list[str]], settings: dict[str, Any], started: float
) -> SearchReport:
    queries = search_set.queries
    metrics = search_summary([rankings[q.id] for q in queries], [q.gains for q in queries], K)
    metrics["unlabelled_queries_skipped"] = search_set.unlabelled
    return SearchReport(metrics, {"data": search_set.name, **settings}, time.perf_counter() - started, rankings)


def evaluate_in_process(index: LoadedIndex, encoder: Encoder | None, search_set: SearchSet, mode: str) -> SearchReport:
    started = time.perf_counter()
    rankings = rank_in_process(index, encoder, search_set.queries, mode)
    return summarize(
        search_set,
        rankings,
        {
            "engine": "index (in process)",
            "retrieval": mode,
            "model": index.manifest.get("model", {}),
            "index_version": index.version,
        },
        started,
    )


def evaluate_http(client: Any, search_set: SearchSet, mode: str, engine: str) -> SearchReport:
    started = time.perf_counter()
    rankings = rank_over_http(client, search_set.queries, mode)
    health = client.get("/health").json()
    return summarize(
        search_set,
        rankings,
        {
            "engine": engine,
            "retrieval": mode,
            "index_version": health.get("index_version"),
        },
        started,
    )
