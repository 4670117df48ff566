"""The steps of ``benchmarks.run``: catalogue, HTTP suites, stages, peers, then the outputs.

Each step records its result or its error in the result dict and the run goes on, so that a part
of Aisle that is not ready (or a peer that breaks) costs only its own section.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import shutil
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from aisle.index.storage import atomic_write_bytes
from benchmarks.catalogue import (
    CatalogueRecipe,
    encode_base_products,
    publish_catalogue,
    published_version,
    synthesize,
)
from benchmarks.data import BaseProduct
from benchmarks.http_bench import LoadLevels, run_http_suite
from benchmarks.measure import pinned
from benchmarks.server import ServerConfig, running_server

log = logging.getLogger(__name__)


def _guarded(section: str, step: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Runs one step; an exception becomes ``{"error": ...}`` for that section only."""
    tick = time.perf_counter()
    try:
        outcome = step()
    except Exception as exc:  # the other sections are still worth reporting
        log.error("%s failed: %s", section, exc)
        return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=4)}
    outcome["seconds"] = round(time.perf_counter() - tick, 1)
    return outcome


def cpu_plan() -> dict[str, set[int] | None]:
    """Server on the first usable CPU, load generator on the second (if there is one)."""
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    return {"server": {usable[0]}, "client": {usable[1]} if len(usable) > 1 else None, "inprocess": {usable[0]}}


def make_encoder(threads: int):
    """The encoder the server uses with these settings (same model, backend and fingerprint)."""
    from aisle.embed import create_encoder, prepare_model
    from aisle.settings import AisleSettings

    config = AisleSettings(threads=threads).encoder_config()
    prepare_model(config)
    return create_encoder(config)


def prepare_catalogue(args: argparse.Namespace, encoder, products: Sequence[BaseProduct]) -> tuple[Path, dict]:
    """The published index for this recipe: re-used when it exists, else built now."""
    recipe = CatalogueRecipe(
        size=args.size,
        base_products=len(products),
        sigma=args.sigma,
        seed=args.seed,
        fingerprint=encoder.fingerprint,
        index_type=args.index_type,
    )
    # One directory per index type asked for, so that runs with different types keep theirs.
    suffix = f"-{args.index_type}" if args.index_type else ""
    index_root = args.work_dir / f"index-{args.size}-{len(products)}{suffix}"
    path = published_version(index_root, recipe)
    built = path is None
    if built:
        base_vectors = encode_base_products(encoder, products, args.work_dir / "vectors")
        catalog, vectors = synthesize(products, base_vectors, args.size, args.sigma, args.seed)
        path = publish_catalogue(catalog, vectors, encoder, index_root, recipe)
        del catalog, vectors
        gc.collect()
    recipe_file = json.loads((index_root / "bench-catalogue.json").read_text())
    manifest = json.loads((path / "manifest.json").read_text())
    sources = sorted({p.source for p in products})
    return index_root, {
        "recipe": recipe_file,
        "version": path.name,
        "built_now": built,
        "index": manifest.get("spaces", {}).get("text", {}).get("index"),
        "description": (
            f"{args.size:,} items made from {len(products):,} real product listings ({', '.join(sources)}): "
            f"variant 0 of each is the listing with its real all-MiniLM-L6-v2 vector, the others get a colour/size "
            f"title suffix and the vector normalise(x + {args.sigma}·N(0, I)); index "
            f"{manifest.get('spaces', {}).get('text', {}).get('index')}; queries: "
            f"{args.query_limit or 480} real WANDS queries."
        ),
    }


