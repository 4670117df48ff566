"""End to end over HTTP: the server in one process, the load generator in another.

Scenarios follow the public contract: ``/search`` without and with a user, similar items,
recommendations and ``/events`` (one event per request, each durably stored). Users are given a
history first (through ``POST /events``), so that personalized requests do real work. Each
scenario runs closed loop at every concurrency level; ``/search`` also runs open loop at fixed
rates. A scenario whose endpoint does not answer 2xx is reported as skipped with the reason.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from benchmarks.data import REPO_ROOT
from benchmarks.measure import cpu_times, steal_fraction
from benchmarks.server import RunningServer, pinned_command

log = logging.getLogger(__name__)

EVENT_TYPES = ("view", "view", "view", "click", "click", "add_to_cart", "purchase")


@dataclass(frozen=True)
class LoadLevels:
    """How hard and how long each scenario is driven."""

    concurrency: tuple[int, ...] = (1, 4, 16)
    rates: tuple[float, ...] = (100.0, 200.0, 300.0)
    max_requests: int = 2000
    max_seconds: float = 20.0
    warmup: int = 50
    #: A level during which the hypervisor stole more than this share of the CPU is run again...
    max_steal: float | None = 0.05
    #: ...at most this many times; the least disturbed attempt is the result, the others are kept.
    steal_retries: int = 2


def request_json(url: str, method: str = "GET", body: Any = None, timeout: float = 30.0) -> tuple[int, Any]:
    """One request from the harness itself (probes and seeding, never timed)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"} if data else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw or b"null")
        except ValueError:
            return exc.code, raw.decode(errors="replace")


def user_histories(ids: Sequence[str], users: int, events_per_user: int, seed: int) -> list[dict]:
    """Events for ``users`` synthetic shoppers, each browsing around a few neighbouring items."""
    rng = np.random.default_rng(seed)
    events = []
    for user in range(users):
        anchors = rng.integers(0, len(ids), size=3)
        for number in range(events_per_user):
            row = int((anchors[number % 3] + rng.integers(0, 50)) % len(ids))
            events.append(
                {
                    "event_id": f"seed-{seed}-{user}-{number}",
                    "user_id": f"bench-user-{user}",
                    "item_id": ids[row],
                    "type": EVENT_TYPES[int(rng.integers(len(EVENT_TYPES)))],
                    "timestamp": 1_760_000_000 + user * 1000 + number * 60,
                }
            )
    return events


def seed_users(url: str, events: list[dict], batch: int = 200) -> dict[str, Any]:
    """Posts the seed events; returns what the server acknowledged, or why it could not."""
    accepted = 0
    for start in range(0, len(events), batch):
        status, body = request_json(url + "/events", "POST", {"events": events[start : start + batch]})
        if status >= 300:
            return {"seeded": False, "status": status, "response": body}
        accepted += int(body.get("accepted", 0)) if isinstance(body, dict) else 0
    return {"seeded": True, "events": len(events), "accepted": accepted}


def scenario_plans(
    queries: Sequence[str], ids: Sequence[str], users: int, events_needed: int, seed: int
) -> dict[str, list[dict]]:
    """Request plans per scenario (the load generator cycles through each, events excepted)."""
    rng = np.random.default_rng(seed + 1)
    user_ids = [f"bench-user-{u}" for u in range(users)]
    item_sample = [ids[int(r)] for r in rng.integers(0, len(ids), size=1000)]
    return {
        "search": [{"method": "POST", "path": "/search", "body": {"query": q, "k": 10}} for q in queries],
        "search_user": [
            {"method": "POST", "path": "/search", "body": {"query": q, "k": 10, "user_id": user_ids[n % users]}}
            for n, q in enumerate(queries)
        ],
        "similar": [
            {"method": "GET", "path": f"/items/{quote(i, safe='')}/similar?k=10", "body": None} for i in item_sample
        ],
        "recommendations": [
            {"method": "GET", "path": f"/users/{u}/recommendations?k=10", "body": None} for u in user_ids
        ],
        "events": [
            {
                "method": "POST",
                "path": "/events",
                "body": {
                    "events": [
                        {
                            "event_id": f"load-{seed}-{n}",
                            "user_id": user_ids[n % users],
                            "item_id": item_sample[n % len(item_sample)],
                            "type": "view",
                        }
                    ]
                },
            }
            for n in range(events_needed)
        ],
    }


def run_loadgen(
    server: RunningServer,
    plan_path: Path,
    *,
    mode: str,
    level: float,
    levels: LoadLevels,
    cycle: bool,
    cpus: set[int] | None,
) -> dict[str, Any]:
    """Runs the load generator process once; its JSON result plus the server's CPU per request."""
    url = server.url
    command = [
        sys.executable,
        "-m",
        "benchmarks.loadgen",
        "--url",
        url,
        "--requests",
        str(plan_path),
        "--mode",
        mode,
        "--max-requests",
        str(levels.max_requests),
        "--max-seconds",
        str(levels.max_seconds),
        "--warmup",
        str(levels.warmup if cycle else 0),
    ]
    command += ["--concurrency", str(int(level))] if mode == "closed" else ["--rate", str(level)]
    if not cycle:
        command.append("--no-cycle")
    cpu_before, host_before = server.cpu_seconds(), cpu_times()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    completed = subprocess.run(
        pinned_command(command, cpus),
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=levels.max_seconds * 3 + 120,
        check=False,
    )
    cpu_after, host_after = server.cpu_seconds(), cpu_times()
    if completed.returncode != 0:
        raise RuntimeError(f"load generator failed ({completed.returncode}): {completed.stderr[-2000:]}")
    result = json.loads(completed.stdout)
    answered = result["requests"] - sum(result["failures"].values()) + (levels.warmup if cycle else 0)
    if cpu_before is not None and cpu_after is not None and answered:
        # Warm-up requests are served too; CPU is counted over everything the server answered.
        result["server_cpu_ms_per_request"] = round((cpu_after - cpu_before) * 1000 / answered, 3)
    result["host_steal_fraction"] = steal_fraction(host_before, host_after)
    return result


