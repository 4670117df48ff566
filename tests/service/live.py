"""The app behind a real uvicorn server in a background thread, for probes below the ASGI level.

``TestClient`` talks ASGI directly; malformed request lines, stalled bodies and concurrent
requests on one event loop need real sockets. The server runs with the same protocol class as
``aisle serve`` on a free port of 127.0.0.1 and is always stopped.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from aisle.service.http import protocol_class


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def live_server(app: FastAPI, read_timeout_s: float = 10.0) -> Iterator[tuple[str, int]]:
    """Serves ``app`` until the block ends; yields ``(host, port)`` once it accepts requests."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http=protocol_class(read_timeout_s),
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="live-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the live server did not start")
        time.sleep(0.02)
    try:
        yield "127.0.0.1", port
    finally:
        server.should_exit = True
        thread.join(30)


def raw_exchange(address: tuple[str, int], data: bytes, timeout_s: float = 5.0) -> bytes:
    """Sends ``data`` on a new connection and reads until the server closes it."""
    with socket.create_connection(address, timeout=timeout_s) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)
