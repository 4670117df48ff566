"""Beyond one machine: event ingestion and change-log writes on SQLite and PostgreSQL, the Ray build's speed-up.

Usage::

    python -m benchmarks.bench_scale [--events 200000] [--texts 16384] [--out benchmarks/results/scale.json]

* **Ingestion**: ``--clients`` threads each append batches of ``--batch`` new events to the store
  (the call ``POST /events`` makes once a request is validated), for the embedded SQLite store
  and for a PostgreSQL server started here (Debian's binaries, the tests' recipe, ``fsync`` on).
  Events per second, acknowledged = durably committed.
* **Change log** (key ``change_log``): ``--clients`` threads submit price patches to the live
  catalogue's change log (the call ``PATCH /items/{id}`` and ``POST /items/batch`` make once a
  change is validated), one change per submission (a PATCH request) and ``--batch`` per
  submission (a batch request), on the embedded SQLite log and on PostgreSQL. Changes per
  second, acknowledged = durably committed.
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
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from aisle.service.events.store import EventStore, StoredEvent
from benchmarks.data import load_base_products
from benchmarks.machine import describe_machine

REPO = Path(__file__).resolve().parent.parent
ID_CHECK = "bench"


def _run_clients(client: Callable[[int], None], clients: int) -> float:
    """Runs ``client(0..clients-1)`` in as many threads at once; the seconds until all are done."""
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


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

    seconds = _run_clients(client, clients)
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


def _write_changes(log: Any, changes: int, clients: int, batch: int) -> dict[str, Any]:
    from aisle.index.changes import Change, Existence

    log.start()
    exists = Existence(0, lambda item_id: True)
    per_client = changes // clients

    def client(number: int) -> None:
        for start in range(0, per_client, batch):
            log.submit(
                [
                    Change("patch", f"p-{(start + i) % 997}", fields={"price": float(number * per_client + start + i)})
                    for i in range(min(batch, per_client - start))
                ],
                exists,
            )

    seconds = _run_clients(client, clients)
    stored = log.count()
    log.close()
    return {"changes": stored, "seconds": round(seconds, 3), "changes_per_s": round(stored / seconds, 1)}


def change_log(single: int, batched: int, clients: int, batch: int) -> dict[str, Any]:
    """Change-log writes per second, one change per submission and ``batch`` per submission."""
    from aisle.index.changes import open_change_log
    from benchmarks.postgres_server import fresh_database, running_server

    result: dict[str, Any] = {"clients": clients, "batch": batch}
    for label, count, size in (("one_per_request", single, 1), (f"{batch}_per_request", batched, batch)):
        with tempfile.TemporaryDirectory() as folder:
            sqlite = _write_changes(open_change_log(Path(folder)), count, clients, size)
        with running_server() as server:
            url = fresh_database(server, "bench_changes")
            postgres = _write_changes(open_change_log(Path(), url), count, clients, size)
        result[label] = {"sqlite": sqlite, "postgres": postgres}
    return result


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


#: The JSON key of each section ``--skip`` names.
KEYS = {"ingestion": "ingestion", "changes": "change_log", "ray": "ray_build", "startup": "startup"}


def _texts(count: int) -> list[str]:
    """``count`` real product texts (the base catalogue's, repeated)."""
    titles = [product.embedding_text() for product in load_base_products()]
    return (titles * (count // len(titles) + 1))[:count]


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
    parser.add_argument("--changes", type=int, default=4_000, help="change-log writes, one per submission")
    parser.add_argument("--batched-changes", type=int, default=100_000, help="change-log writes in batches")
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
    parser.add_argument("--skip", default="", help="comma-separated: ingestion, changes, ray, startup")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "scale.json")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    command = "python -m benchmarks.bench_scale " + " ".join(sys.argv[1:])
    machine = describe_machine(REPO)
    # A partial run (--skip) keeps the other sections, and the top-level command, machine and load
    # they were measured with, from the previous file; the sections it runs record their own.
    previous = json.loads(args.out.read_text()) if skip and args.out.is_file() else {}
    result: dict[str, Any] = previous or {"command": command, "machine": machine, "load_before": os.getloadavg()}
    sections: dict[str, Callable[[], dict[str, Any]]] = {
        "ingestion": lambda: ingestion(args.events, args.clients, args.batch),
        "changes": lambda: change_log(args.changes, args.batched_changes, args.clients, args.batch),
        "ray": lambda: ray_build(_texts(args.texts)),
        "startup": lambda: startup(args),
    }
    for name, measure in sections.items():
        if name in skip:
            continue
        load_before = os.getloadavg()
        section = measure()
        if previous or name == "startup":  # the top-level command and load are another run's
            section.update(command=command, aisle_revision=machine.get("aisle_revision"), load_before=load_before)
            section["load_after"] = os.getloadavg()
        if name == "startup":
            # One entry per log size, so that runs at several sizes show how start-up scales.
            # Runs of one size on different stores (--startup-backends) add up to one entry.
            size = f"{args.startup_events}_events_{args.startup_users}_users"
            for backend in args.startup_backends.split(","):
                section[backend]["command"] = command
            result.setdefault(KEYS[name], {}).setdefault(size, {}).update(section)
        else:
            result[KEYS[name]] = section
    if not previous:
        result["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
