"""``GET /users/{id}/recommendations`` over HTTP with a recommendation setting off and on, in one run.

Usage::

    python -m benchmarks.bench_recommend [--sizes 100000,1000000] [--index-types ,ivf-pq]
        [--setting AISLE_RECOMMEND_LEXICAL_WEIGHT=0,0.3] [--users 50] [--rounds 2]
        [--out benchmarks/results/recommend_latency.json]

The catalogue is ``bench_storefront``'s (published once under ``--work-dir`` and re-used). Each
value of the setting gets a fresh one-worker server pinned to one core, with the same users: each
bought 10 random products on 10 different days. After a warm-up, every user asks for ``k=10``
four times; the values alternate over ``--rounds`` rounds so that a drift of the machine's load
falls on both. Reported: p50 and p99 per value and round, and the ratio of the p50s per round.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from aisle.index.storage import atomic_write_json
from benchmarks.bench_storefront import _encoder, prepare_index
from benchmarks.data import REPO_ROOT, load_base_products
from benchmarks.machine import describe_machine
from benchmarks.server import ServerConfig, running_server

#: Words that reach every part of the mixed catalogue, to collect product ids through /search.
SEED_QUERIES = ("tape", "shirt", "glove", "drill", "cable", "shoe", "lamp", "book", "watch", "bag", "screw", "filter")
HISTORY = 10
REPEATS = 4


def product_ids(client: httpx.Client) -> list[str]:
    found: set[str] = set()
    for query in SEED_QUERIES:
        response = client.post("/search", json={"query": query, "k": 100})
        response.raise_for_status()
        found.update(hit["id"] for hit in response.json()["results"])
    return sorted(found)


def one_server(
    root: Path, work_dir: Path, name: str, value: str, users: int, ids: list[str] | None
) -> tuple[dict, list]:
    """Latency of ``users × REPEATS`` recommendation requests with ``name=value``; the ids used."""
    data_dir = work_dir / f"recommend-data-{name}-{value}-{time.time_ns()}"
    config = ServerConfig(root, data_dir, cpus=(0,), log_level="WARNING", environment=((name, value),))
    with running_server(config, work_dir / "recommend-server.log") as server:
        client = httpx.Client(base_url=server.url, timeout=60)
        ids = ids or product_ids(client)
        rng = random.Random(3)
        now = time.time()
        events = [
            {
                "event_id": f"u{user}-{position}",
                "user_id": f"u{user}",
                "item_id": item,
                "type": "purchase",
                "timestamp": now - 86_400 * (HISTORY - position),
            }
            for user in range(users)
            for position, item in enumerate(rng.sample(ids, HISTORY))
        ]
        client.post("/events", json={"events": events}).raise_for_status()
        for user in range(min(users, 5)):  # warm-up
            client.get(f"/users/u{user}/recommendations", params={"k": 10}).raise_for_status()
        times = []
        for _ in range(REPEATS):
            for user in range(users):
                started = time.perf_counter()
                response = client.get(f"/users/u{user}/recommendations", params={"k": 10})
                times.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 2),
        "p99_ms": round(times[max(0, int(0.99 * len(times)) - 1)], 2),
        "n": len(times),
        "load_average": os.getloadavg(),
    }, ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_recommend", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--index-types", default=",ivf-pq", help="index type per size (empty: Aisle's choice)")
    parser.add_argument("--setting", default="AISLE_RECOMMEND_LEXICAL_WEIGHT=0,0.3", help="NAME=OFF,ON")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / ".cache" / "aisle-bench")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "recommend_latency.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("AISLE_CACHE_DIR", str(REPO_ROOT / ".cache" / "aisle"))
    name, _, values_text = args.setting.partition("=")
    values = values_text.split(",")
    if not name.startswith("AISLE_") or len(values) < 2:
        parser.error("--setting takes NAME=VALUE,VALUE with an AISLE_ name")
    sizes = [int(size) for size in args.sizes.split(",")]
    types = [kind or None for kind in args.index_types.split(",")]
    types += [None] * (len(sizes) - len(types))
    encoder = _encoder()
    products = load_base_products()
    result: dict[str, Any] = {
        "name": "recommend_latency",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.bench_recommend " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": describe_machine(REPO_ROOT),
        "setting": name,
        "request": f"GET /users/{{id}}/recommendations?k=10, {args.users} users with {HISTORY} purchases each",
        "sizes": {},
    }
    for size, index_type in zip(sizes, types):
        root = prepare_index(size, index_type, args.work_dir, encoder, products)
        rounds: list[dict[str, Any]] = []
        ids: list[str] | None = None
        for _ in range(args.rounds):
            measured: dict[str, Any] = {}
            for value in values:
                measured[value], ids = one_server(root, args.work_dir, name, value, args.users, ids)
                print(size, name, value, measured[value], flush=True)
            measured["p50_ratio_last_to_first"] = round(
                measured[values[-1]]["p50_ms"] / measured[values[0]]["p50_ms"], 3
            )
            rounds.append(measured)
        result["sizes"][str(size)] = {"index_type": index_type or "Aisle's choice", "rounds": rounds}
        atomic_write_json(args.out, result)
    print(
        json.dumps(
            {size: [r["p50_ratio_last_to_first"] for r in entry["rounds"]] for size, entry in result["sizes"].items()}
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
