"""Index benchmark: build time, bytes per item, recall@10 and single-query latency per index type.

    python benchmarks/bench_index.py --sizes 100000 --out benchmarks/results/index-100k.json
    python benchmarks/bench_index.py --sizes 1000000 --queries 240 --out benchmarks/results/index-1m.json

Vectors: the bundled MiniLM (int8 ONNX, as served) encodes 8,196 real product texts (Amazon-
Google, Industrial & Scientific, ESCI); perturbed copies ``x + σ·g/√d`` (renormalised, σ = 0.7:
a copy keeps cosine ≈ 0.82 with its original, the median cosine between a real product and its
nearest real neighbour) bring them to each size. Queries: the 480 real WANDS search queries,
encoded as queries. Recall@10 is against exact brute force over the same vectors; latency is one
query at a time on one FAISS thread, through ``AnnIndex.search`` (the code path the service
uses), over ``--queries`` queries (``--flat-queries`` for flat at sizes above 100k), as wall time
(``p50_ms``...) and as the searching thread's CPU time (``cpu_p50_ms``...), which stays
meaningful on a machine shared with other work. Filtered search is measured at three
selectivities with random masks, through the policy and through each path alone. Results are
written as JSON after every index, so a long run can be inspected while it goes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aisle.index import ann, ann_build
from aisle.index.ann import INDEX_TYPES, AnnIndex, AnnParams
from aisle.index.selection import RowSelection
from aisle.index.storage import atomic_write_json
from benchmarks import realdata

K = 10
#: Candidates ``/search`` retrieves per query before re-scoring (``AISLE_CANDIDATES``).
SERVICE_CANDIDATES = 200


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int, chunk: int = 131_072) -> np.ndarray:
    """Exact top-k rows per query, by chunks of the matrix (float32 matmul, merged per chunk)."""
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, len(vectors), chunk):
        scores = queries @ vectors[start : start + chunk].T
        top = np.argpartition(-scores, min(k, scores.shape[1] - 1), axis=1)[:, :k]
        merged_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, 1)], axis=1)
        merged_rows = np.concatenate([best_rows, top + start], axis=1)
        order = np.argsort(-merged_scores, axis=1)[:, :k]
        best_scores = np.take_along_axis(merged_scores, order, 1)
        best_rows = np.take_along_axis(merged_rows, order, 1)
    return best_rows


def percentiles(seconds: list[float], prefix: str = "") -> dict[str, float]:
    ms = np.array(seconds) * 1000
    return {
        f"{prefix}p50_ms": round(float(np.percentile(ms, 50)), 3),
        f"{prefix}p99_ms": round(float(np.percentile(ms, 99)), 3),
        f"{prefix}mean_ms": round(float(ms.mean()), 3),
    }


def measure_search(
    index: AnnIndex,
    queries: np.ndarray,
    truth: np.ndarray,
    allowed: RowSelection | None = None,
    search: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Recall@10 against ``truth`` and per-query latency, one query at a time.

    ``search`` replaces ``index.search(query, K, allowed)`` to time one path on its own.
    """
    run = search or (lambda query: index.search(query, K, allowed))
    for query in queries[:5]:  # warm caches and FAISS's lazy state
        run(query)
    seconds, cpu_seconds, recalls = [], [], []
    for query, true_rows in zip(queries, truth):
        tick, cpu_tick = time.perf_counter(), time.thread_time()
        rows, _ = run(query)
        cpu_seconds.append(time.thread_time() - cpu_tick)
        seconds.append(time.perf_counter() - tick)
        expected = set(true_rows[true_rows >= 0].tolist())
        recalls.append(len(expected & set(rows.tolist())) / len(expected) if expected else 1.0)
    return {
        "queries": len(queries),
        f"recall_at_{K}": round(float(np.mean(recalls)), 4),
        **percentiles(seconds),
        **percentiles(cpu_seconds, "cpu_"),
    }


