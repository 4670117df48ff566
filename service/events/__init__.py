"""Event intake: durable, idempotent storage of interactions with hashed user and session ids."""

from aisle.service.events.identity import IdHasher, load_or_create_secret
from aisle.service.events.store import (
    AppendResult,
    EventStore,
    EventStoreError,
    EventStoreUnavailable,
    StoredEvent,
)

__all__ = [
    "AppendResult",
    "EventStore",
    "EventStoreError",
    "EventStoreUnavailable",
    "IdHasher",
    "StoredEvent",
    "load_or_create_secret",
]
