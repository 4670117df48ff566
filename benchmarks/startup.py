"""Replica start-up and memory with many shoppers: the start-up part of ``bench_scale``.

A shop of ``--catalogue`` products (random unit vectors: what is measured is the profile
machinery, not the model) and an event log of ``--events`` events from ``--users`` users (10%
of events anonymous, from ``--users // 4`` sessions; views, clicks, carts and purchases on
Zipf-popular items, spread over 90 days): the history is written straight into the store's
tables (``bulk_load``: minutes, not hours, for 10M events), the tail a restart replays through
the store's ``append``.

Each measurement runs in a fresh process (``python -m benchmarks.startup child ...``) so that its
peak RSS is its own:

* ``from_scratch``: no snapshot: the statistics are built from the whole log (what a first
  start, an erasure or a new index version costs); a snapshot is written at the end.
* ``from_snapshot``: after ``--tail`` more events: the snapshot plus the tail (a restart).
  Then ``--reads`` random users' profiles are requested once each (read from the log, first
  request) and again (from memory): latencies, and RSS after, for the memory per resident profile.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from aisle.embed.base import Encoder
from aisle.index.build import BuildOptions, build_version
from aisle.index.catalog import Catalog, Product
from aisle.service.events.identity import IdHasher
from aisle.service.events.store import EventStore, StoredEvent

REPO = Path(__file__).resolve().parent.parent
HASHER = IdHasher(b"bench-startup-secret-32-bytes!!!")
TYPES = ("view",) * 7 + ("click", "add_to_cart", "purchase")
DAY_S = 86400.0
START = 1_750_000_000.0


class RandomVectors(Encoder):
    """A deterministic unit vector per text (the profile machinery's cost does not depend on meaning)."""

    def __init__(self, dim: int = 384) -> None:
        self._dim = dim

    @property
    def name(self) -> str:
        return "bench-random-vectors"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return f"bench-random:{self._dim}"

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row] = np.random.default_rng(abs(hash(text)) % 2**32).normal(size=self._dim)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    def encode_documents(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        return self._encode(texts)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)


def publish_catalogue(root: Path, size: int) -> None:
    if (root / "bench-startup.json").is_file():
        return
    products = [
        Product(id=f"p{n}", title=f"product {n}", category=f"c{n % 50}", brand=f"b{n % 200}", price=5.0 + n % 300)
        for n in range(size)
    ]
    build_version(Catalog(products), root, RandomVectors(), BuildOptions(show_progress=False, index_type="flat"))
    (root / "bench-startup.json").write_text(json.dumps({"size": size}))


