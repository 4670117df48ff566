"""What every embedded SQLite store shares: a private WAL database and one group-committing writer.

The event log (``aisle.service.events.store``) and the live catalogue's change log
(``aisle.index.changes``) both acknowledge a write only once its commit reached the disk
(``synchronous=FULL``), let readers run beside the writer (WAL), and funnel every request of a
process through one writer thread that commits whatever is queued in one transaction (group
commit: many requests pay for one fsync). Data files that hold shoppers' data are owner-only:
the directory ``0700``, the database and its ``-wal``/``-shm`` files ``0600``, whatever the umask.
"""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import stat
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")

T = TypeVar("T")


def ensure_private_dir(path: Path) -> None:
    """Creates ``path`` (and parents) owner-only; warns when an existing one is open to others.

    A directory that already exists keeps its mode (an operator may have chosen it).
    """
    if not path.exists():
        path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
        os.chmod(path, PRIVATE_DIR_MODE)  # mkdir's mode is filtered by the umask
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "data directory %s is readable by other users (mode %o); `chmod 700 %s` keeps shoppers' data private",
            path,
            mode,
            path,
        )


def ensure_private_database(path: Path) -> None:
    """Creates the SQLite file ``0600`` if absent and tightens it and its side files if present."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    os.close(fd)
    for candidate in (path, *(path.with_name(path.name + suffix) for suffix in SQLITE_SIDE_FILES)):
        try:
            if stat.S_IMODE(candidate.stat().st_mode) != PRIVATE_FILE_MODE:
                os.chmod(candidate, PRIVATE_FILE_MODE)
        except FileNotFoundError:
            continue
        except PermissionError as exc:  # not ours to change: say so, keep serving
            log.warning("cannot make %s owner-only: %s", candidate, exc)


def open_database(
    path: Path,
    *,
    private: bool,
    synchronous: str = "FULL",
    busy_timeout_ms: int = 5000,
    schema: str | None = None,
) -> sqlite3.Connection:
    """A writing connection in WAL mode, in autocommit (transactions are explicit).

    Args:
        path: the database file (its directory is created).
        private: shoppers' data: owner-only directory and files (see the module docstring).
        synchronous: ``FULL`` where a write is acknowledged (durable before the answer); ``NORMAL``
            where losing the last moments to a power cut is acceptable.
        busy_timeout_ms: how long a write waits for another process's transaction.
        schema: DDL run once opened (``CREATE ... IF NOT EXISTS``).

    Raises:
        sqlite3.Error, OSError: the file cannot be created or opened.
    """
    path = Path(path)
    if private:
        ensure_private_dir(path.parent)
        ensure_private_database(path)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=busy_timeout_ms / 1000)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        if schema:
            conn.executescript(schema)
    except sqlite3.Error:
        conn.close()
        raise
    return conn


def open_reader(path: Path, *, busy_timeout_ms: int = 5000) -> sqlite3.Connection:
    """A read-only connection (never takes the write lock, never creates the file)."""
    # as_uri() percent-encodes the path, so '?' or '#' in a directory name cannot break it.
    conn = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    return conn


@dataclass
class Pending(Generic[T]):
    """One request waiting for the writer: what it hands over and the future it waits on."""

    payload: T
    future: Future = field(default_factory=Future)


_STOP = object()


class GroupCommitter(Generic[T]):
    """One writer thread committing every queued request's payload in one transaction.

    ``commit(batch)`` stores the batch and resolves each ``Pending.future`` (a result, or the
    exception that refuses that request); when it raises instead, every unresolved request of
    the batch gets ``failure(exc)``, so no request waits on a dead writer.

    Args:
        name: the thread's name.
        commit: stores one batch.
        size: a payload's weight towards ``max_batch``.
        max_batch: most weight drained into one transaction.
        failure: the exception handed to the requests of a batch whose commit raised.
    """

    def __init__(
        self,
        name: str,
        commit: Callable[[list[Pending[T]]], None],
        *,
        size: Callable[[T], int],
        max_batch: int,
        failure: Callable[[Exception], Exception],
    ) -> None:
        self.name = name
        self.commit = commit
        self.size = size
        self.max_batch = max_batch
        self.failure = failure
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        """Starts the writer thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float | None = None) -> None:
        """Commits what is queued, then stops the thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout_s)
            self._thread = None

    def submit(self, payload: T, timeout_s: float) -> Any:
        """Queues ``payload`` and returns its commit's result.

        Raises:
            TimeoutError: not committed within ``timeout_s`` (it may still commit later).
            Exception: whatever ``commit`` or ``failure`` set for this request.
        """
        pending: Pending[T] = Pending(payload)
        self._queue.put(pending)
        try:
            return pending.future.result(timeout_s)
        except FutureTimeout:
            raise TimeoutError(f"not committed within {timeout_s:g} s") from None

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            stop = item is _STOP
            batch: list[Pending[T]] = [] if stop else [item]
            weight = sum(self.size(pending.payload) for pending in batch)
            while weight < self.max_batch:
                try:
                    extra = self._queue.get_nowait()
                except queue.Empty:
                    break
                if extra is _STOP:
                    stop = True
                    break
                batch.append(extra)
                weight += self.size(extra.payload)
            if batch:
                try:
                    self.commit(batch)
                except Exception as exc:  # never leave a request waiting on a dead writer
                    log.exception("%s failed", self.name)
                    for pending in batch:
                        if not pending.future.done():
                            pending.future.set_exception(self.failure(exc))
            if stop:
                return
