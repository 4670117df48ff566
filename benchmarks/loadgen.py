"""A small HTTP/1.1 load generator, run as its own process next to the server.

Two modes, both bounded by a request count and a time limit, over keep-alive connections to a
loopback address:

* closed loop: ``concurrency`` clients, each sending its next request when the last one answered;
* open loop: requests *scheduled* at a fixed rate whatever the server does, each latency measured
  from its scheduled send time, so a stalled server shows up as queueing delay instead of fewer
  samples (no coordinated omission).

It speaks raw HTTP over asyncio streams instead of using an HTTP client library: a library costs
about a millisecond of client CPU per request, which would be measured as server latency.

Usage::

    python -m benchmarks.loadgen --url http://127.0.0.1:8000 --requests plan.jsonl \\
        --mode closed --concurrency 4 --max-requests 2000 --max-seconds 20

``plan.jsonl`` holds one ``{"method", "path", "body"}`` object per line; requests are sent in
order, cycling unless ``--no-cycle`` (for requests that must be unique, such as events). The
result is one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Outcome:
    """What a run observed: latencies of answered requests and the failures."""

    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    started: float = 0.0
    finished: float = 0.0


def encode_request(method: str, path: str, body: object | None, host: str) -> bytes:
    """One HTTP/1.1 keep-alive request as bytes."""
    payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n"
    if body is not None:
        head += "Content-Type: application/json\r\n"
    head += f"Content-Length: {len(payload)}\r\n\r\n"
    return head.encode("latin-1") + payload


class Connection:
    """One keep-alive connection; reconnects when the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def send(self, raw: bytes) -> int:
        """Sends one request and reads its whole response; returns the status code."""
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        self._writer.write(raw)
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        if "content-length" in headers:
            await self._reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while size := int((await self._reader.readuntil(b"\r\n")).strip(), 16):
                await self._reader.readexactly(size + 2)
            await self._reader.readuntil(b"\r\n")
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


async def _timed(connection: Connection, raw: bytes, since: float, outcome: Outcome) -> None:
    try:
        status = await connection.send(raw)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
        connection.close()
        outcome.failures[type(exc).__name__] += 1
        return
    outcome.latencies_s.append(time.perf_counter() - since)
    outcome.statuses[status] += 1


async def closed_loop(
    host: str, port: int, requests: Iterator[bytes], concurrency: int, max_requests: int, max_seconds: float
) -> Outcome:
    """``concurrency`` clients back to back until ``max_requests`` or ``max_seconds``."""
    outcome = Outcome(started=time.perf_counter())
    deadline = outcome.started + max_seconds
    budget = itertools.count()

    async def client() -> None:
        connection = Connection(host, port)
        try:
            while next(budget) < max_requests and time.perf_counter() < deadline:
                raw = next(requests, None)
                if raw is None:
                    return
                await _timed(connection, raw, time.perf_counter(), outcome)
        finally:
            connection.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    outcome.finished = time.perf_counter()
    return outcome


async def open_loop(
    host: str,
    port: int,
    requests: Iterator[bytes],
    rate: float,
    max_requests: int,
    max_seconds: float,
    max_connections: int = 256,
) -> Outcome:
    """Requests scheduled every ``1/rate`` s; latency counts from the scheduled time."""
    outcome = Outcome(started=time.perf_counter())
    total = min(max_requests, int(rate * max_seconds))
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    opened = 0
    tasks: list[asyncio.Task] = []

    async def fire(raw: bytes, scheduled: float) -> None:
        nonlocal opened
        if idle.empty() and opened < max_connections:
            opened += 1
            connection = Connection(host, port)
        else:
            connection = await idle.get()  # every connection busy: the wait counts as latency
        try:
            await _timed(connection, raw, scheduled, outcome)
        finally:
            idle.put_nowait(connection)

    for number in range(total):
        scheduled = outcome.started + number / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        raw = next(requests, None)
        if raw is None:
            break
        tasks.append(asyncio.create_task(fire(raw, scheduled)))
    # Give late answers the run's length again; whatever is still pending then timed out.
    _done, pending = await asyncio.wait(tasks, timeout=max_seconds) if tasks else (set(), set())
    for task in pending:
        task.cancel()
    if pending:
        outcome.failures["timeout"] += len(pending)
    outcome.finished = time.perf_counter()
    while not idle.empty():
        idle.get_nowait().close()
    return outcome


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence (``fraction`` in [0, 1])."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(round(fraction * len(sorted_values), 9))))
    return sorted_values[rank - 1]


def summarize(outcome: Outcome) -> dict:
    """Latency percentiles (ms), throughput and failures of a run."""
    latencies = sorted(s * 1000 for s in outcome.latencies_s)
    ok = sum(n for status, n in outcome.statuses.items() if 200 <= status < 300)
    duration = max(outcome.finished - outcome.started, 1e-9)
    return {
        "requests": len(latencies) + sum(outcome.failures.values()),
        "ok": ok,
        "errors": len(latencies) - ok + sum(outcome.failures.values()),
        "status_counts": {str(k): v for k, v in sorted(outcome.statuses.items())},
        "failures": dict(outcome.failures),
        "duration_s": round(duration, 3),
        "throughput_rps": round(ok / duration, 1),
        "latency_ms": {
            "p50": round(percentile(latencies, 0.50), 3),
            "p95": round(percentile(latencies, 0.95), 3),
            "p99": round(percentile(latencies, 0.99), 3),
            "mean": round(sum(latencies) / len(latencies), 3) if latencies else float("nan"),
            "min": round(latencies[0], 3) if latencies else float("nan"),
            "max": round(latencies[-1], 3) if latencies else float("nan"),
        },
    }


def read_plan(path: str, host: str) -> list[bytes]:
    with open(path, encoding="utf-8") as handle:
        entries = [json.loads(line) for line in handle if line.strip()]
    if not entries:
        raise SystemExit(f"{path}: no requests")
    return [encode_request(e["method"], e["path"], e.get("body"), host) for e in entries]


async def _main(args: argparse.Namespace) -> dict:
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    plan = read_plan(args.requests, f"{host}:{port}")
    stream = iter(plan) if args.no_cycle else itertools.cycle(plan)
    if args.warmup:
        await closed_loop(host, port, stream, max(1, args.concurrency), args.warmup, args.max_seconds)
    if args.mode == "closed":
        outcome = await closed_loop(host, port, stream, args.concurrency, args.max_requests, args.max_seconds)
    else:
        outcome = await open_loop(host, port, stream, args.rate, args.max_requests, args.max_seconds)
    return {
        "mode": args.mode,
        "concurrency": args.concurrency if args.mode == "closed" else None,
        "rate_rps": args.rate if args.mode == "open" else None,
        "warmup": args.warmup,
        **summarize(outcome),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--requests", required=True, help="JSON-lines request plan")
    parser.add_argument("--mode", choices=["closed", "open"], default="closed")
    parser.add_argument("--concurrency", type=int, default=1, help="closed loop: concurrent clients")
    parser.add_argument("--rate", type=float, default=100.0, help="open loop: requests per second")
    parser.add_argument("--max-requests", type=int, default=2000)
    parser.add_argument("--max-seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=int, default=0, help="requests sent first and not measured")
    parser.add_argument("--no-cycle", action="store_true", help="send each planned request at most once")
    args = parser.parse_args(argv)
    try:
        import uvloop  # a faster event loop keeps the client's own overhead out of the latencies

        runner = uvloop.run
        loop_name = "uvloop"
    except ImportError:
        runner, loop_name = asyncio.run, "asyncio"
    result = runner(_main(args))
    result["client_event_loop"] = loop_name
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
