"""Attributing incoming events to the responses that led to them, before they are stored.

* An event naming a ``request_id`` is attributed to that response (``via = request``): its
  surface, query, experiment, variant and segment; ``position`` is the one sent, or else the
  item's position in the response.
* A purchase or add-to-cart without one is attributed to the same visitor's latest attributed
  click on the same item within the attribution window (``via = window``), looked up first in
  the batch itself (a click and its purchase may arrive together), then in the event database.
* Any other outcome is stored unattributed (``via = none``), so that totals (revenue,
  conversions per visitor) stay complete.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from aisle.index.sqlite_store import open_reader
from aisle.service.attribution.records import OUTCOMES, Attribution
from aisle.service.attribution.served import ServedLog
from aisle.service.events.store import EVENTS_FILE, StoredEvent

if TYPE_CHECKING:
    from aisle.service.settings import ServiceSettings

_WINDOWED = ("purchase", "add_to_cart")


#: A visitor's latest attributed click on an item since a time (``{column}``: user or session key).
LATEST_CLICK_SQL = (
    "SELECT ts, request_id, position, surface, query, experiment, variant, segment FROM {table}"
    " WHERE {column} = {mark} AND ts >= {mark} AND type = 'click' AND item_id = {mark} AND via != 'none'"
    " ORDER BY ts DESC LIMIT 1"
)


class ClickFinder:
    """Finds a visitor's latest attributed click on an item in the event database (read-only).

    One read connection per batch, opened on the first lookup and closed with ``close``
    (PostgreSQL: ``aisle.service.attribution.postgres.PostgresClickFinder``).
    """

    def __init__(self, events_path: Path) -> None:
        self.events_path = Path(events_path)
        self._conn: sqlite3.Connection | None = None

    def batch(self) -> ClickFinder:
        """A finder for one batch (its own connection; call ``close`` when done)."""
        return ClickFinder(self.events_path)

    def close(self) -> None:
        """Closes the batch's connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def shutdown(self) -> None:
        """Releases what the finder holds for the service's lifetime (nothing here: per batch)."""

    def latest_click(
        self, user_key: str | None, session_key: str | None, item_id: str, since: float
    ) -> Attribution | None:
        best: tuple | None = None
        for column, key in (("user_key", user_key), ("session_key", session_key)):
            if not key:
                continue
            row = self._latest(column, key, since, item_id)
            if row is not None and (best is None or row[0] > best[0]):
                best = row
        if best is None:
            return None
        _, request_id, position, surface, query, experiment, variant, segment = best
        return Attribution(None, request_id, position, surface, query, experiment, variant, segment, "window")

    def _latest(self, column: str, key: str, since: float, item_id: str) -> tuple | None:
        if self._conn is None:
            if not self.events_path.exists():
                return None
            self._conn = open_reader(self.events_path)
        sql = LATEST_CLICK_SQL.format(table="attributions", column=column, mark="?")
        return self._conn.execute(sql, (key, since, item_id)).fetchone()


def open_click_finder(settings: ServiceSettings) -> ClickFinder:
    """Where attributed clicks are looked up: the event store's database (see ``open_event_store``)."""
    if settings.database_url:
        from aisle.service.attribution.postgres import PostgresClickFinder

        return PostgresClickFinder(settings.database_url)
    return ClickFinder(settings.data_dir / EVENTS_FILE)


def attribute(
    events: Sequence[StoredEvent],
    raw: Sequence[tuple[str | None, int | None, float | None]],
    served_log: ServedLog,
    clicks: ClickFinder,
    window_s: float,
) -> list[StoredEvent]:
    """``events`` with their ``attribution`` set; ``raw`` is each event's (request_id, position, revenue)."""
    out: list[StoredEvent] = []
    batch_clicks: dict[tuple[str, str], tuple[float, Attribution]] = {}
    finder = clicks.batch()
    try:
        for event, (request_id, position, revenue) in zip(events, raw):
            attribution = _attribution(event, request_id, position, revenue, served_log, finder, window_s, batch_clicks)
            if attribution is not None and event.type == "click" and attribution.via != "none":
                for key in (event.user_key, event.session_key):
                    if key:
                        batch_clicks[(key, event.item_id)] = (event.timestamp, attribution)
            out.append(replace(event, attribution=attribution) if attribution is not None else event)
    finally:
        finder.close()
    return out


def _attribution(
    event: StoredEvent,
    request_id: str | None,
    position: int | None,
    revenue: float | None,
    served_log: ServedLog,
    clicks: ClickFinder,
    window_s: float,
    batch_clicks: dict[tuple[str, str], tuple[float, Attribution]],
) -> Attribution | None:
    if request_id is not None:
        served = served_log.get(request_id)
        if served is None:  # unknown or expired: keep what the event says
            return Attribution(revenue, request_id, position, via="none")
        return Attribution(
            revenue,
            request_id,
            position if position is not None else served.position_of(event.item_id),
            served.surface,
            served.query,
            served.experiment,
            served.variant,
            served.segment,
            "request",
        )
    if event.type not in OUTCOMES and revenue is None:
        return None
    if event.type in _WINDOWED:
        since = event.timestamp - window_s
        found: Attribution | None = None
        for key in (event.user_key, event.session_key):
            if key and (key, event.item_id) in batch_clicks:
                ts, candidate = batch_clicks[(key, event.item_id)]
                if ts >= since:
                    found = candidate
        if found is None:
            found = clicks.latest_click(event.user_key, event.session_key, event.item_id, since)
        if found is not None:
            return replace(found, revenue=revenue, via="window", position=position or found.position)
    return Attribution(revenue, None, position, via="none")
