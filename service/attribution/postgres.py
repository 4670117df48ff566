"""Attribution in PostgreSQL: every replica's served responses, exposures, looks and attributed events.

With ``AISLE_DATABASE_URL`` the attributions are written by the event store
(``aisle.service.events.postgres``) in the events' own transaction, and each replica's served
responses, experiment exposures and report looks go to the same database, so that a click on one
replica is attributed to a response another served, and every replica's report counts every
visitor. The SQL of the reports is the embedded backend's (``ServedLog.query``): only table names
and parameter marks differ.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aisle.index.postgres_store import Connection, psycopg_module
from aisle.service.attribution.records import ATTRIBUTION_COLUMNS, attribution_row
from aisle.service.attribution.resolve import LATEST_CLICK_SQL, ClickFinder
from aisle.service.attribution.served import Served, ServedLog, served_rows
from aisle.service.events.store import EventStoreUnavailable, StoredEvent

#: Taken while creating tables (the events store's lock): replicas starting together create them once.
SCHEMA_LOCK = 0x41_49_53_4C_45

ATTRIBUTION_SCHEMA = """
CREATE TABLE IF NOT EXISTS aisle_attributions (
    event_key TEXT PRIMARY KEY,
    user_key TEXT,
    session_key TEXT,
    type TEXT NOT NULL,
    item_id TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    revenue DOUBLE PRECISION,
    request_id TEXT,
    position INTEGER,
    surface TEXT,
    query TEXT,
    experiment TEXT,
    variant TEXT,
    segment TEXT,
    via TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS aisle_attributions_by_user ON aisle_attributions(user_key, ts) WHERE user_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS aisle_attributions_by_session
    ON aisle_attributions(session_key, ts) WHERE session_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS aisle_attributions_by_request
    ON aisle_attributions(request_id) WHERE request_id IS NOT NULL;
"""
SERVED_SCHEMA = """
CREATE TABLE IF NOT EXISTS aisle_served (
    request_id TEXT PRIMARY KEY,
    ts DOUBLE PRECISION NOT NULL,
    surface TEXT NOT NULL,
    query TEXT,
    user_key TEXT,
    session_key TEXT,
    experiment TEXT,
    variant TEXT,
    segment TEXT,
    items TEXT NOT NULL,
    results INTEGER NOT NULL,
    index_version TEXT
);
CREATE INDEX IF NOT EXISTS aisle_served_by_ts ON aisle_served(ts);
CREATE TABLE IF NOT EXISTS aisle_exposures (
    experiment TEXT NOT NULL,
    unit_key TEXT NOT NULL,
    variant TEXT NOT NULL,
    segment TEXT,
    first_ts DOUBLE PRECISION NOT NULL,
    last_ts DOUBLE PRECISION NOT NULL,
    impressions BIGINT NOT NULL,
    PRIMARY KEY (experiment, unit_key)
);
CREATE TABLE IF NOT EXISTS aisle_looks (
    experiment TEXT NOT NULL,
    metric TEXT NOT NULL,
    variant TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    p_value DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS aisle_looks_by_experiment ON aisle_looks(experiment, metric, variant);
"""
_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


class AttributionStoreError(EventStoreUnavailable):
    """The attribution tables cannot be reached or written: like the events, retry later (503)."""


def insert_attributions(conn: Any, events: Iterable[StoredEvent]) -> None:
    """Writes the events' attributions inside the caller's (the event store's) transaction."""
    rows = [
        attribution_row(e.event_key, e.user_key, e.session_key, e.type, e.item_id, e.timestamp, e.attribution)
        for e in events
        if e.attribution is not None
    ]
    if rows:
        with conn.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO aisle_attributions({ATTRIBUTION_COLUMNS}) VALUES ({', '.join(['%s'] * 15)})"
                " ON CONFLICT (event_key) DO NOTHING",
                rows,
            )


def erase_attributions(conn: Any, user_key: str, session_keys: list[str]) -> int:
    """Deletes a user's attributions (their own and their linked sessions'), inside the caller's transaction."""
    return int(
        conn.execute(
            "DELETE FROM aisle_attributions WHERE user_key = %s OR session_key = ANY(%s)", (user_key, session_keys)
        ).rowcount
    )


def create_schema(conn: Any, schema: str) -> None:
    """Creates tables once, whichever replica comes first (``conn`` not in autocommit)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        conn.execute(schema)


def postgres_sql(sql: str) -> str:
    """``:name`` parameters (the SQLite form the reports are written in) as psycopg's ``%(name)s``."""
    return _NAMED.sub(r"%(\1)s", sql)


class PostgresServedLog(ServedLog):
    """The served-response log, exposures and looks of every replica in PostgreSQL.

    Args:
        url: a libpq connection URL.
        retention_s, max_rows, memory_rows, flush_interval_s: as for :class:`ServedLog`.
    """

    tables = {
        "served": "aisle_served",
        "exposures": "aisle_exposures",
        "looks": "aisle_looks",
        "attributions": "aisle_attributions",
    }

    def __init__(
        self,
        url: str,
        *,
        retention_s: float,
        max_rows: int,
        memory_rows: int = 100_000,
        flush_interval_s: float = 0.25,
    ) -> None:
        self.url = url
        super().__init__(
            Path(),
            retention_s=retention_s,
            max_rows=max_rows,
            memory_rows=memory_rows,
            flush_interval_s=flush_interval_s,
            events_path=Path(),
        )

    def _open(self) -> None:
        psycopg = psycopg_module(AttributionStoreError)
        self._pg = Connection(self.url, AttributionStoreError, "attribution")
        self._writer = self._pg.connect(autocommit=False)
        try:
            # The attributions too: a report may run (aisle experiments report) before any event.
            create_schema(self._writer, SERVED_SCHEMA + ATTRIBUTION_SCHEMA)
        except psycopg.Error as exc:
            self._close()
            raise AttributionStoreError(
                f"cannot prepare the attribution tables in {self._pg.location}: {exc}"
            ) from None

    def _transaction(self) -> Any:
        if self._writer.closed or self._writer.broken:
            self._writer.close()
            self._writer = self._pg.connect(autocommit=False)
        return self._writer.transaction()

    def _write(self, pending: Iterable[Served]) -> None:
        pending = list(pending)
        # Sorted, so that replicas updating the same visitors lock their rows in one order (no deadlock).
        exposures = sorted(
            (
                (served.experiment, served.unit_key, served.variant, served.segment, served.ts, served.ts)
                for served in pending
                if served.experiment is not None and served.unit_key is not None
            ),
            key=lambda row: (row[0], row[1], row[4]),
        )
        with self._transaction(), self._writer.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO aisle_served(request_id, ts, surface, items, query, user_key, session_key, experiment,"
                " variant, segment, index_version, results) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (request_id) DO UPDATE SET ts = excluded.ts, items = excluded.items,"
                " results = excluded.results",
                [(*row, len(served.items)) for row, served in zip(served_rows(pending), pending, strict=True)],
            )
            if exposures:
                # The first exposure fixes the variant and the segment the visitor is reported under.
                cursor.executemany(
                    "INSERT INTO aisle_exposures(experiment, unit_key, variant, segment, first_ts, last_ts, impressions)"
                    " VALUES (%s, %s, %s, %s, %s, %s, 1) ON CONFLICT (experiment, unit_key) DO UPDATE SET"
                    " impressions = aisle_exposures.impressions + 1,"
                    " last_ts = greatest(aisle_exposures.last_ts, excluded.last_ts),"
                    " first_ts = least(aisle_exposures.first_ts, excluded.first_ts)",
                    exposures,
                )

    def _prune(self, cutoff: float) -> int:
        with self._transaction():
            deleted = self._writer.execute("DELETE FROM aisle_served WHERE ts < %s", (cutoff,)).rowcount
            deleted += self._writer.execute(
                "DELETE FROM aisle_served WHERE request_id IN"
                " (SELECT request_id FROM aisle_served ORDER BY ts DESC OFFSET %s)",
                (self.max_rows,),
            ).rowcount
        return int(deleted)

    def _erase(self, keys: list[str]) -> int:
        with self._flush_lock, self._transaction():
            deleted = self._writer.execute(
                "DELETE FROM aisle_served WHERE user_key = ANY(%(keys)s) OR session_key = ANY(%(keys)s)",
                {"keys": keys},
            ).rowcount
            deleted += self._writer.execute("DELETE FROM aisle_exposures WHERE unit_key = ANY(%s)", (keys,)).rowcount
        return int(deleted)

    def query(self, sql: str, params: dict[str, Any]) -> list[tuple]:
        return self._pg.execute(postgres_sql(sql.format(**self.tables)), params)

    def record_look(self, experiment: str, metric: str, variant: str, ts: float, p_value: float) -> float:
        rows = self._pg.execute(
            "WITH look AS (INSERT INTO aisle_looks(experiment, metric, variant, ts, p_value)"
            " VALUES (%(e)s, %(m)s, %(v)s, %(ts)s, %(p)s) RETURNING p_value)"
            " SELECT least((SELECT p_value FROM look), (SELECT min(p_value) FROM aisle_looks"
            " WHERE experiment = %(e)s AND metric = %(m)s AND variant = %(v)s))",
            {"e": experiment, "m": metric, "v": variant, "ts": ts, "p": p_value},
        )
        return float(rows[0][0])

    def _close(self) -> None:
        self._writer.close()
        self._pg.close()


class PostgresClickFinder(ClickFinder):
    """Finds a visitor's latest attributed click in PostgreSQL (one shared reading connection)."""

    def __init__(self, url: str) -> None:
        self._pg = Connection(url, AttributionStoreError, "attribution")

    def batch(self) -> ClickFinder:
        return self

    def close(self) -> None:
        """Nothing per batch: the connection lives until ``shutdown``."""

    def shutdown(self) -> None:
        self._pg.close()

    def _latest(self, column: str, key: str, since: float, item_id: str) -> tuple | None:
        sql = LATEST_CLICK_SQL.format(table="aisle_attributions", column=column, mark="%s")
        rows = self._pg.execute(sql, (key, since, item_id))
        return rows[0] if rows else None
