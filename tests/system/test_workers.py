"""``aisle serve --workers 2`` as a real process tree: workers on their own cores, one port,
a dead worker replaced, and no worker outliving its supervisor."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.system.server import ServerProcess, get_json, request_json


def _workers(parent: int) -> list[int]:
    """The supervisor's worker processes (multiprocessing's resource tracker left out)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [int(pid) for pid in children if _is_worker(int(pid))]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _is_worker(pid: int) -> bool:
    command = _cmdline(pid)
    return "multiprocessing.spawn" in command and "resource_tracker" not in command


def _cpus(pid: int) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no Cpus_allowed_list for {pid}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return _cmdline(pid) != ""  # a zombie has no command line


def _search_ok(url: str) -> bool:
    try:
        return request_json("POST", f"{url}/search", {"query": "lamp"})[0] == 200
    except OSError:
        return False


def _wait_for(condition, timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def two_workers(demo_index: Path, tmp_path: Path):
    server = ServerProcess(demo_index, tmp_path / "data", tmp_path / "serve.log", workers=2)
    with server:
        assert _wait_for(lambda: len(_workers(server.process.pid)) == 2), server.log_tail()
        yield server


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the process tree from /proc (Linux)")
def test_two_workers_serve_one_port_from_their_own_cores_and_stop_together(two_workers: ServerProcess) -> None:
    workers = _workers(two_workers.process.pid)
    for _ in range(10):
        status, body = request_json("POST", f"{two_workers.url}/search", {"query": "wooden chair", "k": 5})
        assert status == 200 and len(body["results"]) == 5
    if len(os.sched_getaffinity(0)) >= 2:
        assert sorted(_cpus(pid) for pid in workers) == sorted(str(cpu) for cpu in sorted(os.sched_getaffinity(0))[:2])
    assert two_workers.stop() == 0
    assert not any(_alive(pid) for pid in workers)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the process tree from /proc (Linux)")
def test_a_dead_worker_is_replaced(two_workers: ServerProcess) -> None:
    parent = two_workers.process.pid
    first, second = _workers(parent)
    os.kill(first, signal.SIGKILL)
    assert _wait_for(lambda: len(_workers(parent)) == 2 and first not in _workers(parent)), two_workers.log_tail()
    assert second in _workers(parent)
    # Connections the kernel had already queued on the dead worker's socket are reset; new ones
    # go to the live workers.
    assert _wait_for(lambda: all(_search_ok(two_workers.url) for _ in range(6)), timeout_s=60), two_workers.log_tail()
    assert get_json(f"{two_workers.url}/health")[0] == 200


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the process tree from /proc (Linux)")
def test_workers_do_not_outlive_a_killed_supervisor(two_workers: ServerProcess) -> None:
    workers = _workers(two_workers.process.pid)
    two_workers.kill()  # SIGKILL: the supervisor runs no code at all
    assert _wait_for(lambda: not any(_alive(pid) for pid in workers), timeout_s=45), "workers outlived the supervisor"
