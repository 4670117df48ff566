"""The shop's own search queries, counted, for the suggest box.

What is kept is a count per normalised query text (case-folded, spaces collapsed) and nothing
else: no user or session id, no time, no request. It is bounded: beyond ``capacity`` texts the
least counted are dropped. Texts that look personal (an ``@``, a long run of digits such as a
phone or card number) are never counted, and a text is offered as a suggestion only once it has
been searched ``min_count`` times, so a single shopper's unusual query is never shown to others.

Counts are kept in memory and merged into a shared store every ``flush_interval_s`` (and at
shutdown): ``query_log.json`` in the data directory (``FileCounts``: under a file lock,
crash-safely: temp file, fsync, rename, owner-only like the other data files), or with
``AISLE_DATABASE_URL`` a PostgreSQL table (``aisle.service.query_log_postgres``). Processes
sharing the store (workers of one data directory, replicas of one database) add up their counts,
and each one reads the others' at its next flush.
"""

from __future__ import annotations

import bisect
import fcntl
import heapq
import json
import logging
import os
import re
import threading
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from aisle.index.sqlite_store import PRIVATE_FILE_MODE, ensure_private_dir
from aisle.index.storage import atomic_file

if TYPE_CHECKING:
    from aisle.service.settings import ServiceSettings

log = logging.getLogger(__name__)

LOG_FILE = "query_log.json"
LOG_FORMAT = 1
#: Longest query text counted (longer ones are pasted text, not queries worth suggesting).
MAX_TEXT_CHARS = 80
#: Prefixes this short have their best texts listed in advance...
SHORT_PREFIX = 2
#: ...this many of them.
SHORT_PREFIX_KEPT = 32
_PERSONAL = re.compile(r"@|\d{7,}")
_SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    """The form a query is counted and matched under: case-folded, spaces collapsed."""
    return _SPACES.sub(" ", text.casefold()).strip()


def prune(counts: Counter[str], capacity: int) -> None:
    """Drops the least counted texts beyond ``capacity`` (the oldest-looking first on ties)."""
    if len(counts) <= capacity:
        return
    for text, _ in counts.most_common()[capacity:]:
        del counts[text]


class CountStore(Protocol):
    """Where the counts of every process sharing them are kept."""

    def load(self) -> Counter[str]:
        """Every stored count."""
        ...

    def merge(self, pending: Counter[str], capacity: int) -> Counter[str]:
        """Adds ``pending`` to the stored counts, keeps the ``capacity`` most counted, returns them all."""
        ...

    def close(self) -> None: ...