def http_suite(
    args: argparse.Namespace,
    index_root: Path,
    queries: Sequence[str],
    ids: Sequence[str],
    levels: LoadLevels,
    *,
    workers: int,
    scenarios: Sequence[str],
) -> dict[str, Any]:
    cpus = cpu_plan()
    tag = f"{workers}w-{int(time.time())}"
    data_dir = args.work_dir / "server-data" / tag
    config = ServerConfig(
        index_root=index_root,
        data_dir=data_dir,
        workers=workers,
        cpus=tuple(cpus["server"]) if workers == 1 else None,
        threads=args.threads,
        log_level=args.server_log_level,
    )
    plans = args.work_dir / "plans" / tag
    plans.mkdir(parents=True, exist_ok=True)
    try:
        with running_server(config, args.work_dir / "logs" / f"server-{tag}.log") as server:
            outcome = run_http_suite(
                server,
                plans,
                queries,
                ids,
                levels,
                scenarios=scenarios,
                client_cpus=cpus["client"] if workers == 1 else None,
                seed=args.seed,
            )
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)  # events written by the run; nothing to keep
        shutil.rmtree(plans, ignore_errors=True)
    return {
        **outcome,
        "server": config.describe(),
        "client_cpus": sorted(cpus["client"]) if workers == 1 and cpus["client"] else None,
    }


def run_benchmark(
    args: argparse.Namespace,
    result: dict[str, Any],
    products: Sequence[BaseProduct],
    queries: Sequence[str],
    levels: LoadLevels,
    name: str,
) -> None:
    """Fills ``result`` with every section the arguments ask for."""
    cpus = cpu_plan()
    result["settings"] = {
        "size": args.size,
        "threads": args.threads,
        "queries": len(queries),
        "k": 10,
        "server_cpus": sorted(cpus["server"]),
        "client_cpus": sorted(cpus["client"]) if cpus["client"] else None,
        "inprocess_cpus": sorted(cpus["inprocess"]),
        "skip": list(args.skip),
    }
    encoder = make_encoder(args.threads)
    result["encoder"] = {"name": encoder.name, "fingerprint": encoder.fingerprint, "dim": encoder.dim}
    index_root, result["catalogue"] = prepare_catalogue(args, encoder, products)

    from aisle.service.app import create_holder
    from aisle.service.settings import ServiceSettings

    settings = ServiceSettings(index_dir=index_root, threads=args.threads, verify_checksums=False)
    holder = create_holder(settings, lambda _settings: encoder)
    engine = holder.engine
    ids = list(engine.index.items.ids)
    result["http"] = {}
    if "http" not in args.skip:
        result["http"]["one_worker"] = _guarded(
            "http (1 worker)",
            lambda: http_suite(args, index_root, queries, ids, levels, workers=1, scenarios=args.scenarios),
        )
    if "two-workers" not in args.skip:
        result["http"]["two_workers"] = _guarded(
            "http (2 workers)",
            lambda: http_suite(args, index_root, queries, ids, levels, workers=2, scenarios=("search",)),
        )
    if "stages" not in args.skip:
        from benchmarks.stages import measure_stages

        def stages() -> dict[str, Any]:
            with pinned(cpus["inprocess"]):
                return measure_stages(engine, queries)

        result["stages"] = _guarded("stages", stages)
    if "peers" not in args.skip:
        from benchmarks.compare import compare_peers

        result["peers"] = _guarded(
            "peers",
            lambda: compare_peers(
                engine.index,
                encoder,
                queries,
                peers=args.peers,
                encodings=args.peer_encodings,
                threads=args.threads,
                cpus=cpus["inprocess"],
                max_peer_items=args.max_peer_items,
                peer_seconds=args.peer_seconds,
                candidates=settings.candidates,
            ),
        )


def publish_results(result: dict[str, Any], out: Path, name: str) -> list[Path]:
    """Writes ``<name>.json``, the plots and ``SUMMARY.md``; returns the paths written."""
    from benchmarks.report import write_plots
    from benchmarks.summary import write_summary
    from benchmarks.targets import evaluate_targets

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result["targets"] = evaluate_targets(result)
    result["plots"] = write_plots(result, out, name)
    json_path = out / f"{name}.json"
    # Not sort_keys: stage and scenario order is meaningful to readers.
    atomic_write_bytes(json_path, (json.dumps(result, indent=2, default=str) + "\n").encode())
    return [json_path, *(out / plot for plot in result["plots"]), write_summary(out)]
