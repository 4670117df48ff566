"""Text encoder cost: sentence-transformers (torch fp32) vs ONNX fp32 vs ONNX int8, same threads.

Usage::

    python benchmarks/bench_encoders.py --threads 1 --out benchmarks/results/encoders.json

Measured on the bundled all-MiniLM-L6-v2, at the same intra-op thread count for every backend
and with the process pinned to that many CPUs:

* batch-1 query latency: one ``encode_queries([q])`` call per real WANDS query (480 furniture
  searches), p50/p99 in ms of wall time, plus the CPU time the process spent (less sensitive to
  other processes on a shared machine);
* bulk document throughput: ``encode_documents(titles, batch_size=64)`` over real Amazon-Google
  product titles, items per second (best and median of the rounds).

Backends are measured in interleaved rounds so that a burst of background load hits all of them
alike; the machine's load is recorded with the results. Targets: int8 queries >= 3x faster than
sentence-transformers and >= 2x faster than ONNX fp32 (p50), bulk int8 >= 700 products/s per core.
The exports are built on first use (needs torch) in the normal cache (``AISLE_CACHE_DIR``).
"""

from __future__ import annotations

import os

# torch and tokenizers must see the thread limits before they load.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse
import csv
import json
import statistics
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # allow `python benchmarks/bench_encoders.py` from anywhere
    sys.path.insert(0, str(REPO))

from aisle.embed import Encoder, EncoderConfig, create_encoder, prepare_model  # noqa: E402
from aisle.embed.config import default_cache_dir  # noqa: E402
from aisle.index.storage import atomic_write_json  # noqa: E402
from benchmarks.data import shared_data_dir  # noqa: E402
from benchmarks.machine import describe_machine  # noqa: E402
from benchmarks.measure import LoadMonitor, latency_stats, pinned  # noqa: E402

BACKENDS = ("sentence-transformers", "onnx-fp32", "onnx-int8")


def load_queries(data: Path) -> list[str]:
    with (data / "dev/search/wands/query.csv").open(encoding="utf-8") as handle:
        return [row["query"] for row in csv.DictReader(handle, delimiter="\t") if row["query"].strip()]


def load_titles(data: Path) -> list[str]:
    with (data / "dev/search/amazon_google/corpus.csv").open(encoding="utf-8") as handle:
        return [row["title"] for row in csv.DictReader(handle) if row["title"].strip()]


def time_queries(encoder: Encoder, queries: list[str]) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of one batch-1 ``encode_queries`` call per query."""
    wall, cpu = [], []
    for query in queries:
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        encoder.encode_queries([query])
        cpu.append(time.process_time() - cpu_start)
        wall.append(time.perf_counter() - wall_start)
    return wall, cpu


def time_documents(encoder: Encoder, titles: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one bulk ``encode_documents`` pass."""
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    encoder.encode_documents(titles, batch_size=64)
    return time.perf_counter() - wall_start, time.process_time() - cpu_start


def summarise(
    wall: list[float], cpu: list[float], bulk: list[tuple[float, float]], items: int, threads: int
) -> dict[str, Any]:
    walls = [w for w, _ in bulk]
    cpus = [c for _, c in bulk]
    return {
        "query_latency_ms": latency_stats(wall),
        "query_cpu_ms": latency_stats(cpu),
        "bulk_items": items,
        "bulk_items_per_s": round(items / min(walls), 1),
        "bulk_items_per_s_median": round(items / statistics.median(walls), 1),
        "bulk_items_per_s_per_core": round(items / min(walls) / threads, 1),
        "bulk_items_per_cpu_s": round(items / min(cpus), 1),
    }