class FileCounts:
    """The counts in ``query_log.json`` under ``directory`` (see the module docstring)."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / LOG_FILE

    def load(self) -> Counter[str]:
        if not self.path.is_file():
            return Counter()
        try:
            payload = json.loads(self.path.read_text(encoding="utf-8"))
            if payload.get("format") != LOG_FORMAT:
                raise ValueError(f"format {payload.get('format')!r}")
            return Counter({str(text): int(count) for text, count in payload["counts"].items()})
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("query log %s unreadable (%s); starting a new one", self.path, exc)
            return Counter()

    def merge(self, pending: Counter[str], capacity: int) -> Counter[str]:
        ensure_private_dir(self.path.parent)
        lock_fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
        os.fchmod(lock_fd, PRIVATE_FILE_MODE)  # O_CREAT's mode passes through the umask
        with os.fdopen(lock_fd, "r+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                counts = self.load()
                counts.update(pending)
                prune(counts, capacity)
                if pending:
                    payload = json.dumps({"format": LOG_FORMAT, "counts": dict(counts)}, ensure_ascii=False)
                    with atomic_file(self.path, mode=PRIVATE_FILE_MODE) as handle:
                        handle.write(payload.encode("utf-8"))
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        return counts

    def close(self) -> None:
        """Nothing held between flushes."""


class QueryLog:
    """Counts of the shop's query texts (see the module docstring).

    Args:
        store: where the counts are shared (None: this process's memory only).
        capacity: most texts kept.
        min_count: searches before a text is suggested.
        flush_interval_s: how often the counts are merged into the store (0: only by ``flush``).
    """

    def __init__(
        self,
        store: CountStore | None,
        *,
        capacity: int = 20_000,
        min_count: int = 3,
        flush_interval_s: float = 5.0,
    ) -> None:
        self.store = store
        self.capacity = capacity
        self.min_count = min_count
        self.flush_interval_s = flush_interval_s
        self._counts: Counter[str] = Counter()
        self._pending: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._snapshot: tuple[list[str], list[int], dict[str, list[int]]] = ([], [], {})
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.store is not None:
            self._counts = self.store.load()
        self._refresh_snapshot()

    def record(self, text: str) -> None:
        """Counts one search for ``text`` (ignored when it looks personal or is too long)."""
        key = normalise(text)
        if not key or len(key) > MAX_TEXT_CHARS or _PERSONAL.search(key):
            return
        with self._lock:
            self._pending[key] += 1

    def completions(self, prefix: str, limit: int) -> list[tuple[str, int]]:
        """Up to ``limit`` counted texts starting with ``prefix`` (searched at least
        ``min_count`` times), most searched first."""
        key = normalise(prefix)
        texts, counts, short = self._snapshot
        if not key or limit <= 0:
            return []
        if len(key) <= SHORT_PREFIX:
            found = short.get(key, [])[:limit]
        else:
            start = bisect.bisect_left(texts, key)
            end = bisect.bisect_left(texts, key + "\U0010ffff", start)
            found = heapq.nsmallest(limit, range(start, end), key=lambda at: (-counts[at], texts[at]))
        return [(texts[at], counts[at]) for at in found]

    def flush(self) -> None:
        """Merges the counts since the last flush into the store (and the store's into memory).

        Raises:
            OSError, RuntimeError: the store could not be written; the counts are kept for the next flush.
        """
        with self._lock:
            pending, self._pending = self._pending, Counter()
        if self.store is None:
            self._counts.update(pending)
            prune(self._counts, self.capacity)
            self._refresh_snapshot()
            return
        try:
            self._counts = self.store.merge(pending, self.capacity)
        except BaseException:
            with self._lock:
                self._pending.update(pending)
            raise
        self._refresh_snapshot()

    def start(self) -> None:
        """Flushes every ``flush_interval_s`` in a background thread until ``close``."""
        if self._thread is not None or self.flush_interval_s <= 0:
            return
        self._thread = threading.Thread(target=self._run, name="aisle-query-log", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stops the background flushes, flushes what is left and releases the store."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            self.flush()
        finally:
            if self.store is not None:
                self.store.close()

    def __len__(self) -> int:
        return len(self._counts)

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            try:
                self.flush()
            except (
                OSError,
                ValueError,
                RuntimeError,
            ) as exc:  # a full disk or a lost database must not stop the service
                log.warning("query log not saved: %s", exc)

    def _refresh_snapshot(self) -> None:
        """The texts shown, sorted (for prefix ranges), and the best ones of every prefix of up
        to ``SHORT_PREFIX`` characters ready-made (those ranges are long)."""
        shown = sorted((text, count) for text, count in self._counts.items() if count >= self.min_count)
        texts, counts = [text for text, _ in shown], [count for _, count in shown]
        short: dict[str, list[int]] = {}
        for at in sorted(range(len(texts)), key=lambda at: (-counts[at], texts[at])):
            for length in range(1, SHORT_PREFIX + 1):
                best = short.setdefault(texts[at][:length], [])
                if len(best) < SHORT_PREFIX_KEPT:
                    best.append(at)
        self._snapshot = (texts, counts, short)  # one tuple, replaced whole: safe for readers


def open_query_log(settings: ServiceSettings) -> QueryLog:
    """The query log over PostgreSQL when ``database_url`` is set (every replica's searches
    suggest), else over ``query_log.json`` in ``data_dir``."""
    store: CountStore
    if settings.database_url:
        from aisle.service.query_log_postgres import PostgresCounts

        store = PostgresCounts(settings.database_url)
    else:
        store = FileCounts(settings.data_dir)
    return QueryLog(store, capacity=settings.query_log_size, min_count=settings.query_log_min_count)
