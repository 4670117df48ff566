"""Event intake: durable, idempotent storage of interactions with hashed user and session ids."""

from service.events.identity import IdHasher, load_or_create_secret
from service.events.store import (
    AppendResult,
    EventStore,
    EventStoreError,
    EventStoreUnavailable,
    StoredEvent,
)

__all__ = [
    "AppendResult", "EventStore", "EventStoreError", "EventStoreUnavailable", "IdHasher",
    "StoredEvent", "load_or_create_secret",
]
