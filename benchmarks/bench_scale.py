"""Beyond one machine: event ingestion on SQLite and PostgreSQL, and the Ray build's speed-up.

Usage::

    python -m benchmarks.bench_scale [--events 200000] [--texts 16384] [--out benchmarks/results/scale.json]

* **Ingestion**: ``--clients`` threads each append batches of ``--batch`` new events to the store
  (the call ``POST /events`` makes once a request is validated), for the embedded SQLite store
  and for a PostgreSQL server started here (Debian's binaries, the tests' recipe, ``fsync`` on).
  Events per second, acknowledged = durably committed.
* **Ray build**: the same real product titles encoded by one process (the bundled int8 MiniLM,
  one thread) and by ``RayBuild`` on a local cluster with one actor per core; the speed-up, the
  per-core rate, and from them the projected time for 100M products on 64 cores (assuming the
  measured per-actor efficiency holds on cores like these).

* **Start-up** (``benchmarks.startup``): a replica's start-up time and memory over a log of
  ``--startup-events`` events from ``--startup-users`` users, from scratch and from a snapshot,
  and the cost of reading a profile on demand, on both stores.

Every figure comes from one run of this command; the JSON records the machine and its load.
Sections skipped with ``--skip`` keep their figures from the previous run in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from aisle.service.events.store import EventStore, StoredEvent
from benchmarks.data import load_base_products
from benchmarks.machine import describe_machine

REPO = Path(__file__).resolve().parent.parent
ID_CHECK = "bench"


def _ingest(store: EventStore, events: int, clients: int, batch: int) -> dict[str, Any]:
    store.start()
    per_client = events // clients

    def client(number: int) -> None:
        for start in range(0, per_client, batch):
            store.append(
                [
                    StoredEvent(
                        f"c{number}-{start + i}", f"u{(start + i) % 5000}", None, f"i{i % 997}", "view", 1e9, 1e9
                    )
                    for i in range(batch)
                ]
            )

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    stored = store.count()
    store.close()
    return {"events": stored, "seconds": round(seconds, 3), "events_per_s": round(stored / seconds, 1)}


def ingestion(events: int, clients: int, batch: int) -> dict[str, Any]:
    from aisle.service.events.postgres import PostgresEventStore
    from benchmarks.postgres_server import running_server

    with tempfile.TemporaryDirectory() as folder:
        sqlite = _ingest(EventStore(Path(folder) / "events.sqlite3", id_check=ID_CHECK), events, clients, batch)
    with running_server() as url:
        postgres = _ingest(PostgresEventStore(url, id_check=ID_CHECK), events, clients, batch)
    return {"clients": clients, "batch": batch, "sqlite": sqlite, "postgres": postgres}


def ray_build(texts: list[str]) -> dict[str, Any]:
    from aisle.embed import EncoderConfig, create_encoder
    from aisle.index.distributed import RayBuild

    config = EncoderConfig(threads=1)
    encoder = create_encoder(config)
    started = time.perf_counter()
    alone = encoder.encode_documents(texts)
    alone_s = time.perf_counter() - started
    import ray

    cores = os.cpu_count() or 1
    started = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, configure_logging=False)
    cluster_start_s = time.perf_counter() - started
    cluster = RayBuild(address=None, actors=cores, encoder_factory=partial(create_encoder, config, export=False))
    try:
        started = time.perf_counter()
        distributed = cluster.encode_documents(texts)
        ray_s = time.perf_counter() - started  # the actors' start and model load included, the cluster's not
    finally:
        ray.shutdown()
    per_core = len(texts) / alone_s
    efficiency = (alone_s / ray_s) / cores
    projected_s = 100_000_000 / (per_core * 64 * efficiency)
    return {
        "texts": len(texts),
        "actors": cores,
        "one_process_s": round(alone_s, 2),
        "ray_s": round(ray_s, 2),
        "cluster_start_s": round(cluster_start_s, 2),
        "speedup": round(alone_s / ray_s, 2),
        "per_core_texts_per_s": round(per_core, 1),
        "parallel_efficiency": round(efficiency, 3),
        "same_vectors": bool(np.array_equal(alone, distributed)),
        "projected_100m_on_64_cores_h": round(projected_s / 3600, 2),
    }


def startup(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.postgres_server import running_server
    from benchmarks.startup import measure

    out: dict[str, Any] = {
        "events": args.startup_events,
        "users": args.startup_users,
        "catalogue": args.startup_catalogue,
        "max_profiles": 100_000,
    }
    work = args.work_dir
    for backend in args.startup_backends.split(","):
        sizes = (args.startup_events, args.startup_users, args.startup_catalogue, args.startup_tail, args.startup_reads)
        if backend == "postgres":
            with running_server() as url:
                out[backend] = measure(backend, work, *sizes, url)
        else:
            out[backend] = measure(backend, work, *sizes, None)
        print(json.dumps({backend: out[backend]}), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--texts", type=int, default=16_384)
    parser.add_argument("--startup-events", type=int, default=10_000_000)
    parser.add_argument("--startup-users", type=int, default=1_000_000)
    parser.add_argument("--startup-catalogue", type=int, default=10_000)
    parser.add_argument("--startup-tail", type=int, default=10_000)
    parser.add_argument("--startup-reads", type=int, default=20_000)
    parser.add_argument("--startup-backends", default="sqlite,postgres")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "aisle-bench-startup",
        help="logs kept for reruns",
    )
    parser.add_argument("--skip", default="", help="comma-separated: ingestion, ray, startup")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "scale.json")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    result: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
    command = "python -m benchmarks.bench_scale " + " ".join(sys.argv[1:])
    result["command"] = command
    result["machine"] = describe_machine(REPO)
    result["load_before"] = os.getloadavg()
    if "ingestion" not in skip:
        result["ingestion"] = ingestion(args.events, args.clients, args.batch)
    if "ray" not in skip:
        titles = [product.embedding_text() for product in load_base_products()]
        texts = (titles * (args.texts // len(titles) + 1))[: args.texts]
        result["ray_build"] = ray_build(texts)
    if "startup" not in skip:
        # One entry per log size, so that runs at several sizes show how start-up scales.
        load_before = os.getloadavg()
        size = f"{args.startup_events}_events_{args.startup_users}_users"
        runs = result.setdefault("startup", {})
        runs[size] = startup(args) | {"command": command, "load_before": load_before}
        runs[size]["load_after"] = os.getloadavg()
    result["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
