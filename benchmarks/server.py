"""Starting ``aisle serve`` (one worker or ``--workers N``) in its own, optionally pinned, process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.data import REPO_ROOT


class ServerError(RuntimeError):
    """The server did not start or died; the message carries the end of its log."""


@dataclass(frozen=True)
class ServerConfig:
    """How the server under test runs.

    Attributes:
        index_root: the index root holding the published version.
        data_dir: where the server keeps events and profiles (a fresh directory per run).
        workers: ``aisle serve --workers``: each worker on its own core, one port (``aisle.service.workers``).
        cpus: CPU numbers the server is pinned to (``None``: not pinned).
        threads: AISLE_THREADS and OMP_NUM_THREADS of each worker.
        log_level: AISLE_LOG_LEVEL; the service's default (INFO) writes one access-log line per
            request, which is part of what a default deployment pays.
    """

    index_root: Path
    data_dir: Path
    workers: int = 1
    cpus: tuple[int, ...] | None = (0,)
    threads: int = 1
    log_level: str = "INFO"
    #: Serve another revision's code: an exported package root (``bench_typeahead.export_revision``)
    #: put first on the path and used as the working directory, so that nothing of this checkout
    #: (its ``aisle`` metadata included) is imported.
    code_path: Path | None = None
    #: Further environment variables of the server (e.g. an ``AISLE_*`` setting).
    environment: tuple[tuple[str, str], ...] = ()

    def describe(self) -> dict:
        return {
            "workers": self.workers,
            "pinned_cpus": list(self.cpus) if self.cpus else None,
            "threads_per_worker": self.threads,
            "log_level": self.log_level,
        }


def pinned_command(command: Sequence[str], cpus: set[int] | None) -> list[str]:
    """``command`` prefixed with ``taskset -c CPUS`` (unchanged when not pinned or no taskset)."""
    if not cpus or shutil.which("taskset") is None:
        return list(command)
    return ["taskset", "-c", ",".join(str(c) for c in sorted(cpus)), *command]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_command(config: ServerConfig, port: int) -> list[str]:
    """The command line: ``aisle serve``, with ``--workers N`` for several workers."""
    command = [
        sys.executable,
        "-m",
        "aisle",
        "serve",
        "--index",
        str(config.index_root),
        "--data-dir",
        str(config.data_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    return command if config.workers == 1 else [*command, "--workers", str(config.workers)]


def server_environment(config: ServerConfig) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "AISLE_THREADS": str(config.threads),
            "OMP_NUM_THREADS": str(config.threads),
            "AISLE_INDEX_DIR": str(config.index_root),
            "AISLE_DATA_DIR": str(config.data_dir),
            "AISLE_LOG_LEVEL": config.log_level,
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(config.code_path or REPO_ROOT), env.get("PYTHONPATH")])),
            **dict(config.environment),
        }
    )
    return env


def get_json(url: str, timeout: float = 5.0) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def process_rss_mib(pid: int) -> float | None:
    """Resident memory of ``pid`` and its children (the workers), in MiB."""
    total_kib = 0
    try:
        for one in process_tree(pid):
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
    except OSError:
        return None
    return round(total_kib / 1024, 1)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its direct children (the worker processes of ``aisle serve --workers``)."""
    pids = [pid]
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            pids += [int(child) for child in (task / "children").read_text().split()]
    except OSError:
        pass
    return pids


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time used so far by ``pid`` and its children (None off Linux).

    On a machine shared with other work, a request's CPU time is what it would take on an idle
    core, where its wall-clock latency also counts the time spent waiting for a core.
    """
    ticks = 0
    try:
        for one in process_tree(pid):
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    except (OSError, IndexError, ValueError):
        return None
    return ticks / os.sysconf("SC_CLK_TCK")


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def running_server(config: ServerConfig, log_path: Path, startup_timeout: float = 900.0) -> Iterator[RunningServer]:
    """Starts the server, waits until ``/health`` answers, yields it, stops it."""
    port = free_port()
    command = pinned_command(server_command(config, port), set(config.cpus) if config.cpus else None)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=config.code_path or REPO_ROOT,
            env=server_environment(config),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = RunningServer(f"http://127.0.0.1:{port}", process, command)
    try:
        server.wait_healthy(startup_timeout, log_path)
        yield server
    finally:
        server.stop()


class RunningServer:
    """A started server process and its base URL."""

    def __init__(self, url: str, process: subprocess.Popen, command: Sequence[str]) -> None:
        self.url = url
        self.process = process
        self.command = list(command)
        self.startup_seconds: float | None = None
        self.health: dict = {}

    def wait_healthy(self, timeout: float, log_path: Path) -> None:
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            if self.process.poll() is not None:
                raise ServerError(f"server exited with {self.process.returncode}:\n{_log_tail(log_path)}")
            try:
                status, body = get_json(self.url + "/health", timeout=2.0)
            except (OSError, ValueError):
                time.sleep(0.2)
                continue
            if status == 200:
                self.startup_seconds = round(time.perf_counter() - started, 2)
                self.health = body
                return
            time.sleep(0.2)
        raise ServerError(f"server not healthy after {timeout:.0f} s:\n{_log_tail(log_path)}")

    def rss_mib(self) -> float | None:
        return process_rss_mib(self.process.pid)

    def cpu_seconds(self) -> float | None:
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
