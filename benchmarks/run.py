"""The latency benchmark: one command, JSON results, PNG plots and ``SUMMARY.md``.

    python -m benchmarks.run --size 100000 --threads 1 --out benchmarks/results/

Steps, all on the same catalogue (real MiniLM vectors of real products, perturbed into
``--size`` variants, published as an Aisle index version; see ``benchmarks.catalogue``) and the
480 real WANDS queries:

1. end to end over HTTP: ``aisle serve`` pinned to one core, the load generator in another
   process on another core; closed loop at each concurrency and open loop at fixed rates; then
   ``aisle serve --workers 2`` (a worker per core) for throughput;
2. the same ``/search`` in-process, stage by stage;
3. the peers (txtai, chromadb, qdrant local) on the same vectors and queries, with recall@10.

Results go to ``OUT/<name>.json`` (default name ``latency-<size>-t<threads>``), plots to
``OUT/<name>-*.png``, and ``OUT/SUMMARY.md`` is regenerated from every result in ``OUT``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

if __package__ in (None, ""):  # run as a script: ``python benchmarks/run.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aisle.index.ann import INDEX_TYPES
from benchmarks.data import REPO_ROOT, load_base_products, load_queries
from benchmarks.http_bench import LoadLevels
from benchmarks.machine import describe_machine
from benchmarks.measure import LoadMonitor, wait_for_quiet

log = logging.getLogger("benchmarks.run")

PARTS = ("http", "two-workers", "stages", "peers")
SCENARIOS = ("search", "search_user", "similar", "recommendations", "events")


def size_label(size: int) -> str:
    """``100000`` → ``100k``, ``1000000`` → ``1m``, ``2000`` → ``2k``."""
    if size % 1_000_000 == 0:
        return f"{size // 1_000_000}m"
    if size % 1000 == 0:
        return f"{size // 1000}k"
    return str(size)


def _csv(kind: type):
    def parse(text: str) -> tuple:
        return tuple(kind(part) for part in text.split(",") if part.strip())

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100_000, help="catalogue size (items)")
    parser.add_argument("--threads", type=int, default=1, help="encoder/OMP threads per process")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results", help="results directory")
    parser.add_argument("--name", help="result name (default latency-<size>-t<threads>)")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=REPO_ROOT / ".cache" / "aisle-bench",
        help="indexes, vector cache, server data and logs (re-used between runs)",
    )
    parser.add_argument("--sigma", type=float, default=0.025, help="noise of perturbed variants")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--index-type", choices=list(INDEX_TYPES), help="default: Aisle's choice by size")
    parser.add_argument("--base-limit", type=int, help="use only the first N real products (smoke tests)")
    parser.add_argument("--query-limit", type=int, help="use only the first N WANDS queries")
    parser.add_argument("--concurrency", type=_csv(int), default=(1, 4, 16))
    parser.add_argument("--rates", type=_csv(float), default=(100.0, 200.0, 300.0), help="open-loop req/s")
    parser.add_argument("--requests-per-level", type=int, default=2000)
    parser.add_argument("--seconds-per-level", type=float, default=20.0)
    parser.add_argument("--warmup", type=int, default=50, help="unmeasured requests before each level")
    parser.add_argument(
        "--max-steal",
        type=float,
        default=0.05,
        metavar="SHARE",
        help="run a load level again when the hypervisor stole more than this share of the "
        "CPU during it (0: never); every attempt is kept in the JSON",
    )
    parser.add_argument("--steal-retries", type=int, default=2, help="at most this many repeats per level")
    parser.add_argument("--scenarios", type=_csv(str), default=SCENARIOS)
    parser.add_argument(
        "--server-log-level",
        default="INFO",
        help="AISLE_LOG_LEVEL of the server (INFO, the default, logs every request)",
    )
    parser.add_argument("--peers", type=_csv(str), default=("txtai", "chromadb", "chromadb-tuned", "qdrant"))
    parser.add_argument("--peer-encodings", type=_csv(str), default=("aisle-onnx-int8", "native"))
    parser.add_argument("--peer-seconds", type=float, default=60.0, help="query time budget per peer")
    parser.add_argument("--max-peer-items", type=int, help="skip peers above this catalogue size")
    parser.add_argument("--skip", type=_csv(str), default=(), help=f"parts to skip: {', '.join(PARTS)}")
    parser.add_argument(
        "--wait-quiet", type=float, metavar="LOAD", help="first wait until the 1-minute load average is at most LOAD"
    )
    parser.add_argument("--wait-max-seconds", type=float, default=1800.0)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    unknown = set(args.skip) - set(PARTS)
    if unknown:
        raise SystemExit(f"--skip: unknown part(s) {sorted(unknown)}; choose from {PARTS}")
    os.environ.setdefault("AISLE_CACHE_DIR", str(REPO_ROOT / ".cache" / "aisle"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")  # chromadb
    from benchmarks.pipeline import run_benchmark

    name = args.name or f"latency-{size_label(args.size)}-t{args.threads}"
    quiet = wait_for_quiet(args.wait_quiet, args.wait_max_seconds) if args.wait_quiet is not None else None
    started = time.perf_counter()
    monitor = LoadMonitor()
    result = {
        "name": name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.run " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "machine": describe_machine(REPO_ROOT),
        # Service settings given through the environment (e.g. AISLE_NPROBE) apply to the server
        # and to the in-process engine alike; recorded so that a result says what it ran with.
        "aisle_environment": {
            k: v
            for k, v in sorted(os.environ.items())
            if k.startswith("AISLE_") and k not in ("AISLE_CACHE_DIR", "AISLE_SHARED_DATA")
        },
        "wait_quiet": quiet,
    }
    levels = LoadLevels(
        concurrency=args.concurrency,
        rates=args.rates,
        max_requests=args.requests_per_level,
        max_seconds=args.seconds_per_level,
        warmup=args.warmup,
        max_steal=args.max_steal if args.max_steal > 0 else None,
        steal_retries=args.steal_retries,
    )
    queries = load_queries()[: args.query_limit]
    products = load_base_products(args.base_limit)
    run_benchmark(args, result, products, queries, levels, name)
    result["machine_load"] = monitor.report()
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    from benchmarks.pipeline import publish_results

    paths = publish_results(result, args.out, name)
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
