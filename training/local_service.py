"""Evaluating through the real service without importing it: ``aisle serve`` in a subprocess.

``aisle.training`` must not import ``aisle.service`` (dependencies point one way), yet hybrid fusion,
recommendation blending and personalized search are the service's code. The evaluation therefore
starts the service as a separate process on the evaluated index — exactly what a shop runs —
and talks to it over HTTP, or talks to a service the user already runs (``--via-http URL``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STARTUP_TIMEOUT_S = 600.0


class ServiceError(RuntimeError):
    """The local service did not start or stopped; the message carries the end of its log."""


def http_client(base_url: str, timeout: float = 60.0) -> Any:
    """An ``httpx.Client`` for ``base_url`` (imported lazily: only HTTP evaluation needs it)."""
    try:
        import httpx
    except ImportError as exc:  # pragma: no cover - httpx ships with the dev/eval extras
        raise ServiceError("HTTP evaluation needs httpx (pip install httpx)") from exc
    return httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextmanager
def local_service(
    index_root: Path,
    *,
    settings_file: Path | None = None,
    environment: dict[str, str] | None = None,
    data_dir: Path | None = None,
) -> Iterator[Any]:
    """Runs ``aisle serve`` on ``index_root`` on a free local port and yields an HTTP client.

    Args:
        index_root: the index root whose current version is served.
        settings_file: a YAML settings file passed as ``AISLE_CONFIG``.
        environment: extra ``AISLE_*`` variables (they override the settings file).
        data_dir: where the service stores events (default: a fresh temporary directory, so
            that earlier runs never leak into the measurement).
    """
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="aisle-eval-service-") as scratch:
        events_dir = data_dir or Path(scratch) / "data"
        log_path = Path(scratch) / "serve.log"
        env = {
            **os.environ,
            "AISLE_LOG_LEVEL": "WARNING",
            "HF_HUB_OFFLINE": "1",
            "AISLE_WATCH_INTERVAL_S": "0",
            **(environment or {}),
        }
        if settings_file is not None:
            env["AISLE_CONFIG"] = str(Path(settings_file).resolve())
        command = [
            sys.executable,
            "-m",
            "aisle",
            "serve",
            "--index",
            str(index_root),
            "--data-dir",
            str(events_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        client = http_client(f"http://127.0.0.1:{port}")
        try:
            _wait_healthy(client, process, log_path)
            yield client
        finally:
            client.close()
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _wait_healthy(client: Any, process: subprocess.Popen, log_path: Path) -> None:
    started = time.monotonic()
    while time.monotonic() - started < STARTUP_TIMEOUT_S:
        if process.poll() is not None:
            raise ServiceError(f"aisle serve exited with status {process.returncode}:\n{_tail(log_path)}")
        try:
            healthy = client.get("/health").status_code == 200
        except Exception:
            healthy = False
        if healthy:
            return
        time.sleep(0.25)
    raise ServiceError(f"aisle serve did not become healthy in {STARTUP_TIMEOUT_S:.0f} s:\n{_tail(log_path)}")
