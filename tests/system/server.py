"""A real ``aisle serve`` process for the system tests: start, wait until healthy, kill, restart.

The server runs exactly as in production (``python -m index.cli serve``, the real ONNX encoder,
uvicorn), on a free port of 127.0.0.1, with its JSON log in a file (a pipe nobody reads would
fill up and stall it). Every start is bounded in time and every process is killed in the end.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / ".cache" / "aisle"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_environment(**settings: Any) -> dict[str, str]:
    """The process environment: shared model cache, offline, ``AISLE_<NAME>`` for each setting."""
    env = dict(os.environ)
    env.setdefault("AISLE_CACHE_DIR", str(CACHE_DIR))
    env.update({"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "AISLE_LOG_LEVEL": "WARNING"})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    for name, value in settings.items():
        env[f"AISLE_{name.upper()}"] = str(value)
    return env


class ServerProcess:
    """One ``aisle serve`` process; usable as a context manager that always kills it."""

    #: How ``aisle`` is invoked: the module, so the tests need no installed console script.
    launcher: tuple[str, ...] = (sys.executable, "-m", "aisle")

    def __init__(self, index_dir: Path, data_dir: Path, log_path: Path, **settings: Any) -> None:
        self.index_dir = index_dir
        self.data_dir = data_dir
        self.log_path = log_path
        self.settings = settings
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 90.0) -> None:
        """Starts the server and waits until ``/health`` answers 200 (bounded by ``timeout_s``)."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("the server is already running")
        command = [
            *self.launcher,
            "serve",
            "--index",
            str(self.index_dir),
            "--data-dir",
            str(self.data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=server_environment(**self.settings),
                cwd=REPO_ROOT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                status, _ = get_json(f"{self.url}/health", timeout=1.0)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"the server did not become healthy within {timeout_s} s:\n{self.log_tail()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Sends ``sig`` to the server (SIGKILL: no shutdown code runs) and reaps it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> int | None:
        """Graceful stop (SIGTERM: drain, run the lifespan shutdown); returns the exit status."""
        self.kill(signal.SIGTERM)
        return self.process.returncode if self.process is not None else None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()


def get_json(url: str, timeout: float = 5.0) -> tuple[int, Any]:
    return request_json("GET", url, None, timeout)


def request_json(
    method: str, url: str, payload: Any = None, timeout: float = 5.0, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """One HTTP request; returns (status, parsed JSON body). Connection errors raise OSError."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={
            "Content-Type": "application/json",
            **(headers or {}),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        body = error.read()
        try:
            return error.code, json.loads(body)
        except ValueError:
            return error.code, body.decode(errors="replace")