def _rows(events: int, users: int, catalogue: int, first: int, seed: int, prefix: str) -> Iterator[tuple]:
    """Event rows ``(event_key, user_key, session_key, item_id, type, ts, received)`` in log order."""
    rng = np.random.default_rng(seed + first)
    sessions = max(users // 4, 1)
    chunk = 100_000
    for start in range(first, first + events, chunk):
        n = min(chunk, first + events - start)
        user = rng.integers(0, users, n)
        anonymous = (rng.random(n) < 0.1).tolist()
        session = rng.integers(0, sessions, n)
        item = np.minimum(rng.zipf(1.3, n) - 1, catalogue - 1).tolist()
        kind = rng.integers(0, len(TYPES), n).tolist()
        users_hex = [f"{u:032x}" for u in user.tolist()]
        sessions_hex = [f"s{s:031x}" for s in session.tolist()]
        step = 90 * DAY_S / 10_000_000
        for i in range(n):
            yield (
                f"{prefix}{start + i}",
                None if anonymous[i] else users_hex[i],
                sessions_hex[i] if anonymous[i] else None,
                f"p{item[i]}",
                TYPES[kind[i]],
                START + (start + i) * step,
                START,
            )


def generate(
    store: EventStore, events: int, users: int, catalogue: int, first: int = 0, seed: int = 0, prefix: str = "e"
) -> float:
    """Appends events through ``store.append`` (acknowledged, as ``POST /events`` does)."""
    started = time.perf_counter()
    rows = _rows(events, users, catalogue, first, seed, prefix)
    while batch := [StoredEvent(*row) for _, row in zip(range(5000), rows)]:
        store.append(batch)
    return time.perf_counter() - started


def bulk_load(sqlite: Path, url: str | None, events: int, users: int, catalogue: int, first: int) -> float:
    """Writes a large log fast, straight into the store's own tables (opened, and so created, by
    the store itself first): SQLite in one transaction, PostgreSQL by ``COPY``. Only for building
    a benchmark's history; live events always go through ``append``."""
    started = time.perf_counter()
    rows = _rows(events, users, catalogue, first, 0, "e")
    if url is None:
        import sqlite3

        with sqlite3.connect(sqlite) as conn:
            conn.execute("PRAGMA synchronous=OFF")
            conn.executemany(
                "INSERT INTO events(event_key, user_key, session_key, item_id, type, ts, received)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        return time.perf_counter() - started
    import psycopg

    with psycopg.connect(url) as conn, conn.cursor() as cursor:
        with cursor.copy(
            "COPY aisle_events (event_key, user_key, session_key, item_id, type, ts, received) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)
    return time.perf_counter() - started


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One start in this process: attach, then optionally read profiles."""
    from aisle.service.holder import IndexHolder
    from aisle.service.personal.config import PersonalConfig
    from aisle.service.personal.profiles import ProfileService
    from aisle.service.personal.runtime import store_identity
    from aisle.service.personal.snapshot import ProfileSnapshots

    holder = IndexHolder(Path(args.index), RandomVectors())
    holder.reload()
    if args.database_url:
        from aisle.service.events.postgres import PostgresEventStore

        store: EventStore = PostgresEventStore(args.database_url, id_check=HASHER.check_value())
    else:
        store = EventStore(Path(args.sqlite), id_check=HASHER.check_value())
    before = rss_mb()
    profiles = ProfileService(
        HASHER, PersonalConfig(), store, snapshots=ProfileSnapshots(Path(args.data_dir), store_identity(store))
    )
    started = time.perf_counter()
    profiles.attach(holder.engine)
    result: dict[str, Any] = {
        "seconds": round(time.perf_counter() - started, 2),
        "restored_from_snapshot": bool(profiles.last_attach["restored"]),
        "snapshot_read_seconds": round(float(profiles.last_attach["snapshot_seconds"]), 2),
        "events_replayed": int(profiles.last_attach["replayed"]),
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(rss_mb(), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "resident": profiles.counts(),
    }
    if args.reads:
        rng = random.Random(1)
        users = [f"{rng.randrange(args.users):032x}" for _ in range(args.reads)]
        derived = profiles._derived
        assert derived is not None
        first, again = [], []
        held = rss_mb()
        for timings in (first, again):
            for key in users:
                tick = time.perf_counter()
                with profiles._lock:
                    derived.states(key, None)
                timings.append(time.perf_counter() - tick)
        grown = rss_mb() - held
        resident = min(len(set(users)), profiles.config.max_profiles)
        result["profile_reads"] = {
            "users": len(users),
            "first_read_ms_median": round(statistics.median(first) * 1000, 3),
            "first_read_ms_p95": round(sorted(first)[int(0.95 * len(first))] * 1000, 3),
            "in_memory_read_ms_median": round(statistics.median(again) * 1000, 4),
            "rss_growth_mb": round(grown, 1),
            "resident_profiles": profiles.counts()["users"],
            "kib_per_resident_profile": round(grown * 1024 / max(resident, 1), 2),
        }
        result["rss_end_mb"] = round(rss_mb(), 1)
        # The periodic snapshot's pause: events are not acknowledged while the state is copied.
        assert profiles.snapshots is not None
        tick = time.perf_counter()
        with profiles._lock:
            captured = profiles.snapshots.capture(derived)
        result["snapshot_lock_held_s"] = round(time.perf_counter() - tick, 3)
        tick = time.perf_counter()
        profiles.snapshots.write(captured, derived.erasures)
        result["snapshot_pack_and_write_s"] = round(time.perf_counter() - tick, 3)
    store.close()
    return result


def run_child(common: list[str], extra: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.startup", "child", *common, *extra],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def open_store(sqlite: Path, url: str | None) -> EventStore:
    if url is None:
        return EventStore(sqlite, id_check=HASHER.check_value(), max_batch_events=50_000)
    from aisle.service.events.postgres import PostgresEventStore

    return PostgresEventStore(url, id_check=HASHER.check_value(), max_batch_events=50_000)


def measure(
    backend: str, work: Path, events: int, users: int, catalogue: int, tail: int, reads: int, url: str | None
) -> dict[str, Any]:
    """Generates the log (when not there yet), then times a start from scratch and from a snapshot."""
    index = work / "index"
    publish_catalogue(index, catalogue)
    data_dir = work / f"data-{backend}"
    data_dir.mkdir(parents=True, exist_ok=True)
    sqlite = work / f"events-{events}-{users}.sqlite3"
    store = open_store(sqlite, url)
    out: dict[str, Any] = {}
    stored = store.count()
    store.close()
    if stored < events:
        seconds = bulk_load(sqlite, url, events - stored, users, catalogue, first=stored)
        out["generated"] = {"events": events - stored, "seconds": round(seconds, 1), "how": "bulk into the tables"}
    common = ["--index", str(index), "--data-dir", str(data_dir), "--users", str(users)]
    common += ["--database-url", url] if url else ["--sqlite", str(sqlite)]
    for stale in data_dir.glob("profiles-*"):
        stale.unlink()
    out["from_scratch"] = run_child(common, [])
    store = open_store(sqlite, url)
    store.start()
    tail_s = generate(
        store, tail, users, catalogue, first=events, seed=int(time.time()), prefix=f"tail{time.time_ns()}-"
    )
    out["stored_events"] = store.count()
    store.close()
    out["from_snapshot"] = run_child(common, ["--reads", str(reads)])
    out["from_snapshot"]["tail_events"] = tail
    out["from_snapshot"]["tail_appended_per_s"] = round(tail / tail_s)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["child"])
    parser.add_argument("--index", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--sqlite")
    parser.add_argument("--database-url")
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--reads", type=int, default=0)
    args = parser.parse_args(argv)
    print(json.dumps(child(args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