def run_level(
    server: RunningServer,
    plan_path: Path,
    *,
    mode: str,
    level: float,
    levels: LoadLevels,
    cycle: bool,
    cpus: set[int] | None,
) -> dict[str, Any]:
    """One load level, run again while the hypervisor stole more than ``levels.max_steal``.

    On a shared virtual machine, stolen CPU time is noise from other machines: at 1M items,
    ``/search`` at concurrency 1 with 12 % stolen measured p50 6.3 ms, and ``/search`` with a
    user (the same search plus the profile blend) with 0.2 % stolen 5.4 ms. Like waiting for a quiet
    machine (``--wait-quiet``), a disturbed level is repeated (up to ``levels.steal_retries``
    times), the least disturbed attempt is the result and the others stay in it under
    ``disturbed_attempts``. Levels that consume their plan (events) are never repeated.
    """
    attempts = []
    while True:
        attempts.append(run_loadgen(server, plan_path, mode=mode, level=level, levels=levels, cycle=cycle, cpus=cpus))
        steal = attempts[-1].get("host_steal_fraction")
        if (
            not cycle
            or levels.max_steal is None
            or steal is None
            or steal <= levels.max_steal
            or len(attempts) > levels.steal_retries
        ):
            break
    chosen = min(attempts, key=lambda attempt: attempt.get("host_steal_fraction") or 0.0)
    others = [attempt for attempt in attempts if attempt is not chosen]
    if not others:
        return chosen
    return {
        **chosen,
        "disturbed_attempts": [
            {
                "host_steal_fraction": attempt.get("host_steal_fraction"),
                "throughput_rps": attempt.get("throughput_rps"),
                "latency_ms": attempt.get("latency_ms"),
            }
            for attempt in others
        ],
    }


def probe(url: str, request: dict) -> tuple[bool, str, int | None]:
    """Sends one planned request; ``(ok, reason, result count)``."""
    status, body = request_json(url + request["path"], request["method"], request.get("body"))
    if status >= 300:
        return False, f"{request['method']} {request['path'].split('?')[0]} returned {status}: {str(body)[:300]}", None
    results = body.get("results") if isinstance(body, dict) else None
    return True, "ok", len(results) if isinstance(results, list) else None


def run_http_suite(
    server: RunningServer,
    work_dir: Path,
    queries: Sequence[str],
    ids: Sequence[str],
    levels: LoadLevels,
    *,
    scenarios: Sequence[str],
    open_loop_scenarios: Sequence[str] = ("search",),
    client_cpus: set[int] | None,
    users: int = 200,
    events_per_user: int = 20,
    seed: int = 0,
) -> dict[str, Any]:
    """Seeds users, then drives every scenario at every load level; one JSON-able result."""
    url = server.url
    seeding = seed_users(url, user_histories(ids, users, events_per_user, seed))
    events_needed = (levels.max_requests + levels.warmup) * (len(levels.concurrency) + 1)
    plans = scenario_plans(queries, ids, users, events_needed, seed)
    results: dict[str, Any] = {}
    for name in scenarios:
        plan = plans[name]
        ok, reason, result_count = probe(url, plan[0])
        if not ok:
            results[name] = {"skipped": reason}
            log.warning("scenario %s skipped: %s", name, reason)
            continue
        plan = plan[1:]  # the probe used the first request (an event must not be sent twice)
        plan_path = work_dir / f"plan-{name}.jsonl"
        plan_path.write_text("".join(json.dumps(entry) + "\n" for entry in plan))
        cycle = name != "events"
        runs = []
        for concurrency in levels.concurrency:
            log.info("%s: closed loop, concurrency %d", name, concurrency)
            runs.append(
                run_level(
                    server, plan_path, mode="closed", level=concurrency, levels=levels, cycle=cycle, cpus=client_cpus
                )
            )
            if not cycle:  # each event is sent once: the next level starts where this one stopped
                used = runs[-1]["requests"]
                plan = plan[used:]
                plan_path.write_text("".join(json.dumps(entry) + "\n" for entry in plan))
        if name in open_loop_scenarios:
            for rate in levels.rates:
                log.info("%s: open loop, %.0f req/s", name, rate)
                runs.append(
                    run_level(server, plan_path, mode="open", level=rate, levels=levels, cycle=cycle, cpus=client_cpus)
                )
        results[name] = {"probe_results": result_count, "runs": runs}
    return {
        "url": url,
        "server_command": server.command,
        "server_startup_s": server.startup_seconds,
        "server_rss_mib": server.rss_mib(),
        "health": server.health,
        "seeding": seeding,
        "levels": {
            "concurrency": list(levels.concurrency),
            "rates": list(levels.rates),
            "max_requests": levels.max_requests,
            "max_seconds": levels.max_seconds,
            "warmup": levels.warmup,
            "max_steal": levels.max_steal,
            "steal_retries": levels.steal_retries,
        },
        "scenarios": results,
    }
