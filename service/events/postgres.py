"""The event log in PostgreSQL, for several ``aisle serve`` replicas serving one shop.

The same contract as the embedded SQLite store (:class:`~aisle.service.events.store.EventStore`,
whose group-committing writer thread this class keeps): an event is acknowledged once its
transaction has committed, ``event_key`` makes re-sent events harmless, and ``seq`` is the commit
order. Replicas follow each other by reading the events after the last ``seq`` they have seen,
which is only safe if a row with a smaller ``seq`` can never commit after one with a larger:
every writing transaction therefore takes one transaction-level advisory lock before it draws
sequence numbers, so writers from all replicas commit one batch at a time, in ``seq`` order
(group commit keeps that cheap: one lock and one fsync per batch, not per event).

The connection string comes from ``AISLE_DATABASE_URL`` (``postgresql://user:pass@host/db``).
Tables are created on first use, prefixed ``aisle_``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from aisle.index.postgres_store import psycopg_module, redacted
from aisle.index.sqlite_store import Pending
from aisle.service.attribution.postgres import ATTRIBUTION_SCHEMA, erase_attributions, insert_attributions
from aisle.service.events.store import (
    ERASURES_KEY,
    SCHEMA_VERSION,
    AppendResult,
    Erasure,
    EventStore,
    EventStoreError,
    EventStoreUnavailable,
    StoredEvent,
)

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS aisle_events (
    seq BIGSERIAL PRIMARY KEY,
    event_key TEXT NOT NULL UNIQUE,
    user_key TEXT,
    session_key TEXT,
    item_id TEXT NOT NULL,
    type TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    received DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS aisle_events_by_user ON aisle_events(user_key) WHERE user_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS aisle_events_by_session ON aisle_events(session_key) WHERE session_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS aisle_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_COLUMNS = "seq, event_key, user_key, session_key, item_id, type, ts, received"
#: Serialises writing transactions across replicas (see the module docstring).
_WRITE_LOCK = 0x41_49_53_4C_45  # "AISLE"
_INSERT = f"""
INSERT INTO aisle_events (event_key, user_key, session_key, item_id, type, ts, received)
SELECT k, u, s, i, t, ts, r FROM unnest(
    %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::float8[], %s::float8[]
) WITH ORDINALITY AS batch(k, u, s, i, t, ts, r, position)
ORDER BY position
ON CONFLICT (event_key) DO NOTHING
RETURNING {_COLUMNS}
"""


def _psycopg() -> Any:
    return psycopg_module(EventStoreError)


class PostgresEventStore(EventStore):
    """Durable, idempotent event storage in PostgreSQL, shared by every replica.

    Args:
        url: a libpq connection URL.
        id_check: a digest of the id-hashing secret; replicas must share the secret, and a
            database written with another one is refused.
        max_batch_events: most events committed in one transaction.
        on_commit: as for :class:`EventStore`.
    """

    #: A psycopg connection here (the base class holds SQLite's).
    _conn: Any

    def __init__(
        self,
        url: str,
        *,
        id_check: str,
        max_batch_events: int = 5000,
        on_commit: Any = None,
    ) -> None:
        self.url = url
        self.location = redacted(url)
        self._read_lock = threading.Lock()
        super().__init__(Path(), id_check=id_check, max_batch_events=max_batch_events, on_commit=on_commit)
        self._reader_conn = self._connect(autocommit=True)

    def _connect(self, *, autocommit: bool) -> Any:
        psycopg = _psycopg()
        try:
            return psycopg.connect(self.url, autocommit=autocommit, connect_timeout=10)
        except psycopg.Error as exc:
            raise EventStoreError(f"cannot connect to the event database {self.location}: {exc}") from None

    def _open_writer(self, id_check: str, max_bytes: int | None) -> Any:
        if max_bytes is not None:
            raise EventStoreError("events_max_db_mb applies to the embedded SQLite store, not to PostgreSQL")
        psycopg = _psycopg()
        conn = self._connect(autocommit=False)
        try:
            with conn.transaction():
                # Replicas starting together: one creates the tables, the others wait for it.
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
                conn.execute(_SCHEMA)
                conn.execute(ATTRIBUTION_SCHEMA)
                conn.execute(
                    "INSERT INTO aisle_meta(key, value) VALUES ('schema', %s), ('id_check', %s) ON CONFLICT DO NOTHING",
                    (SCHEMA_VERSION, id_check),
                )
                stored = dict(conn.execute("SELECT key, value FROM aisle_meta").fetchall())
        except psycopg.Error as exc:
            conn.close()
            raise EventStoreError(f"cannot prepare the event database {self.location}: {exc}") from None
        if stored.get("id_check") != id_check:
            conn.close()
            raise EventStoreError(
                f"the event database {self.location} was written with another id secret; give every replica the "
                "same id-secret.key (see docs/CONTRACT.md, 'Beyond one machine')"
            )
        return conn

    def close(self) -> None:
        super().close()
        self._reader_conn.close()

    def _write(self, batch: list[Pending[list[StoredEvent]]]) -> list[AppendResult]:
        psycopg = _psycopg()
        events = [event for pending in batch for event in pending.payload]
        columns = list(
            zip(
                *((e.event_key, e.user_key, e.session_key, e.item_id, e.type, e.timestamp, e.received) for e in events),
                strict=True,
            )
        )
        try:
            if self._conn.closed:
                self._conn = self._connect(autocommit=False)
            with self._conn.transaction():
                self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
                rows = self._conn.execute(_INSERT, [list(column) for column in columns]).fetchall()
                # In the events' own transaction: an acknowledged event never loses its attribution.
                inserted_keys = {row[1] for row in rows}
                insert_attributions(
                    self._conn, [e for e in events if e.attribution is not None and e.event_key in inserted_keys]
                )
        except psycopg.Error as exc:
            raise EventStoreUnavailable(f"events could not be stored: {exc}") from None
        inserted = {row[1]: _to_event(row) for row in rows}
        results = []
        for pending in batch:
            accepted = []
            for event in pending.payload:
                stored = inserted.pop(event.event_key, None)  # pop: a key repeated in the batch counts once
                if stored is not None:
                    accepted.append(replace(event, seq=stored.seq))
            results.append(AppendResult(accepted, len(pending.payload) - len(accepted)))
        return results

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        psycopg = _psycopg()
        with self._read_lock:
            try:
                if self._reader_conn.closed:
                    self._reader_conn = self._connect(autocommit=True)
                return self._reader_conn.execute(sql, params).fetchall()
            except psycopg.OperationalError as exc:
                self._reader_conn.close()
                raise EventStoreUnavailable(f"the event database is unreachable: {exc}") from None

    def iter_events(self, after_seq: int = 0, chunk: int = 10_000) -> Iterator[StoredEvent]:
        """Every stored event with ``seq > after_seq``, in commit order (read in chunks)."""
        while True:
            rows = self._read(
                f"SELECT {_COLUMNS} FROM aisle_events WHERE seq > %s ORDER BY seq LIMIT %s", (after_seq, chunk)
            )
            yield from (_to_event(row) for row in rows)
            if len(rows) < chunk:
                return
            after_seq = rows[-1][0]

    def events_of_user(self, user_key: str) -> list[StoredEvent]:
        rows = self._read(
            f"SELECT {_COLUMNS} FROM aisle_events WHERE user_key = %(user)s UNION ALL "
            f"SELECT {_COLUMNS} FROM aisle_events WHERE user_key IS NULL AND session_key IN "
            "(SELECT session_key FROM aisle_events WHERE user_key = %(user)s AND session_key IS NOT NULL) "
            "ORDER BY 1",
            {"user": user_key},  # type: ignore[arg-type]
        )
        return [_to_event(row) for row in rows]

    def events_of_session(self, session_key: str) -> list[StoredEvent]:
        rows = self._read(f"SELECT {_COLUMNS} FROM aisle_events WHERE session_key = %s ORDER BY seq", (session_key,))
        return [_to_event(row) for row in rows]

    # Erasure (see EventStore.erase_user): one transaction under the writers' advisory lock, which
    # also moves the erasure counter every replica watches. PostgreSQL frees the deleted rows'
    # space at its next (auto)vacuum.

    def erase_user(self, user_key: str) -> Erasure:
        with self._erasing() as conn:
            sessions = [
                row[0]
                for row in conn.execute(
                    "SELECT DISTINCT session_key FROM aisle_events WHERE user_key = %s AND session_key IS NOT NULL",
                    (user_key,),
                ).fetchall()
            ]
            deleted = conn.execute("DELETE FROM aisle_events WHERE user_key = %s", (user_key,)).rowcount
            if sessions:
                deleted += conn.execute(
                    "DELETE FROM aisle_events WHERE user_key IS NULL AND session_key = ANY(%s)", (sessions,)
                ).rowcount
            erase_attributions(conn, user_key, sessions)
        return Erasure(deleted, len(sessions), tuple(sessions))

    def purge_older_than(self, cutoff: float) -> int:
        with self._erasing() as conn:
            conn.execute("DELETE FROM aisle_attributions WHERE ts < %s", (cutoff,))
            return conn.execute("DELETE FROM aisle_events WHERE ts < %s", (cutoff,)).rowcount

    def erasures(self) -> int:
        rows = self._read("SELECT value FROM aisle_meta WHERE key = %s", (ERASURES_KEY,))
        return int(rows[0][0]) if rows else 0

    @contextmanager
    def _erasing(self) -> Iterator[Any]:
        psycopg = _psycopg()
        conn = self._connect(autocommit=False)
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
                yield conn
                conn.execute(
                    "INSERT INTO aisle_meta(key, value) VALUES (%s, '1') ON CONFLICT (key) "
                    "DO UPDATE SET value = (aisle_meta.value::bigint + 1)::text",
                    (ERASURES_KEY,),
                )
        except psycopg.Error as exc:
            raise EventStoreUnavailable(f"the erasure could not be stored: {exc}") from None
        finally:
            conn.close()

    def count(self) -> int:
        return int(self._read("SELECT count(*) FROM aisle_events")[0][0])

    def last_seq(self) -> int:
        return int(self._read("SELECT coalesce(max(seq), 0) FROM aisle_events")[0][0])


def _to_event(row: tuple) -> StoredEvent:
    seq, event_key, user_key, session_key, item_id, kind, ts, received = row
    return StoredEvent(event_key, user_key, session_key, item_id, kind, float(ts), float(received), int(seq))
