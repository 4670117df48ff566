"""Aisle's vector retrieval next to the peers: same vectors, same queries, same model.

For every configuration: the latency of answering a query *text* (encoding included), one query
at a time in this process, and recall@10 against an exact scan of the same vectors with the same
query vectors. Aisle is measured on its own query path without HTTP: the encoder plus the FAISS
index of the published version (the peers are libraries, so this is the like-for-like figure;
the HTTP figures are in the end-to-end section).
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Sequence
from typing import Any

import numpy as np

from aisle.embed.base import Encoder
from benchmarks.measure import exact_top_k, latency_stats, pinned, recall_at_k, time_each
from benchmarks.peers import PEER_ITEM_LIMITS, make_peer

log = logging.getLogger(__name__)


def aisle_vector_path(
    loaded, encoder: Encoder, queries: Sequence[str], k: int, warmup: int, candidates: int | None = None
) -> dict[str, Any]:
    """Aisle's encoder + ANN search on the loaded version (what the peers do), with recall.

    With ``candidates``, the ANN search asks for that many rows and the best ``k`` of them are
    kept: the dense half of what ``/search`` retrieves before fusion and reranking (a wider
    beam, so a higher recall at a higher cost than a plain top-``k`` search).
    """
    ann, ids = loaded.text.ann, loaded.items.ids
    wanted = max(k, candidates or k)

    def search(query: str) -> list[str]:
        rows, _ = ann.search(encoder.encode_queries([query])[0], wanted)
        return [ids[row] for row in rows[:k]]

    latencies, found = time_each(search, queries, warmup)
    # One at a time, as searched: batched int8 encoding pads and quantises slightly differently.
    query_vectors = np.vstack([encoder.encode_queries([query]) for query in queries])
    exact = exact_top_k(loaded.text.vectors, query_vectors, k)
    params = ann.params.to_dict() if hasattr(ann.params, "to_dict") else {"params": str(ann.params)}
    return {
        "system": "aisle" if candidates is None else "aisle-candidates",
        "encoding": "aisle-onnx-int8",
        "query_encoder": f"{encoder.name} ({encoder.fingerprint.split(':')[0]})",
        "index": {**params, "searched_k": wanted},
        "latency_ms": latency_stats(latencies),
        "cpu_ms": latency_stats(latencies.cpu),
        "recall_at_10": recall_at_k(found, [[ids[r] for r in row] for row in exact], k),
    }


def run_peer(
    name: str,
    encodings: Sequence[str],
    encoder: Encoder,
    ids: list[str],
    vectors: np.ndarray,
    queries: Sequence[str],
    k: int,
    threads: int,
    warmup: int,
    max_seconds: float | None = None,
) -> list[dict[str, Any]]:
    """Builds one peer on the vectors, then per query encoder times its text queries and recall."""
    peer = make_peer(name, encoder, threads)
    tick = time.perf_counter()
    peer.build(ids, vectors)
    build_seconds = time.perf_counter() - tick
    results = []
    try:
        for encoding in encodings:
            log.info("peer %s (%s) on %d items", name, encoding, len(ids))
            try:
                peer.set_encoding(encoding)
                latencies, found = time_each(lambda q: peer.search(q, k), queries, warmup, max_seconds)
                exact = exact_top_k(vectors, peer.query_vectors(queries[: len(found)]), k)
            except Exception as exc:  # one broken encoder must not lose the other results
                log.error("peer %s (%s) failed: %s", name, encoding, exc)
                results.append(
                    {
                        "system": peer.name,
                        "encoding": encoding,
                        "error": f"{type(exc).__name__}: {exc}",
                        "traceback": traceback.format_exc(limit=3),
                    }
                )
                continue
            results.append(
                {
                    "system": peer.name,
                    **peer.describe(),
                    "build_seconds": round(build_seconds, 1),
                    "queries_measured": len(found),
                    "latency_ms": latency_stats(latencies),
                    "cpu_ms": latency_stats(latencies.cpu),
                    "recall_at_10": recall_at_k(found, [[ids[r] for r in row] for row in exact], k),
                }
            )
    finally:
        peer.close()
    return results


def peer_skip_reason(name: str, items: int, max_peer_items: int | None) -> str | None:
    """Why peer ``name`` is not run on ``items`` items (``--max-peer-items`` or its own limit), or None."""
    if max_peer_items is not None and items > max_peer_items:
        return f"{items} items is above --max-peer-items {max_peer_items}"
    limit, reason = PEER_ITEM_LIMITS.get(name, (None, ""))
    if limit is not None and items > limit:
        return f"{items} items is above {limit:,} for {name}: {reason}"
    return None


def compare_peers(
    loaded,
    encoder: Encoder,
    queries: Sequence[str],
    *,
    peers: Sequence[str],
    encodings: Sequence[str],
    threads: int,
    cpus: set[int] | None,
    k: int = 10,
    warmup: int = 20,
    max_peer_items: int | None = None,
    peer_seconds: float | None = None,
    candidates: int | None = None,
) -> dict[str, Any]:
    """Aisle's vector path and every (peer, encoding) pair, each pinned to ``cpus``.

    With ``candidates``, Aisle's dense retrieval is also measured as ``/search`` runs it (that
    many candidates, the best ``k`` kept). A peer that fails (not installed, out of memory,
    refuses the data) is reported with its error instead of stopping the run. A peer slower than
    ``peer_seconds`` in total answers only the first queries (the same prefix for recall).
    """
    ids = list(loaded.items.ids)
    vectors = np.asarray(loaded.text.vectors, dtype=np.float32)
    results: list[dict[str, Any]] = []
    with pinned(cpus):
        results.append(aisle_vector_path(loaded, encoder, queries, k, warmup))
        if candidates:
            results.append(aisle_vector_path(loaded, encoder, queries, k, warmup, candidates))
        for name in peers:
            skipped = peer_skip_reason(name, len(ids), max_peer_items)
            if skipped:
                log.warning("peer %s skipped: %s", name, skipped)
                results += [{"system": name, "encoding": encoding, "skipped": skipped} for encoding in encodings]
                continue
            try:
                results += run_peer(name, encodings, encoder, ids, vectors, queries, k, threads, warmup, peer_seconds)
            except Exception as exc:  # a peer that cannot even build must not lose the others
                log.error("peer %s failed: %s", name, exc)
                results += [
                    {
                        "system": name,
                        "encoding": encoding,
                        "error": f"{type(exc).__name__}: {exc}",
                        "traceback": traceback.format_exc(limit=3),
                    }
                    for encoding in encodings
                ]
    return {
        "items": len(ids),
        "queries": len(queries),
        "k": k,
        "threads": threads,
        "pinned_cpus": sorted(cpus) if cpus else None,
        "results": results,
    }
