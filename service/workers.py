"""``aisle serve --workers N``: one process per core, each with its own listening socket.

uvicorn's own ``--workers`` has its processes share one listening socket and race to accept
from it; the worker that wakes first takes every pending connection. Keep-alive clients that
open a few connections at once (a proxy's upstream pool, a load generator) then often all land
on one worker while the other idles. Measured on the million-item benchmark index (two cores,
closed loop, 4 and 16 connections): uvicorn's two workers served 174-232 searches/s in about
half of the runs and 300-400 in the others. Here each worker binds its own socket to the same
port with ``SO_REUSEPORT``, so the kernel spreads new connections over the workers, and each
worker is pinned to its own core when there are enough (search handlers are CPU-bound, and a
worker that stays on one core keeps its caches): 310-364 searches/s in six runs out of six.

The parent process holds no index: it validates the index once (a bad one exits 2 with one
line, before any port is bound), starts the workers, restarts one that dies, and on SIGTERM or
SIGINT asks every worker to drain and stop. The validating load is dropped, which makes the start
slower: two workers were ready in 15.5 s on the million-item benchmark index, one in 9.5 s.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import signal
import socket
import sys
import time
from multiprocessing.connection import wait
from typing import Any

log = logging.getLogger(__name__)

#: Exit status of a worker that cannot serve its index (the same as ``aisle serve``'s).
INVALID_INDEX_STATUS = 2
#: A worker dying this many times within ``CRASH_WINDOW_S`` stops the service instead of looping.
MAX_RESTARTS = 5
CRASH_WINDOW_S = 60.0
#: linux/prctl.h
PR_SET_PDEATHSIG = 1


def worker_cpus(count: int) -> list[int | None]:
    """The core each worker is pinned to: distinct cores while there are enough, else none."""
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not available or count > len(available):
        return [None] * count
    pinned: list[int | None] = list(available[:count])
    return pinned


def reuseport_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket that other processes may bind to the same address as well."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    return sock


def _exit_with_parent(parent_pid: int) -> None:
    """Has the kernel send SIGTERM to this worker when the supervisor dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: a killed supervisor leaves its workers running
        return
    if os.getppid() != parent_pid:  # the supervisor died before the request took effect
        sys.exit(1)


def run_worker(fields: dict[str, Any], cpu: int | None, log_level: str, graceful_s: float, parent_pid: int) -> None:
    """One worker process: pin, load the index, serve on its own ``SO_REUSEPORT`` socket."""
    import uvicorn

    from aisle.cli import CommandError
    from aisle.service.app import create_app
    from aisle.service.cli import validated_holder
    from aisle.service.http import protocol_class
    from aisle.service.logs import configure_json_logging
    from aisle.service.settings import ServiceSettings

    _exit_with_parent(parent_pid)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})  # before any library starts a thread
    configure_json_logging(log_level)
    settings = ServiceSettings(**fields)
    try:
        holder = validated_holder(settings)
    except CommandError as exc:  # the version changed after the supervisor checked it
        print(f"aisle serve: error: {exc}", file=sys.stderr)
        sys.exit(INVALID_INDEX_STATUS)
    sock = reuseport_socket(settings.host, settings.port)
    config = uvicorn.Config(
        create_app(settings, holder=holder),
        http=protocol_class(settings.read_timeout_s),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=math.ceil(graceful_s),
    )
    log.info("worker %d serving on cpu %s", os.getpid(), cpu)
    uvicorn.Server(config).run(sockets=[sock])


class _Supervisor:
    """Starts the workers, restarts one that dies, stops them all on a signal."""

    def __init__(self, fields: dict[str, Any], count: int, log_level: str, graceful_s: float) -> None:
        self.fields = fields
        self.cpus = worker_cpus(count)
        self.log_level = log_level
        self.graceful_s = graceful_s
        self.context = multiprocessing.get_context("spawn")  # no inherited threads or locks
        self.workers: list[Any] = [None] * count
        self.crashes: list[float] = []
        self.stopping = False

    def start(self, slot: int) -> None:
        worker = self.context.Process(
            target=run_worker,
            args=(self.fields, self.cpus[slot], self.log_level, self.graceful_s, os.getpid()),
            name=f"aisle-worker-{slot}",
            daemon=False,
        )
        worker.start()
        self.workers[slot] = worker
        log.info("started worker %d (pid %d, cpu %s)", slot, worker.pid, self.cpus[slot])

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        status = 0
        try:
            for slot in range(len(self.workers)):
                self.start(slot)
            while not self.stopping:
                wait([worker.sentinel for worker in self.workers], timeout=0.5)
                for slot, worker in enumerate(self.workers):
                    if self.stopping or worker.is_alive():
                        continue
                    status = self._handle_exit(slot, worker)
                    if status:
                        self.stopping = True
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return status

    def _handle_exit(self, slot: int, worker: Any) -> int:
        """Restarts a dead worker; returns a non-zero status when the service must stop instead."""
        if worker.exitcode == INVALID_INDEX_STATUS:
            return INVALID_INDEX_STATUS
        now = time.monotonic()
        self.crashes = [t for t in self.crashes if now - t < CRASH_WINDOW_S] + [now]
        if len(self.crashes) > MAX_RESTARTS:
            log.error("workers died %d times within %.0f s; stopping", len(self.crashes), CRASH_WINDOW_S)
            return 1
        log.error("worker %d (pid %d) exited with status %s; restarting it", slot, worker.pid, worker.exitcode)
        self.start(slot)
        return 0

    def _stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _stop_all(self) -> None:
        """SIGTERM to every worker (each drains its requests), then a kill for any still running."""
        running = [worker for worker in self.workers if worker is not None and worker.is_alive()]
        for worker in running:
            worker.terminate()
        deadline = time.monotonic() + self.graceful_s + 5
        for worker in running:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                log.error("worker pid %d did not stop in time; killing it", worker.pid)
                worker.kill()
                worker.join()


def serve_workers(fields: dict[str, Any], count: int, log_level: str, graceful_s: float) -> int:
    """Serves with ``count`` worker processes until SIGTERM/SIGINT; returns the exit status.

    Args:
        fields: the service settings (``ServiceSettings`` field values) every worker is built with.
        count: worker processes.
        log_level: the workers' log level.
        graceful_s: seconds a worker waits for in-flight requests when asked to stop.
    """
    return _Supervisor(fields, count, log_level, graceful_s).run()
