"""Watches the ``current`` pointer of the index root and hot-swaps a newly published version.

``aisle build`` publishes by replacing the ``current`` symlink atomically; this thread notices
the change within ``interval_s`` and calls ``IndexHolder.reload()``, which validates the new
version before swapping. A refused version is logged once (not on every tick) and the old
version keeps serving until the pointer moves again.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from aisle.index.manifest import IndexValidationError
from aisle.index.versions import VersionError
from aisle.service.holder import IndexHolder

log = logging.getLogger(__name__)


class IndexWatcher:
    """A daemon thread polling the ``current`` pointer every ``interval_s`` seconds."""

    def __init__(self, holder: IndexHolder, interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError("the watch interval must be positive (0 disables watching: do not start one)")
        self.holder = holder
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refused: Path | None = None  # a version already refused: not retried every tick
        self._missing_logged = False

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the index watcher is already running")
        self._thread = threading.Thread(target=self._run, name="aisle-index-watcher", daemon=True)
        self._thread.start()
        log.info("watching %s/current every %.1f s", self.holder.store.root, self.interval_s)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stops the thread, waiting for a reload in progress to finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def check_once(self) -> bool:
        """One poll: reloads if the pointer moved to a version not yet tried. Returns True on a swap."""
        try:
            pending = self.holder.pending_path()
        except (VersionError, OSError) as exc:
            if not self._missing_logged:
                log.warning("index watcher: cannot read the current pointer: %s", exc)
                self._missing_logged = True
            return False
        self._missing_logged = False
        refused_at_start = self.holder.last_refusal.path if self.holder.last_refusal is not None else None
        if pending is None or pending in (self._refused, refused_at_start):
            return False
        try:
            swapped, _ = self.holder.reload()
        except IndexValidationError:
            self._refused = pending  # the holder logged why; wait for the next publication
            return False
        except VersionError as exc:
            log.warning("index watcher: %s", exc)
            return False
        self._refused = None
        return swapped

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check_once()
            except Exception:  # the watcher must outlive any surprise; the old version keeps serving
                log.exception("index watcher: unexpected error; will retry")