def package_versions() -> dict[str, str]:
    """Versions of everything on the encoding path (transformers and onnx included)."""
    found = {}
    for name in ("numpy", "onnxruntime", "onnx", "tokenizers", "torch", "transformers", "sentence-transformers"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def ratio(slow: float, fast: float) -> float:
    return round(slow / fast, 2) if fast > 0 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--queries", type=int, default=480, help="real queries per round (>= 200)")
    parser.add_argument("--documents", type=int, default=2000, help="real product titles (>= 1000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    parser.add_argument("--no-pin", action="store_true", help="do not pin the process to --threads CPUs")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "encoders.json")
    args = parser.parse_args()
    if args.queries < 200 or args.documents < 1000:
        parser.error("use at least 200 queries and 1000 documents")

    data = shared_data_dir()
    queries = load_queries(data)[: args.queries]
    titles = load_titles(data)[: args.documents]
    encoders: dict[str, Encoder] = {}
    for backend in BACKENDS:
        config = EncoderConfig(backend=backend, threads=args.threads, cache_dir=args.cache_dir)  # type: ignore[arg-type]
        prepare_model(config)
        encoders[backend] = create_encoder(config)

    cpus = None if args.no_pin else set(sorted(os.sched_getaffinity(0))[: args.threads])
    samples: dict[str, dict[str, list[Any]]] = {b: {"wall": [], "cpu": [], "bulk": []} for b in BACKENDS}
    monitor = LoadMonitor()
    with pinned(cpus):
        for encoder in encoders.values():  # warm-up: first calls allocate arenas and caches
            time_queries(encoder, queries[:20])
            encoder.encode_documents(titles[:128])
        for _ in range(args.rounds):
            for backend, encoder in encoders.items():
                wall, cpu = time_queries(encoder, queries)
                samples[backend]["wall"] += wall
                samples[backend]["cpu"] += cpu
                samples[backend]["bulk"].append(time_documents(encoder, titles))
    load = monitor.report()

    results = {
        backend: summarise(s["wall"], s["cpu"], s["bulk"], len(titles), args.threads) for backend, s in samples.items()
    }
    st, fp32, int8 = (results[b] for b in BACKENDS)
    ratios = {
        "query_p50_int8_vs_st": ratio(st["query_latency_ms"]["p50"], int8["query_latency_ms"]["p50"]),
        "query_p50_int8_vs_fp32": ratio(fp32["query_latency_ms"]["p50"], int8["query_latency_ms"]["p50"]),
        "query_cpu_p50_int8_vs_st": ratio(st["query_cpu_ms"]["p50"], int8["query_cpu_ms"]["p50"]),
        "query_cpu_p50_int8_vs_fp32": ratio(fp32["query_cpu_ms"]["p50"], int8["query_cpu_ms"]["p50"]),
        "bulk_int8_vs_st": ratio(int8["bulk_items_per_s"], st["bulk_items_per_s"]),
        "bulk_int8_vs_fp32": ratio(int8["bulk_items_per_s"], fp32["bulk_items_per_s"]),
    }
    targets = {
        "query_int8_vs_st_min": 3.0,
        "query_int8_vs_fp32_min": 2.0,
        "bulk_int8_items_per_s_per_core_min": 700,
    }
    report = {
        "benchmark": "encoders",
        "command": f"python benchmarks/bench_encoders.py --threads {args.threads} --queries {args.queries} "
        f"--documents {args.documents} --rounds {args.rounds}",
        "model": encoders["onnx-int8"].name,
        "fingerprints": {backend: encoder.fingerprint for backend, encoder in encoders.items()},
        "setup": {
            "threads": args.threads,
            "pinned_cpus": sorted(cpus) if cpus else None,
            "queries": len(queries),
            "query_source": "WANDS query.csv (real furniture searches), batch 1",
            "documents": len(titles),
            "document_source": "Amazon-Google corpus.csv titles, batch_size 64",
            "rounds": args.rounds,
        },
        "results": results,
        "ratios": ratios,
        "targets": targets,
        "meets_targets": {
            "query_int8_vs_st": ratios["query_p50_int8_vs_st"] >= targets["query_int8_vs_st_min"],
            "query_int8_vs_fp32": ratios["query_p50_int8_vs_fp32"] >= targets["query_int8_vs_fp32_min"],
            "bulk_int8_per_core": int8["bulk_items_per_s_per_core"] >= targets["bulk_int8_items_per_s_per_core_min"],
        },
        "load": load,
        "note": "wall-clock figures include time the process waited for a CPU; on a shared machine "
        "(load average above the core count) query_cpu_ms and bulk_items_per_cpu_s, the process's own "
        "CPU time, are the more faithful comparison between backends",
        "versions": package_versions(),
        "machine": {**describe_machine(REPO), "threads": args.threads},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, report)
    print(json.dumps({key: report[key] for key in ("results", "ratios", "meets_targets", "load")}, indent=2))


if __name__ == "__main__":
    main()