def _best_of(found: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    rows, scores = found
    return rows[:K], scores[:K]


def filtered_truth(vectors: np.ndarray, queries: np.ndarray, selection: RowSelection) -> np.ndarray:
    rows = selection.rows
    sub = exact_top_k(vectors[rows], queries, K)
    return rows[sub]


def bench_type(
    kind: str, vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray, args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    import faiss

    faiss.omp_set_num_threads(args.build_threads)
    params = ann_build.resolved_params(AnnParams(type=kind), len(vectors))  # type: ignore[arg-type]
    tick = time.perf_counter()
    index = AnnIndex.build(vectors, params)
    build_seconds = time.perf_counter() - tick
    faiss_path, vectors_path = work / f"{kind}.faiss", work / "vectors.npy"
    index.save(faiss_path)
    if not vectors_path.exists():
        np.save(vectors_path, vectors, allow_pickle=False)
    n = len(vectors)
    faiss.omp_set_num_threads(1)
    # Serve as the service does: the float vectors memory-mapped from the version's file.
    served = AnnIndex(index.faiss_index, np.load(vectors_path, mmap_mode="r"), params)
    limit = args.flat_queries if kind == "flat" and n > 100_000 else args.queries
    result: dict[str, Any] = {
        "params": params.to_dict(),
        "build_seconds": round(build_seconds, 2),
        "build_threads": args.build_threads,
        "disk_bytes_per_item": {
            "faiss": round(faiss_path.stat().st_size / n, 1),
            "vectors": round(vectors_path.stat().st_size / n, 1),
            "total": round((faiss_path.stat().st_size + vectors_path.stat().st_size) / n, 1),
        },
        "memory_bytes_per_item_faiss": round(index.memory_bytes() / n, 1),
        "search": measure_search(served, queries[:limit], truth[:limit]),
    }
    if kind in ann.GRAPH_TYPES:
        sweep = {}
        for ef in args.ef_sweep:
            tuned = AnnIndex(index.faiss_index, served.vectors, replace(params, ef_search=ef))
            sweep[str(ef)] = measure_search(tuned, queries[:limit], truth[:limit])
        index.faiss_index.hnsw.efSearch = params.ef_search
        result["ef_search_sweep"] = sweep
    elif kind in ann.IVF_TYPES:
        sweep = {}
        for nprobe in args.nprobe_sweep:
            tuned = AnnIndex(index.faiss_index, served.vectors, replace(params, nprobe=nprobe))
            sweep[str(nprobe)] = measure_search(tuned, queries[:limit], truth[:limit])
        result["nprobe_sweep"] = sweep
    if kind != "flat":
        # /search retrieves the top ``candidates`` (200) and keeps the best 10 after re-scoring:
        # the recall of those 10 and the cost of the wider retrieval.
        result["search_top200_best10"] = measure_search(
            served, queries[:limit], truth[:limit], search=lambda q: _best_of(served.search(q, SERVICE_CANDIDATES))
        )
    result["filtered"] = {}
    rng = np.random.default_rng(11)
    filter_queries = queries[: min(limit, args.filter_queries)]
    for share in args.filter_shares:
        selection = RowSelection(rng.random(n) < share)
        truth_filtered = filtered_truth(vectors, filter_queries, selection)
        breadth, scan = served.filtered_plan(selection.count, K)
        path = "scan" if scan else "index"
        entry = {
            "allowed_rows": selection.count,
            "policy_path": path,
            "policy_breadth": breadth,
            **measure_search(served, filter_queries, truth_filtered, selection),
        }
        # Each path alone, to check the cost model that chooses between them.
        entry["scan_only"] = measure_search(
            served, filter_queries, truth_filtered, search=lambda q, sel=selection: served.exact_subset(q, K, sel.rows)
        )
        if kind != "flat":
            entry["index_only"] = measure_search(
                served,
                filter_queries,
                truth_filtered,
                search=lambda q, sel=selection, b=breadth: served.graph_search(q, K, sel, b),
            )
        result["filtered"][str(share)] = entry
    print(f"{kind} n={n}: {json.dumps(result)}", flush=True)
    return result


def load_vectors(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    root = realdata.shared_data_dir()
    if root is None:
        sys.exit("shared evaluation data not found (set AISLE_SHARED_DATA or put it at ../shared/data)")
    encoder = realdata.real_encoder()
    if encoder is None:
        sys.exit("embed.create_encoder is not available")
    products = realdata.load_real_products(root)
    cache = realdata.vector_cache_dir()
    documents = realdata.encode_cached(encoder, [p.text for p in products], cache)
    queries = realdata.encode_cached(encoder, realdata.load_wands_queries(root), cache, queries=True)
    source = {
        "model": encoder.name,
        "fingerprint": encoder.fingerprint,
        "real_products": len(products),
        "queries": "WANDS query.csv",
        "query_count": len(queries),
    }
    return documents, queries, source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--types", nargs="+", choices=INDEX_TYPES, default=list(INDEX_TYPES))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "index.json")
    parser.add_argument("--sigma", type=float, default=0.7)
    parser.add_argument("--queries", type=int, default=480)
    parser.add_argument("--flat-queries", type=int, default=100)
    parser.add_argument("--filter-queries", type=int, default=100)
    parser.add_argument("--filter-shares", type=float, nargs="+", default=[0.5, 0.1, 0.01])
    parser.add_argument("--ef-sweep", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--nprobe-sweep", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256])
    parser.add_argument("--build-threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)

    import faiss

    documents, queries, source = load_vectors(args)
    report: dict[str, Any] = {
        "benchmark": "index",
        "command": " ".join(["python", "benchmarks/bench_index.py", *(argv or sys.argv[1:])]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "faiss": faiss.__version__,
            "load_average_at_start": os.getloadavg(),
        },
        "data": {**source, "sigma": args.sigma, "k": K},
        "sizes": {},
    }
    for size in args.sizes:
        vectors = realdata.perturbed(documents, size, args.sigma, seed=size)
        truth = exact_top_k(vectors, queries, K)
        report["sizes"][str(size)] = {}
        with tempfile.TemporaryDirectory(prefix="aisle-bench-index-") as work:
            for kind in args.types:
                report["sizes"][str(size)][kind] = bench_type(kind, vectors, queries, truth, args, Path(work))
                report["machine"]["load_average_now"] = os.getloadavg()
                args.out.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_json(args.out, report)
        del vectors
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
