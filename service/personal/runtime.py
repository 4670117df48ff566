"""Opening and closing personalization with the app: id secret, event store, profiles.

``Personalization.open`` loads (or creates) the id secret, opens the event store, builds every
profile from the stored events for the served index version, subscribes the profiles to new
commits and to index swaps, then starts the writer. ``close`` commits what is queued and closes
the store; the app calls it after the last request has finished.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from aisle.service.events.identity import IdHasher, load_or_create_secret
from aisle.service.events.store import EVENTS_FILE, EventStore
from aisle.service.holder import IndexHolder
from aisle.service.personal.collaborative import CollaborativeScorer
from aisle.service.personal.config import PersonalConfig
from aisle.service.personal.profiles import ProfileService
from aisle.service.settings import ServiceSettings

log = logging.getLogger(__name__)


@dataclass
class Personalization:
    """The event store, the profiles built from it and the settings they use."""

    config: PersonalConfig
    hasher: IdHasher
    store: EventStore
    profiles: ProfileService
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
        profiles = ProfileService(hasher, config, store, refresh_s=settings.profile_refresh_s)
        try:
            profiles.attach(holder.engine)
            store.on_commit = profiles.apply
            holder.add_swap_listener(profiles.attach)
            store.start()
        except BaseException:
            store.close()
            raise
        log.info("personalization ready: %d stored events, %s", store.count(), profiles.counts())
        return cls(config, hasher, store, profiles, collaborative)

    def close(self) -> None:
        self.store.close()


def open_event_store(settings: ServiceSettings, id_check: str) -> EventStore:
    """PostgreSQL when ``database_url`` is set (replicas share it), else SQLite in ``data_dir``."""
    if settings.database_url:
        from aisle.service.events.postgres import PostgresEventStore

        return PostgresEventStore(settings.database_url, id_check=id_check)
    max_bytes = int(settings.events_max_db_mb * 1_000_000) if settings.events_max_db_mb else None
    return EventStore(settings.data_dir / EVENTS_FILE, id_check=id_check, max_bytes=max_bytes)
