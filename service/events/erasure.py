"""Erasure and retention kept true in every worker: profiles follow deletions from the log.

Profiles, popularity and "bought together" counts are derived from the event log in memory, and
a worker only reads events appended after the last one it applied: a deletion is invisible to
that. So every deletion (``EventStore.erase_user``, ``EventStore.purge_older_than``) moves an
erasure counter in the store, and ``ErasureWatcher`` rebuilds this process's derived state from
the log whenever the counter has moved, within ``interval_s``. A restart or a new index version
replays the log, which no longer holds the erased events, so they stay gone.

The watcher also applies the retention period: at start and every ``RETENTION_CHECK_S``, events
older than ``retention_days`` are deleted (by each worker; the deletions are idempotent).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from aisle.service.events.store import EventStore, EventStoreError

log = logging.getLogger(__name__)

#: Seconds between two retention purges.
RETENTION_CHECK_S = 3600.0
SECONDS_PER_DAY = 86400.0


class ErasureWatcher:
    """A daemon thread: rebuilds derived state when the log lost events; purges expired events.

    Args:
        store: the event store.
        rebuild: rebuilds this process's profiles from the log (``ProfileService.attach``).
        interval_s: how often the erasure counter is read.
        retention_days: events older than this are deleted; None keeps them.
        clock: the current Unix time (injectable for tests).
    """

    def __init__(
        self,
        store: EventStore,
        rebuild: Callable[[], None],
        *,
        interval_s: float = 1.0,
        retention_days: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.rebuild = rebuild
        self.interval_s = interval_s
        self.retention_days = retention_days
        self.clock = clock
        self._seen = store.erasures()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_purge = 0.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="aisle-erasure-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def catch_up(self) -> bool:
        """Rebuilds when the log lost events since the last rebuild; returns whether it did."""
        with self._lock:
            current = self.store.erasures()
            if current == self._seen:
                return False
            started = time.perf_counter()
            self.rebuild()
            self._seen = current  # read before the rebuild: a later erasure triggers another
            log.info("profiles rebuilt after an erasure in %.2f s", time.perf_counter() - started)
            return True

    def purge_expired(self) -> int:
        """Deletes the events older than the retention period; returns how many."""
        if self.retention_days is None:
            return 0
        cutoff = self.clock() - self.retention_days * SECONDS_PER_DAY
        purged = self.store.purge_older_than(cutoff)
        if purged:
            log.info("retention: deleted %d events older than %g days", purged, self.retention_days)
            self.catch_up()
        return purged

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if self.retention_days is not None and time.monotonic() >= self._next_purge:
                    self._next_purge = time.monotonic() + RETENTION_CHECK_S
                    self.purge_expired()
                self.catch_up()
            except EventStoreError as exc:
                log.warning("erasure watcher: %s; will retry", exc)
            except Exception:  # the watcher must outlive any surprise
                log.exception("erasure watcher: unexpected error; will retry")
