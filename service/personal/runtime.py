"""Opening and closing personalization with the app: id secret, event store, profiles.

``Personalization.open`` loads (or creates) the id secret, opens the event store, builds the
statistics for the served index version (from the data directory's snapshot and the events after
it, or from the whole log), subscribes the profiles to new commits and to index swaps, then
starts the writer and the snapshot thread. ``close`` commits what is queued, closes the store
and writes a last snapshot; the app calls it after the last request has finished.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from aisle.service.events.identity import IdHasher, load_or_create_secret
from aisle.service.events.store import EVENTS_FILE, EventStore
from aisle.service.holder import IndexHolder
from aisle.service.personal.collaborative import CollaborativeScorer
from aisle.service.personal.config import PersonalConfig
from aisle.service.personal.profiles import ProfileService
from aisle.service.personal.snapshot import ProfileSnapshots
from aisle.service.settings import ServiceSettings

log = logging.getLogger(__name__)


@dataclass
class Personalization:
    """The event store, the profiles built from it and the settings they use."""

    config: PersonalConfig
    hasher: IdHasher
    store: EventStore
    profiles: ProfileService
    snapshot_s: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    #: The served model's collaborative vectors (None: it has none).
    collaborative: CollaborativeScorer | None = None

    @classmethod
    def open(cls, settings: ServiceSettings, holder: IndexHolder) -> Personalization:
        """Opens the store under ``settings.data_dir`` and builds the profiles for ``holder``.

        Raises:
            ValueError: invalid personalization settings, a damaged id secret or damaged
                collaborative vectors in the model directory.
            EventStoreError: the store cannot be opened (e.g. written with another secret).
        """
        config = PersonalConfig.from_settings(settings)
        collaborative = CollaborativeScorer.from_model(settings.model)
        hasher = IdHasher(load_or_create_secret(settings.data_dir))
        store = open_event_store(settings, hasher.check_value())
        snapshots = ProfileSnapshots(settings.data_dir, store_identity(store))
        profiles = ProfileService(hasher, config, store, refresh_s=settings.profile_refresh_s, snapshots=snapshots)
        try:
            profiles.attach(holder.engine)
            store.on_commit = profiles.apply
            holder.add_swap_listener(profiles.attach)
            store.start()
        except BaseException:
            store.close()
            raise
        log.info("personalization ready: %d stored events, %s", store.count(), profiles.counts())
        runtime = cls(
            config, hasher, store, profiles, snapshot_s=settings.profile_snapshot_s, collaborative=collaborative
        )
        if runtime.snapshot_s > 0:
            runtime._thread = threading.Thread(target=runtime._snapshots, name="aisle-profile-snapshots", daemon=True)
            runtime._thread.start()
        return runtime

    def _snapshots(self) -> None:
        """Snapshots the statistics every ``snapshot_s`` while events arrive (bounds the replay
        a restart after a crash needs)."""
        written = self.store.last_seq()
        while not self._stop.wait(self.snapshot_s):
            try:
                latest = self.store.last_seq()
                if latest != written:
                    self.profiles.snapshot()
                    written = latest
            except Exception:  # the next period retries; a restart falls back to a longer replay
                log.exception("profile snapshot failed")

    def close(self) -> None:
        """Stops the snapshot thread, commits what is queued, then snapshots what it counted."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self.store.close()
        if self.snapshot_s > 0:
            try:
                self.profiles.snapshot()
            except Exception:
                log.exception("profile snapshot at shutdown failed; the next start replays more of the log")


def store_identity(store: EventStore) -> str:
    """Names the event store a snapshot's counts come from (a redacted URL or the file's path)."""
    location = getattr(store, "location", None)
    return str(location) if location else str(store.path.resolve())


def open_event_store(settings: ServiceSettings, id_check: str) -> EventStore:
    """PostgreSQL when ``database_url`` is set (replicas share it), else SQLite in ``data_dir``."""
    if settings.database_url:
        from aisle.service.events.postgres import PostgresEventStore

        return PostgresEventStore(settings.database_url, id_check=id_check)
    max_bytes = int(settings.events_max_db_mb * 1_000_000) if settings.events_max_db_mb else None
    return EventStore(settings.data_dir / EVENTS_FILE, id_check=id_check, max_bytes=max_bytes)
