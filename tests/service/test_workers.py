"""``aisle.service.workers``: the core each worker gets and the shared-port sockets (no processes here;
``tests/system/test_workers.py`` runs real ones)."""

from __future__ import annotations

import socket

import pytest

from aisle.service import workers


def test_each_worker_gets_its_own_core_while_there_are_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers.os, "sched_getaffinity", lambda pid: {5, 2, 7}, raising=False)
    assert workers.worker_cpus(2) == [2, 5]
    assert workers.worker_cpus(3) == [2, 5, 7]
    assert workers.worker_cpus(4) == [None] * 4  # more workers than cores: nobody is pinned


def test_workers_can_bind_the_same_port() -> None:
    first = workers.reuseport_socket("127.0.0.1", 0)
    port = first.getsockname()[1]
    second = workers.reuseport_socket("127.0.0.1", port)
    try:
        assert second.getsockname()[1] == port
        plain = socket.socket()
        with pytest.raises(OSError):  # what a socket without SO_REUSEPORT gets
            plain.bind(("127.0.0.1", port))
        plain.close()
    finally:
        first.close()
        second.close()
