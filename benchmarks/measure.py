"""Measurement helpers: latency statistics, exact ground truth, recall, CPU pinning, machine load."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from benchmarks.loadgen import percentile

T = TypeVar("T")


def latency_stats(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/mean/max in milliseconds, and the sequential rate it implies."""
    values = sorted(s * 1000 for s in seconds)
    if not values:
        return {"count": 0}
    mean = sum(values) / len(values)
    return {
        "count": len(values),
        "p50": round(percentile(values, 0.50), 3),
        "p95": round(percentile(values, 0.95), 3),
        "p99": round(percentile(values, 0.99), 3),
        "mean": round(mean, 3),
        "max": round(values[-1], 3),
        "sequential_qps": round(1000 / mean, 1) if mean > 0 else None,
    }


class Timings(list):
    """Per-call wall seconds, with the per-call CPU seconds of the process in ``cpu``."""

    def __init__(self) -> None:
        super().__init__()
        self.cpu: list[float] = []


def time_each(
    function: Callable[[str], T], inputs: Sequence[str], warmup: int = 20, max_seconds: float | None = None
) -> tuple[Timings, list[T]]:
    """Calls ``function`` on each input after ``warmup`` untimed calls; per-call seconds and outputs.

    With ``max_seconds``, stops after the call that crosses that much measured time (a slow
    system then answers a prefix of ``inputs``; the outputs say how many).
    """
    warm_until = None if max_seconds is None else time.perf_counter() + max_seconds / 4
    for text in list(inputs)[:warmup]:
        function(text)
        if warm_until is not None and time.perf_counter() > warm_until:
            break
    latencies = Timings()
    outputs: list[T] = []
    for text in inputs:
        tick, cpu_tick = time.perf_counter(), time.process_time()
        outputs.append(function(text))
        latencies.append(time.perf_counter() - tick)
        latencies.cpu.append(time.process_time() - cpu_tick)
        if max_seconds is not None and sum(latencies) > max_seconds:
            break
    return latencies, outputs


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int, chunk: int = 131_072) -> np.ndarray:
    """Row numbers of the exact top ``k`` by inner product for each query (brute force, chunked)."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    best_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, len(vectors), chunk):
        block = np.asarray(vectors[start : start + chunk], dtype=np.float32)
        scores = queries @ block.T
        take = min(k, scores.shape[1])
        top = np.argpartition(-scores, take - 1, axis=1)[:, :take]
        merged_scores = np.concatenate([best_scores, np.take_along_axis(scores, top, axis=1)], axis=1)
        merged_rows = np.concatenate([best_rows, top + start], axis=1)
        keep = np.argsort(-merged_scores, axis=1, kind="stable")[:, :k]
        best_scores = np.take_along_axis(merged_scores, keep, axis=1)
        best_rows = np.take_along_axis(merged_rows, keep, axis=1)
    return best_rows


def recall_at_k(found: Sequence[Sequence[Any]], exact: Sequence[Sequence[Any]], k: int) -> float:
    """Mean over queries of |found top-k ∩ exact top-k| / k."""
    if not found:
        return float("nan")
    hits = [len(set(list(f)[:k]) & set(list(e)[:k])) / k for f, e in zip(found, exact)]
    return round(float(np.mean(hits)), 4)


@contextmanager
def pinned(cpus: set[int] | None) -> Iterator[None]:
    """Runs the block with this process pinned to ``cpus`` (no-op for None or off Linux)."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def cpu_times() -> tuple[int, int, int] | None:
    """``(total, idle, steal)`` jiffies of all CPUs since boot, from ``/proc/stat``."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    steal = fields[7] if len(fields) > 7 else 0
    # guest and guest_nice (fields 8, 9) are already counted in user and nice.
    return sum(fields[:8]), idle, steal


def steal_fraction(start: tuple[int, int, int] | None, end: tuple[int, int, int] | None) -> float | None:
    """The share of CPU time the hypervisor gave to other machines between two ``cpu_times``.

    On a virtual machine this is the noise no load average shows: on the shared benchmark
    host, seconds with 25-40 % stolen made every request 1.5-2x slower and queued open-loop
    runs for hundreds of milliseconds.
    """
    if not start or not end or end[0] <= start[0]:
        return None
    return round((end[2] - start[2]) / (end[0] - start[0]), 3)


class LoadMonitor:
    """The machine's load while a benchmark runs: other processes make latencies worse."""

    def __init__(self) -> None:
        self._start = cpu_times()
        self.loadavg_start = os.getloadavg() if hasattr(os, "getloadavg") else None

    def report(self) -> dict[str, Any]:
        end = cpu_times()
        busy = None
        if self._start and end and end[0] > self._start[0]:
            total, idle = end[0] - self._start[0], end[1] - self._start[1]
            busy = round(1 - idle / total, 3)
        return {
            "loadavg_start": self.loadavg_start,
            "loadavg_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "cpu_busy_fraction": busy,
            "cpu_steal_fraction": steal_fraction(self._start, end),
        }


def wait_for_quiet(max_load: float, max_wait_s: float) -> dict[str, Any]:
    """Waits (up to ``max_wait_s``) until the 1-minute load average drops to ``max_load``."""
    started = time.monotonic()
    while hasattr(os, "getloadavg") and os.getloadavg()[0] > max_load:
        if time.monotonic() - started > max_wait_s:
            return {"quiet": False, "waited_s": round(time.monotonic() - started), "loadavg": os.getloadavg()}
        time.sleep(5)
    return {
        "quiet": True,
        "waited_s": round(time.monotonic() - started),
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
