"""A concurrent ``/health``'s latency while hostile requests hit the same server (issue 24).

Starts ``aisle serve`` (one worker, the real encoder) on an index built from ``demo/catalog.csv``,
then, for each hostile request, keeps one connection sending it back to back while a separate
process probes ``GET /health`` every 20 ms on its own keep-alive connection. A request that
blocks the event loop shows up directly in the probe's latency. Every hostile request stays
within the limits (under the 1 MB body cap); some are refused, some are served.

    python benchmarks/hostile_latency.py --out benchmarks/results/hostile_latency.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.data import REPO_ROOT
from benchmarks.machine import describe_machine
from benchmarks.server import ServerConfig, cpu_seconds, running_server

KEY = "bench-key"
PROBE_INTERVAL_S = 0.02


def hostile_requests() -> dict[str, tuple[str, str, bytes, dict[str, str]]]:
    """Name → (method, path, body, headers): the worst requests built within the limits."""
    json_headers = {"Content-Type": "application/json"}
    keyed = {**json_headers, "X-API-Key": KEY}
    now = time.time()
    events = [
        {
            "event_id": f"hostile-{n}-{'x' * 200}",
            "user_id": f"user-{n}-{'u' * 200}",
            "session_id": f"session-{n}",
            "item_id": f"P{n % 300:04d}",
            "type": "purchase",
            "timestamp": now - n,
        }
        for n in range(1000)
    ]
    rich_search = {
        "query": ("espresso grinder knife " * 23)[:512],
        "k": 100,
        "explain": True,
        "exclude_ids": [f"missing-{n}" for n in range(1000)],
        "rules": {
            "boosts": {
                "brands": {f"brand-{n}": 0.1 for n in range(200)},
                "categories": {f"cat-{n}": 0.1 for n in range(200)},
            },
            "diversity": {"lambda": 0.01},
            "exploration": {"share": 0.5, "pool": 1000},
            "caps": [{"field": "brand", "max": 1, "within": 1000}] * 20,
            "pins": [{"item_id": f"P{n:04d}", "position": n + 1} for n in range(100)],
        },
    }
    return {
        "brand list of 300k numbers (refused before parsing)": (
            "POST",
            "/search",
            ('{"query":"x","filters":{"brand":[' + ",".join(["1"] * 300_000) + "]}}").encode(),
            json_headers,
        ),
        "200k empty events (refused before parsing)": (
            "POST",
            "/events",
            ('{"events":[' + ",".join(["{}"] * 200_000) + "]}").encode(),
            keyed,
        ),
        "9.9k floats in a search (largest parse allowed)": (
            "POST",
            "/search",
            ('{"query":"x","filters":{"brand":[' + ",".join(["1.5e300"] * 9_900) + "]}}").encode(),
            json_headers,
        ),
        "23.9k floats to /events without the key (refused before the body is read)": (
            "POST",
            "/events",
            ('{"events":[' + ",".join(["1.5e300"] * 23_900) + "]}").encode(),
            json_headers,
        ),
        "23.9k floats to /events with the key (largest parse allowed to the shop's backend)": (
            "POST",
            "/events",
            ('{"events":[' + ",".join(["1.5e300"] * 23_900) + "]}").encode(),
            keyed,
        ),
        "9.9k-deep nesting": ("POST", "/search", ("[" * 4_950 + "]" * 4_950).encode(), json_headers),
        "1000 purchase events of new users (accepted)": (
            "POST",
            "/events",
            json.dumps({"events": events}).encode(),
            keyed,
        ),
        "richest search (k=100, explain, 1000 exclusions, 400 boosts, 100 pins)": (
            "POST",
            "/search",
            json.dumps(rich_search).encode(),
            json_headers,
        ),
    }


def probe(host: str, port: int, seconds: float, results: multiprocessing.Queue) -> None:
    """Process: ``GET /health`` every 20 ms on one keep-alive connection; sends the latencies (ms)."""
    connection = http.client.HTTPConnection(host, port, timeout=10)
    latencies = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        connection.request("GET", "/health")
        response = connection.getresponse()
        response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status != 200:
            latencies[-1] = float("inf")
        time.sleep(PROBE_INTERVAL_S)
    connection.close()
    results.put(latencies)


def hammer(host: str, port: int, request: tuple, stop: threading.Event, outcomes: list) -> None:
    method, path, body, headers = request
    connection = http.client.HTTPConnection(host, port, timeout=60)
    while not stop.is_set():
        started = time.perf_counter()
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            outcomes.append((response.status, (time.perf_counter() - started) * 1000))
            if response.getheader("connection", "").lower() == "close":
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=60)
        except (OSError, http.client.HTTPException):
            outcomes.append((-1, (time.perf_counter() - started) * 1000))
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=60)
    connection.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def measure(
    host: str, port: int, request: tuple | None, seconds: float, senders: int, server_pid: int, probe_cpu_ms: float
) -> dict:
    """One run; ``probe_cpu_ms`` (the server's CPU per /health probe, from the baseline) is
    subtracted to give the server's CPU per hostile request."""
    queue: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()
    prober = multiprocessing.get_context("spawn").Process(target=probe, args=(host, port, seconds, queue))
    stop = threading.Event()
    outcomes: list = []
    threads = [
        threading.Thread(target=hammer, args=(host, port, request, stop, outcomes), daemon=True)
        for _ in range(senders if request is not None else 0)
    ]
    cpu_before = cpu_seconds(server_pid)
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # the hostile load is running before the first probe
    prober.start()
    latencies = queue.get(timeout=seconds + 60)
    prober.join()
    stop.set()
    for thread in threads:
        thread.join(120)
    cpu_ms = ((cpu_seconds(server_pid) or 0.0) - (cpu_before or 0.0)) * 1000
    statuses: dict[str, int] = {}
    for status, _ in outcomes:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    return {
        "health_probes": len(latencies),
        "health_ms": {
            "p50": percentile(latencies, 0.5),
            "p99": percentile(latencies, 0.99),
            "max": round(max(latencies), 2),
        },
        "hostile_requests_sent": len(outcomes),
        "hostile_statuses": statuses,
        "hostile_ms_p50": percentile([ms for _, ms in outcomes], 0.5) if outcomes else None,
        # CPU the server spent per request: a bound on how long one request can hold the event
        # loop on an idle core, whatever the machine's load does to wall-clock latency.
        "server_cpu_ms": round(cpu_ms, 1),
        "server_cpu_ms_per_hostile_request": (
            round(max(0.0, cpu_ms - probe_cpu_ms * len(latencies)) / len(outcomes), 2) if outcomes else None
        ),
    }


def build_index(root: Path) -> Path:
    index = root / "index"
    subprocess.run(
        [sys.executable, "-m", "aisle", "build", "--catalog", str(REPO_ROOT / "demo" / "catalog.csv")]
        + ["--out", str(index), "--no-progress"],
        check=True,
        cwd=REPO_ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    return index


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="probing time per hostile request")
    parser.add_argument("--senders", type=int, default=1, help="connections sending the hostile request")
    parser.add_argument("--out", type=Path, help="write the JSON result here")
    args = parser.parse_args()
    os.environ["AISLE_API_KEY"] = KEY
    with tempfile.TemporaryDirectory(prefix="aisle-hostile-") as tmp:
        index = build_index(Path(tmp))
        config = ServerConfig(index_root=index, data_dir=Path(tmp) / "data", log_level="WARNING")
        with running_server(config, Path(tmp) / "server.log") as server:
            host, port = "127.0.0.1", int(server.url.rsplit(":", 1)[1])
            pid = server.process.pid
            baseline = measure(host, port, None, args.seconds, 0, pid, 0.0)
            probe_cpu_ms = baseline["server_cpu_ms"] / max(1, baseline["health_probes"])
            runs = {"baseline (no hostile load)": baseline}
            for name, request in hostile_requests().items():
                runs[name] = measure(host, port, request, args.seconds, args.senders, pid, probe_cpu_ms)
                print(f"{name}: {json.dumps(runs[name])}", file=sys.stderr)
    worst = max(run["health_ms"]["p99"] for run in runs.values())
    worst_cpu = max(run["server_cpu_ms_per_hostile_request"] or 0.0 for run in runs.values())
    result = {
        "benchmark": "hostile_latency",
        "what": "GET /health latency (ms) from its own process while one connection sends each hostile request back to back",
        "server": "aisle serve, 1 worker pinned to cpu 0, real encoder, demo catalogue, API key set",
        "note": "on a shared 2-core machine: wall-clock figures include waiting for a core (see loadavg); "
        "server_cpu_ms_per_hostile_request bounds how long one request can hold the event loop",
        "worst_health_p99_ms": worst,
        "baseline_health_p99_ms": runs["baseline (no hostile load)"]["health_ms"]["p99"],
        "worst_server_cpu_ms_per_hostile_request": worst_cpu,
        "runs": runs,
        "loadavg": os.getloadavg(),
        "machine": describe_machine(REPO_ROOT),
    }
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
