"""Storefront search at several catalogue sizes, in one run and one JSON file.

    python -m benchmarks.bench_storefront --sizes 100000,1000000 --index-types ,ivf-pq --base 6d6955e

For each size the synthetic catalogue of ``benchmarks.catalogue`` (real MiniLM vectors of real
listings, perturbed into variants) is published with attributes: each variant's ``colour`` and
``size`` (the ones its title suffix names) and a numeric ``rating``. Then, over the 480 real
WANDS queries:

1. in process, pinned to one core with one BLAS/encoder thread, each query is run as
   **plain** (``Engine.search(query, 10)`` and the result objects, what ``/search`` does for a
   search bar, query encoding included) and as **storefront** (the same text with two filters,
   ``colour`` any of two and ``price`` at most 300, three facets, ``brand``, ``colour`` and
   ``size``, ``sort: price:asc`` and page 2, ``offset`` 10), alternating query by query, every
   call cold (query cache off, analysis caches cleared: the pair shares its text);
2. with ``--base REV`` (at the first size) the plain search of the code at ``REV`` on the same
   index, in alternating blocks with this code (``ABABAB``);
3. typeahead and the query cache (``benchmarks.bench_typeahead.in_process``): ``/suggest``'s
   whole work over every prefix typed on the way to each query, and ``Engine.search`` over a
   Zipf-shaped stream of the queries (popular ones repeat) with the query cache on and off,
   beside the unique queries;
4. over HTTP (server on one core, load generator on the other, concurrency 1): ``GET /suggest``
   on the same prefixes and, at the first size, plain ``POST /search`` by this code (query cache
   on and off) and by ``REV``'s, alternating rounds.

``targets`` sums up the issue's targets: storefront p50 at most 1.5x the plain search's, and
``/suggest`` p50 at most 2 ms at the largest size. The JSON file is written after each size.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from aisle.index.storage import atomic_write_json
from benchmarks import bench_typeahead as typeahead
from benchmarks.data import REPO_ROOT, load_base_products, load_queries
from benchmarks.http_bench import LoadLevels
from benchmarks.machine import describe_machine
from benchmarks.measure import LoadMonitor, latency_stats, pinned
from benchmarks.pipeline import cpu_plan

log = logging.getLogger("benchmarks.bench_storefront")

STOREFRONT_FILTERS = {"colour": ["Black", "White"], "price": {"max": 300}}
STOREFRONT_FACETS = ("brand", "colour", "size")
#: The same shape on Aisle's own fields, for a version built without attributes (``--index-root``).
BUILTIN_FILTERS = {"in_stock": True, "price": {"max": 300}}
BUILTIN_FACETS = ("brand", "category", "in_stock")
STOREFRONT_SORT = ("price", False)
#: The issue's targets: the storefront query's p50 against the plain search's, typeahead's p50.
TARGET_STOREFRONT_OVER_PLAIN = 1.5
TARGET_SUGGEST_P50_MS = 2.0


def _one_thread() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


def _cold(engine: Any) -> None:
    """Forgets what an earlier call with the same text left behind (code of any version)."""
    if hasattr(engine, "query_vectors"):
        engine.query_vectors = type(engine.query_vectors)(0)
    lexical = engine.index.lexical
    for name in ("_analyze_cached", "_spans_cached"):
        cached = getattr(lexical, name, None)
        if cached is not None and hasattr(cached, "cache_clear"):
            cached.cache_clear()


def _encoder():
    from aisle.embed import create_encoder, prepare_model
    from aisle.settings import AisleSettings

    config = AisleSettings(threads=1).encoder_config()
    prepare_model(config)
    return create_encoder(config)


def prepare_index(size: int, index_type: str | None, work_dir: Path, encoder, products) -> Path:
    """The storefront catalogue of ``size`` items, published once and re-used by later runs."""
    from benchmarks.catalogue import (
        COLOURS,
        SIZES,
        CatalogueRecipe,
        encode_base_products,
        publish_catalogue,
        published_version,
        synthesize,
    )

    recipe = CatalogueRecipe(size, len(products), 0.025, 0, encoder.fingerprint, index_type)
    root = work_dir / f"storefront-{size}-{len(products)}{'-' + index_type if index_type else ''}"
    _wait_for_a_running_build(root)
    path = published_version(root, recipe)
    if path is not None:
        return root
    base_vectors = encode_base_products(encoder, products, work_dir / "vectors")
    catalog, vectors = synthesize(products, base_vectors, size, 0.025, 0)
    ratings = np.round(np.random.default_rng(1).uniform(1, 5, size), 1)
    count = len(products)
    for row, product in enumerate(catalog.products):
        variant = row // count
        attributes: dict[str, Any] = {"rating": float(ratings[row])}
        if variant:
            combo = variant - 1
            attributes["colour"] = COLOURS[combo % len(COLOURS)]
            attributes["size"] = SIZES[(combo // len(COLOURS)) % len(SIZES)]
        product.attributes = attributes
    publish_catalogue(catalog, vectors, encoder, root, recipe)
    return root


def _wait_for_a_running_build(root: Path) -> None:
    """Waits while another process builds into ``root`` (a 1M build takes many minutes; a second
    build of the same recipe would fail on the root's build lock after synthesizing it all)."""
    import fcntl

    from aisle.index.versions import LOCK_FILE

    lock = root / LOCK_FILE
    if not lock.is_file():
        return
    with open(lock, "a") as handle:
        started = time.perf_counter()
        fcntl.flock(handle, fcntl.LOCK_EX)  # blocks until the running build releases it
        fcntl.flock(handle, fcntl.LOCK_UN)
    if time.perf_counter() - started > 1:
        log.info("waited %.0f s for the build running in %s", time.perf_counter() - started, root)


def measure_plain(index_root: Path, queries: list[str], rounds: int = 1) -> dict[str, Any]:
    """Plain search only, with APIs every Aisle version has (run by ``--plain-only``)."""
    from aisle.index.loaded import LoadedIndex
    from aisle.index.versions import VersionStore
    from aisle.service.engine import Engine

    encoder = _encoder()
    engine = Engine(LoadedIndex.load(VersionStore(index_root).current_path(), verify_checksums=False), encoder)

    def plain(query: str) -> None:
        [engine.result(hit) for hit in engine.search(query, 10)]

    for query in queries[:30]:
        plain(query)
    seconds, cpu_seconds = [], []
    for _ in range(rounds):
        for query in queries:
            _cold(engine)
            tick, cpu_tick = time.perf_counter(), time.process_time()
            plain(query)
            seconds.append(time.perf_counter() - tick)
            cpu_seconds.append(time.process_time() - cpu_tick)
    return {"wall": latency_stats(seconds), "cpu": latency_stats(cpu_seconds)}


def measure_both(index_root: Path, queries: list[str]) -> dict[str, Any]:
    """Plain and storefront queries, alternating, on this checkout's code."""
    from aisle.index.filters import parse_filters
    from aisle.index.loaded import LoadedIndex
    from aisle.index.versions import VersionStore
    from aisle.service.engine import Engine, SortOrder

    encoder = _encoder()
    started = time.perf_counter()
    engine = Engine(LoadedIndex.load(VersionStore(index_root).current_path(), verify_checksums=False), encoder)
    load_seconds = time.perf_counter() - started
    sort = SortOrder(*STOREFRONT_SORT)

    def plain(query: str) -> int:
        return len([engine.result(hit) for hit in engine.search(query, 10)])

    with_attributes = "colour" in engine.index.items.fields
    raw_filters, facets = (
        (STOREFRONT_FILTERS, STOREFRONT_FACETS) if with_attributes else (BUILTIN_FILTERS, BUILTIN_FACETS)
    )

    def storefront(query: str) -> tuple[int, int]:
        filters = parse_filters(raw_filters, engine.index.items.fields)
        listing = engine.listing(query, 10, offset=10, filters=filters, facets=facets, sort=sort)
        [engine.result(hit) for hit in listing.hits]
        return listing.total, len(listing.hits)

    for query in queries[:30]:
        plain(query)
        storefront(query)
    wall: dict[str, list[float]] = {"plain": [], "storefront": []}
    cpu: dict[str, list[float]] = {"plain": [], "storefront": []}
    totals = []
    for query in queries:
        for name, run in (("plain", plain), ("storefront", storefront)):
            _cold(engine)
            tick, cpu_tick = time.perf_counter(), time.process_time()
            output = run(query)
            wall[name].append(time.perf_counter() - tick)
            cpu[name].append(time.process_time() - cpu_tick)
            if name == "storefront":
                totals.append(output[0])
    stats = {name: {"wall": latency_stats(wall[name]), "cpu": latency_stats(cpu[name])} for name in wall}
    return {
        "items": len(engine.index),
        "index": engine.index.manifest["spaces"]["text"]["index"],
        "load_seconds": round(load_seconds, 2),
        "storefront_query": {
            "filters": raw_filters,
            "facets": list(facets),
            "sort": "price:asc",
            "offset": 10,
            "k": 10,
        },
        **stats,
        # CPU time is the figure to compare on a shared machine: wall time also holds the
        # waits for a core that other work on it causes.
        "storefront_over_plain_p50_cpu": round(stats["storefront"]["cpu"]["p50"] / stats["plain"]["cpu"]["p50"], 3),
        "storefront_over_plain_p50_wall": round(stats["storefront"]["wall"]["p50"] / stats["plain"]["wall"]["p50"], 3),
        "storefront_total_median": int(np.median(totals)),
    }


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_storefront", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="catalogue sizes, smallest first")
    parser.add_argument("--index-types", default=",ivf-pq", help="index type per size (empty: Aisle's choice)")
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / ".cache" / "aisle-bench")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "storefront.json")
    parser.add_argument("--base", help="git revision whose plain search is measured beside this code's")
    parser.add_argument("--query-limit", type=int)
    parser.add_argument("--prefixes", type=int, default=3000, help="typed prefixes timed in process and over HTTP")
    parser.add_argument("--stream", type=int, default=3000, help="length of the Zipf query stream")
    parser.add_argument("--requests", type=int, default=1500, help="HTTP requests per run")
    parser.add_argument("--rounds", type=int, default=2, help="alternating HTTP rounds")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--plain-only", type=Path, metavar="INDEX_ROOT", help=argparse.SUPPRESS)
    parser.add_argument(
        "--index-root",
        action="append",
        default=[],
        metavar="SIZE=ROOT",
        help="measure SIZE on an index root published by another run of the catalogue recipe (e.g. "
        "benchmarks.run's, without attributes: the storefront query then filters and counts Aisle's own fields)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("AISLE_CACHE_DIR", str(REPO_ROOT / ".cache" / "aisle"))
    queries = load_queries()[: args.query_limit]
    cpus = cpu_plan()
    if args.plain_only:  # the base revision's side: print its plain-search figures as JSON
        _one_thread()
        with pinned(cpus["inprocess"]):
            print(json.dumps(measure_plain(args.plain_only, queries)))
        return 0
    sizes = [int(size) for size in args.sizes.split(",")]
    types = [kind or None for kind in args.index_types.split(",")]
    types += [None] * (len(sizes) - len(types))
    _one_thread()
    monitor = LoadMonitor()
    started = time.perf_counter()
    encoder = _encoder()
    products = load_base_products()
    prefixes = typeahead.typed_prefixes(queries, args.prefixes)
    base = typeahead.export_revision(args.base, args.work_dir) if args.base else None
    result: dict[str, Any] = {
        "name": "storefront",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.bench_storefront " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": describe_machine(REPO_ROOT),
        "cpus": {name: sorted(value) if value else None for name, value in cpus.items()},
        "base_revision": args.base,
        "storefront_query": {
            "filters": STOREFRONT_FILTERS,
            "facets": list(STOREFRONT_FACETS),
            "sort": "price:asc",
            "offset": 10,
            "k": 10,
        },
        "queries": len(queries),
        "typed_prefixes": len(prefixes),
        "sizes": {},
    }
    levels = LoadLevels(
        concurrency=(1,),
        rates=(),
        max_requests=args.requests,
        max_seconds=60,
        warmup=50,
        max_steal=None,
        steal_retries=0,
    )
    given = dict(item.split("=", 1) for item in args.index_root)
    for number, (size, index_type) in enumerate(zip(sizes, types)):
        tick = time.perf_counter()
        root = (
            Path(given[str(size)])
            if str(size) in given
            else prepare_index(size, index_type, args.work_dir, encoder, products)
        )
        entry: dict[str, Any] = {
            "index_root": str(root),
            "recipe": json.loads((root / "bench-catalogue.json").read_text()),
            "build_or_reuse_seconds": round(time.perf_counter() - tick, 1),
            "loadavg_before": os.getloadavg(),
        }
        with pinned(cpus["inprocess"]):
            if base is not None and number == 0:
                entry["plain_before_after"] = _before_after(base, root, queries)
            entry.update(measure_both(root, queries))
            entry["typeahead_and_cache"] = typeahead.in_process(
                root, encoder, queries, prefixes, args.stream, measure_cache=True
            )
        if not args.skip_http:
            entry["http"] = _http(root, queries, prefixes, levels, args.work_dir, base if number == 0 else None, args)
        entry["loadavg_after"] = os.getloadavg()
        result["sizes"][str(size)] = entry
        result["targets"] = targets(result["sizes"])
        log.info("%d items: %s", size, json.dumps(entry)[:2000])
        atomic_write_json(args.out, result)  # each size as soon as it is done
    result["machine_load"] = monitor.report()
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    atomic_write_json(args.out, result)
    print(args.out)
    return 0


def _http(
    root: Path,
    queries: list[str],
    prefixes: list[str],
    levels: LoadLevels,
    work_dir: Path,
    base: Path | None,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """``GET /suggest`` on the typed prefixes and (with ``base``) plain ``POST /search``."""
    work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work_dir) as scratch:
        work = Path(scratch)
        plans = {
            "suggest": typeahead.write_plan(
                work / "suggest.jsonl",
                [
                    {"method": "GET", "path": "/suggest?" + typeahead._query_string(prefix), "body": None}
                    for prefix in prefixes
                ],
            )
        }
        if base is not None:
            plans["search"] = typeahead.write_plan(
                work / "search.jsonl",
                [{"method": "POST", "path": "/search", "body": {"query": q, "k": 10}} for q in queries],
            )
        return typeahead.http_runs(root, plans, levels, work, base_path=base, rounds=args.rounds)


def targets(sizes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets against this run's figures, per size."""
    report: dict[str, Any] = {
        "storefront_over_plain_p50_at_most": TARGET_STOREFRONT_OVER_PLAIN,
        "suggest_http_p50_ms_at_most": TARGET_SUGGEST_P50_MS,
    }
    for size, entry in sizes.items():
        row: dict[str, Any] = {
            "storefront_over_plain_p50_cpu": entry["storefront_over_plain_p50_cpu"],
            "storefront_over_plain_p50_wall": entry["storefront_over_plain_p50_wall"],
            "storefront_ok": entry["storefront_over_plain_p50_cpu"] <= TARGET_STOREFRONT_OVER_PLAIN,
            "suggest_in_process_p50_ms": entry["typeahead_and_cache"]["suggest"]["p50"],
            "suggest_in_process_p50_ms_cache_off": entry["typeahead_and_cache"]["suggest_cache_off"]["p50"],
            "suggest_cache_hit_rate": entry["typeahead_and_cache"]["suggest"]["cache"]["hit_rate"],
        }
        for label, suffix in (("suggest (new code)", ""), ("suggest (new code, query cache off)", "_cache_off")):
            suggest = entry.get("http", {}).get(label)
            if suggest is None:
                continue
            row[f"suggest_http_p50_ms{suffix}"] = suggest["p50_ms_median"]
            row[f"suggest_http_p99_ms{suffix}"] = suggest["p99_ms_median"]
            # The server's CPU time per request: what a busy machine's waits do not inflate.
            row[f"suggest_server_cpu_ms_per_request{suffix}"] = [
                run["server_cpu_ms_per_request"] for run in suggest["runs"]
            ]
            row[f"suggest_ok{suffix}"] = suggest["p50_ms_median"] <= TARGET_SUGGEST_P50_MS
        cache = entry["typeahead_and_cache"].get("query_cache")
        if cache is not None:
            row["query_cache"] = {
                label: {"hit_rate": cache[label]["cache"]["hit_rate"], "p50_ms": cache[label]["p50"]}
                for label in ("unique_queries_cache_on", "zipf_cache_off", "zipf_cache_on")
            }
        report[size] = row
    return report


def _before_after(base: Path, root: Path, queries: list[str]) -> dict[str, Any]:
    """Plain search by the base revision's code and by this code on one index, alternating blocks."""
    blocks: dict[str, list] = {"before": [], "after": []}
    # This checkout's benchmarks (the working directory comes first on the path), the base's aisle.
    command = [sys.executable, "-m", "benchmarks.bench_storefront", "--plain-only", str(root)]
    if len(queries) != 480:
        command += ["--query-limit", str(len(queries))]
    environment = {**os.environ, "PYTHONPATH": str(base)}
    for _ in range(3):
        output = subprocess.run(
            command, cwd=REPO_ROOT, env=environment, check=True, capture_output=True, text=True
        ).stdout
        blocks["before"].append(json.loads(output.strip().splitlines()[-1]))
        blocks["after"].append(measure_plain(root, queries))
    summary: dict[str, Any] = {"base": str(base), "blocks": blocks, "loadavg": os.getloadavg()}
    for side in ("before", "after"):
        for clock in ("cpu", "wall"):
            for stat in ("p50", "p99"):
                summary[f"{side}_{clock}_{stat}_median"] = float(
                    statistics.median(b[clock][stat] for b in blocks[side])
                )
    summary["after_over_before_p50_cpu"] = round(summary["after_cpu_p50_median"] / summary["before_cpu_p50_median"], 3)
    return summary


if __name__ == "__main__":
    sys.exit(main())
