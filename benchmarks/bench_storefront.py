"""The storefront query beside the plain search, in-process on one core, at several catalogue sizes.

    python -m benchmarks.bench_storefront --sizes 100000,1000000 --baseline-python /work/main/.venv/bin/python

For each size the synthetic catalogue of ``benchmarks.catalogue`` (real MiniLM vectors of real
listings, perturbed into variants) is published with attributes: each variant's ``colour`` and
``size`` (the ones its title suffix names) and a numeric ``rating``. Then, over the 480 real
WANDS queries, each query is run as

* **plain**: ``Engine.search(query, 10)`` and the result objects, what ``/search`` does for a
  search bar (query encoding included);
* **storefront**: the same text with two filters (``colour`` any of two, ``price`` at most 300),
  three facets (``brand``, ``colour``, ``size``), ``sort: price:asc`` and page 2 (``offset`` 10).

The two alternate query by query, pinned to one core with one BLAS/encoder thread. With
``--baseline-python`` (another checkout's interpreter, e.g. ``main``'s) the plain search of the
first size is also measured by that code on the same index, in alternating blocks (``ABAB``) in
this run, so that a change's effect on plain search is measured beside it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.data import REPO_ROOT, load_base_products, load_queries
from benchmarks.measure import latency_stats

log = logging.getLogger("benchmarks.bench_storefront")

STOREFRONT_FILTERS = {"colour": ["Black", "White"], "price": {"max": 300}}
STOREFRONT_FACETS = ("brand", "colour", "size")
#: The same shape on Aisle's own fields, for a version built without attributes (``--index-root``).
BUILTIN_FILTERS = {"in_stock": True, "price": {"max": 300}}
BUILTIN_FACETS = ("brand", "category", "in_stock")
STOREFRONT_SORT = ("price", False)


def _pin_one_core() -> int | None:
    if not hasattr(os, "sched_setaffinity"):
        return None
    core = sorted(os.sched_getaffinity(0))[0]
    os.sched_setaffinity(0, {core})
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    return core


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
    parser.add_argument("--baseline-python", help="interpreter of the checkout to compare plain search with")
    parser.add_argument("--query-limit", type=int)
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
    if args.plain_only:  # the baseline's side: print its plain-search figures as JSON
        _pin_one_core()
        print(json.dumps(measure_plain(args.plain_only, queries)))
        return 0
    sizes = [int(size) for size in args.sizes.split(",")]
    types = [kind or None for kind in args.index_types.split(",")]
    types += [None] * (len(sizes) - len(types))
    core = _pin_one_core()
    encoder = _encoder()
    products = load_base_products()
    result: dict[str, Any] = {
        "name": "storefront",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.bench_storefront " + " ".join(argv if argv is not None else sys.argv[1:]),
        "core": core,
        "storefront_query": {
            "filters": STOREFRONT_FILTERS,
            "facets": list(STOREFRONT_FACETS),
            "sort": "price:asc",
            "offset": 10,
            "k": 10,
        },
        "queries": len(queries),
        "sizes": {},
    }
    for size, index_type in zip(sizes, types):
        started = time.perf_counter()
        given = dict(item.split("=", 1) for item in args.index_root)
        root = (
            Path(given[str(size)])
            if str(size) in given
            else prepare_index(size, index_type, args.work_dir, encoder, products)
        )
        build_seconds = round(time.perf_counter() - started, 1)
        entry: dict[str, Any] = {
            "index_root": str(root),
            "recipe": json.loads((root / "bench-catalogue.json").read_text()),
            "build_or_reuse_seconds": build_seconds,
            "loadavg_before": os.getloadavg(),
        }
        if args.baseline_python and size == sizes[0]:
            entry["plain_before_after"] = _before_after(args.baseline_python, root, queries)
        entry.update(measure_both(root, queries))
        entry["loadavg_after"] = os.getloadavg()
        result["sizes"][str(size)] = entry
        log.info("%d items: %s", size, json.dumps(entry))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")  # each size as soon as it is done
    print(args.out)
    return 0


def _before_after(baseline_python: str, root: Path, queries: list[str]) -> dict[str, Any]:
    """Plain search by the baseline's code and by this code on one index, alternating blocks."""
    blocks: dict[str, list] = {"before": [], "after": []}
    command = [baseline_python, "-m", "benchmarks.bench_storefront", "--plain-only", str(root)]
    if len(queries) != 480:
        command += ["--query-limit", str(len(queries))]
    for _ in range(3):
        output = subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True, text=True).stdout
        blocks["before"].append(json.loads(output.strip().splitlines()[-1]))
        blocks["after"].append(measure_plain(root, queries))
    summary: dict[str, Any] = {"baseline_python": baseline_python, "blocks": blocks, "loadavg": os.getloadavg()}
    for side in ("before", "after"):
        for clock in ("cpu", "wall"):
            for stat in ("p50", "p99"):
                summary[f"{side}_{clock}_{stat}_median"] = float(np.median([b[clock][stat] for b in blocks[side]]))
    return summary


if __name__ == "__main__":
    sys.exit(main())
