"""The attribution of one event, stored beside it in the event database, in the same transaction.

Every click, add-to-cart and purchase (and any event naming a ``request_id``) gets one row in
``attributions``: the event's own facts (type, item, time, revenue, hashed ids) plus what led to
it: the served response's request id, surface, normalised query, 1-based position, experiment,
variant and segment. ``via`` says how: ``request`` (the event named the response), ``window``
(a purchase of an item the same visitor clicked within the attribution window) or ``none``.
Writing it in the event's own transaction means an acknowledged event never loses its
attribution, whatever happens to the served-response log afterwards.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

ATTRIBUTION_TABLE = """
CREATE TABLE IF NOT EXISTS attributions (
    event_key TEXT PRIMARY KEY,
    user_key TEXT,
    session_key TEXT,
    type TEXT NOT NULL,
    item_id TEXT NOT NULL,
    ts REAL NOT NULL,
    revenue REAL,
    request_id TEXT,
    position INTEGER,
    surface TEXT,
    query TEXT,
    experiment TEXT,
    variant TEXT,
    segment TEXT,
    via TEXT NOT NULL
)
"""
ATTRIBUTION_SCHEMA = (
    ATTRIBUTION_TABLE
    + """;
CREATE INDEX IF NOT EXISTS attributions_by_user ON attributions(user_key, ts) WHERE user_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS attributions_by_session ON attributions(session_key, ts) WHERE session_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS attributions_by_request ON attributions(request_id) WHERE request_id IS NOT NULL;
"""
)

#: Event types whose attribution is always recorded (outcomes), with or without a request id.
OUTCOMES = ("click", "add_to_cart", "purchase")


@dataclass(frozen=True)
class Attribution:
    """What led to an event; the event's ids and time come from the ``StoredEvent``."""

    revenue: float | None = None
    request_id: str | None = None
    position: int | None = None
    surface: str | None = None
    query: str | None = None
    experiment: str | None = None
    variant: str | None = None
    segment: str | None = None
    via: str = "none"


def insert_attribution(
    conn: sqlite3.Connection,
    event_key: str,
    user_key: str | None,
    session_key: str | None,
    event_type: str,
    item_id: str,
    ts: float,
    attribution: Attribution,
) -> None:
    """Writes one row inside the caller's (the event store's) transaction."""
    conn.execute(
        f"INSERT OR IGNORE INTO attributions({ATTRIBUTION_COLUMNS}) VALUES ({', '.join('?' * 15)})",
        attribution_row(event_key, user_key, session_key, event_type, item_id, ts, attribution),
    )


#: The stored columns, in ``attribution_row``'s order.
ATTRIBUTION_COLUMNS = (
    "event_key, user_key, session_key, type, item_id, ts, revenue, request_id, position, surface, query,"
    " experiment, variant, segment, via"
)


def attribution_row(
    event_key: str,
    user_key: str | None,
    session_key: str | None,
    event_type: str,
    item_id: str,
    ts: float,
    attribution: Attribution,
) -> tuple:
    """One stored row (``ATTRIBUTION_COLUMNS``)."""
    return (
        event_key,
        user_key,
        session_key,
        event_type,
        item_id,
        ts,
        attribution.revenue,
        attribution.request_id,
        attribution.position,
        attribution.surface,
        attribution.query,
        attribution.experiment,
        attribution.variant,
        attribution.segment,
        attribution.via,
    )


def erase_attributions(conn: sqlite3.Connection, user_key: str, session_keys: list[str]) -> int:
    """Deletes a user's attributions (their own and their linked sessions'), inside the caller's
    transaction: what ``DELETE /users/{id}`` must erase with the user's events."""
    deleted = conn.execute("DELETE FROM attributions WHERE user_key = ?", (user_key,)).rowcount
    for session_key in session_keys:
        deleted += conn.execute("DELETE FROM attributions WHERE session_key = ?", (session_key,)).rowcount
    return deleted
