"""The event log: an embedded SQLite database in WAL mode with ``synchronous=FULL``.

One writer thread owns the write connection. Requests hand it their events and wait; it drains
everything queued into one transaction (group commit: many requests pay for one fsync), commits,
runs the ``on_commit`` subscriber (the profiles) and only then resolves the requests, so an
acknowledged event is both durable and visible to the next read. ``event_key`` is the primary
key: re-sent events are counted as duplicates and change nothing. A write that fails (disk full,
I/O error, database over its size quota) rolls back and raises ``EventStoreUnavailable`` for
every request in that transaction: nothing unacknowledged is half-stored, nothing acknowledged
is lost.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from aisle.index.sqlite_store import GroupCommitter, Pending, open_database, open_reader
from aisle.service.attribution.records import ATTRIBUTION_SCHEMA, Attribution, erase_attributions, insert_attribution

log = logging.getLogger(__name__)

EVENTS_FILE = "events.sqlite3"
SCHEMA_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    event_key TEXT PRIMARY KEY,
    user_key TEXT,
    session_key TEXT,
    item_id TEXT NOT NULL,
    type TEXT NOT NULL,
    ts REAL NOT NULL,
    received REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_user ON events(user_key) WHERE user_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_by_session ON events(session_key) WHERE session_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_COLUMNS = "rowid, event_key, user_key, session_key, item_id, type, ts, received"


class EventStoreError(RuntimeError):
    """The store cannot be opened or used (wrong secret, unreadable file, closed)."""


class EventStoreUnavailable(EventStoreError):
    """A write failed (disk full, I/O error, size quota): retry later, nothing was stored."""


@dataclass(frozen=True)
class StoredEvent:
    """One event as stored: ids are keyed hashes; ``seq`` is the commit order (0 until stored)."""

    event_key: str
    user_key: str | None
    session_key: str | None
    item_id: str
    type: str
    timestamp: float
    received: float
    seq: int = 0
    #: What led to the event (``aisle.service.attribution``), stored in the same transaction.
    attribution: Attribution | None = None


@dataclass(frozen=True)
class AppendResult:
    accepted: list[StoredEvent]
    duplicates: int


@dataclass(frozen=True)
class Erasure:
    """What one erasure removed: events, and the linked sessions whose anonymous events went too."""

    events: int
    sessions: int
    #: The linked sessions' keys, for stores outside the event log that hold them too.
    session_keys: tuple[str, ...] = ()


#: meta key counting erasures and retention purges: every process rebuilds its profiles when it moves.
ERASURES_KEY = "erasures"


class EventStore:
    """Durable, idempotent event storage with a single group-committing writer.

    Args:
        path: the SQLite file.
        id_check: a digest of the id-hashing secret; a store written with another secret is
            refused (its ids would silently stop matching).
        max_batch_events: most events committed in one transaction.
        max_bytes: size quota of the database; writes beyond it fail like a full disk.
        on_commit: called on the writer thread with the newly stored events after each commit,
            before the requests are acknowledged.
    """

    def __init__(
        self,
        path: Path,
        *,
        id_check: str,
        max_batch_events: int = 5000,
        max_bytes: int | None = None,
        on_commit: Callable[[list[StoredEvent]], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.max_batch_events = max_batch_events
        self.on_commit = on_commit
        self._writer: GroupCommitter[list[StoredEvent]] = GroupCommitter(
            "aisle-event-writer",
            self._commit,
            size=len,
            max_batch=max_batch_events,
            failure=lambda exc: EventStoreUnavailable(f"event writer error: {exc}"),
        )
        self._conn = self._open_writer(id_check, max_bytes)

    # Erasure: deletions on their own connection (SQLite serialises them with the writer thread's
    # transactions), with secure_delete so the freed pages are zeroed, and a WAL checkpoint so
    # no old copy of a page stays in the log file.

    def erase_user(self, user_key: str) -> Erasure:
        """Deletes a user's events and the anonymous events of every session linked to them.

        A session is linked by any event carrying both ids (``events_of_user``); events other
        users sent from a shared session are theirs and stay. The erasure counter moves, so
        every process serving this store rebuilds its profiles without the user.

        Raises:
            EventStoreUnavailable: the deletion could not be committed (nothing was deleted).
        """
        with self._eraser() as conn:
            sessions = [
                row[0]
                for row in conn.execute(
                    "SELECT DISTINCT session_key FROM events WHERE user_key = ? AND session_key IS NOT NULL",
                    (user_key,),
                )
            ]
            deleted = conn.execute("DELETE FROM events WHERE user_key = ?", (user_key,)).rowcount
            for session_key in sessions:
                deleted += conn.execute(
                    "DELETE FROM events WHERE user_key IS NULL AND session_key = ?", (session_key,)
                ).rowcount
            erase_attributions(conn, user_key, sessions)
        return Erasure(deleted, len(sessions), tuple(sessions))

    def purge_older_than(self, cutoff: float) -> int:
        """Deletes every event that happened before ``cutoff`` (Unix seconds): the retention period.

        Raises:
            EventStoreUnavailable: the deletion could not be committed (nothing was deleted).
        """
        with self._eraser() as conn:
            conn.execute("DELETE FROM attributions WHERE ts < ?", (cutoff,))
            return conn.execute("DELETE FROM events WHERE ts < ?", (cutoff,)).rowcount

    def erasures(self) -> int:
        """How many erasures and purges have changed the log (a process rebuilds when it moves)."""
        with closing(self._reader()) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (ERASURES_KEY,)).fetchone()
        return int(row[0]) if row else 0

    @contextmanager
    def _eraser(self) -> Iterator[sqlite3.Connection]:
        """One deleting transaction that also moves the erasure counter; checkpointed after."""
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        except sqlite3.Error as exc:
            raise EventStoreUnavailable(f"cannot open {self.path} to erase: {exc}") from None
        with closing(conn):
            try:
                conn.execute("PRAGMA secure_delete=ON")
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES (?, '1') "
                    "ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
                    (ERASURES_KEY,),
                )
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise EventStoreUnavailable(f"the erasure could not be stored: {exc}") from None
            try:  # best effort: a reader holding an old snapshot delays it to the next checkpoint
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.warning("WAL checkpoint after an erasure failed (retried by the next one): %s", exc)

    def _open_writer(self, id_check: str, max_bytes: int | None) -> sqlite3.Connection:
        try:
            conn = open_database(self.path, private=True, schema=_SCHEMA + ATTRIBUTION_SCHEMA)
            conn.execute("PRAGMA secure_delete=ON")  # an erased event's bytes do not linger in free pages
            # OR IGNORE: several worker processes may open a new store at once; the first wins.
            conn.executemany(
                "INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)",
                [("schema", SCHEMA_VERSION), ("id_check", id_check)],
            )
            stored = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if stored.get("id_check") != id_check:
                conn.close()
                raise EventStoreError(
                    f"{self.path} was written with another id secret; restore the data "
                    "directory's id-secret.key or move the event database away"
                )
            if max_bytes is not None:
                page_size = conn.execute("PRAGMA page_size").fetchone()[0]
                conn.execute(f"PRAGMA max_page_count={max(int(max_bytes // page_size), 8)}")
        except (sqlite3.Error, OSError) as exc:
            raise EventStoreError(f"cannot open the event store {self.path}: {exc}") from None
        return conn

    def start(self) -> None:
        """Starts the writer thread (idempotent)."""
        self._writer.start()

    def close(self) -> None:
        """Commits what is queued, stops the writer and closes the database."""
        self._writer.stop()
        self._conn.close()

    def append(self, events: list[StoredEvent], timeout: float = 30.0) -> AppendResult:
        """Stores events durably; returns once they are committed (or raises).

        Raises:
            EventStoreUnavailable: the commit failed or did not finish within ``timeout``
                (a later retry with the same event ids is safe).
            EventStoreError: the store is closed.
        """
        if not self._writer.running:
            raise EventStoreError("the event store is not running")
        try:
            return self._writer.submit(list(events), timeout)
        except TimeoutError:
            raise EventStoreUnavailable(f"the event store did not commit within {timeout:g} s") from None

    def _commit(self, batch: list[Pending[list[StoredEvent]]]) -> None:
        try:
            results = self._write(batch)
        except EventStoreUnavailable as error:
            log.error("event commit failed (%d requests not acknowledged): %s", len(batch), error)
            for pending in batch:
                pending.future.set_exception(error)
            return
        stored = [event for result in results for event in result.accepted]
        if stored and self.on_commit is not None:
            try:
                self.on_commit(stored)
            except Exception:  # durable already; profiles are rebuilt from the log on restart
                log.exception("applying %d committed events to the profiles failed", len(stored))
        for pending, result in zip(batch, results, strict=True):
            pending.future.set_result(result)

    def _write(self, batch: list[Pending[list[StoredEvent]]]) -> list[AppendResult]:
        """Stores the batch in one transaction; one result per request, in order.

        Raises:
            EventStoreUnavailable: nothing of the batch was stored.
        """
        results: list[AppendResult] = []
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            for pending in batch:
                accepted: list[StoredEvent] = []
                for event in pending.payload:
                    cursor = self._conn.execute(
                        "INSERT OR IGNORE INTO events(event_key, user_key, session_key, item_id, type, ts, received)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            event.event_key,
                            event.user_key,
                            event.session_key,
                            event.item_id,
                            event.type,
                            event.timestamp,
                            event.received,
                        ),
                    )
                    if cursor.rowcount == 1:
                        accepted.append(replace(event, seq=int(cursor.lastrowid or 0)))
                        if event.attribution is not None:
                            insert_attribution(
                                self._conn,
                                event.event_key,
                                event.user_key,
                                event.session_key,
                                event.type,
                                event.item_id,
                                event.timestamp,
                                event.attribution,
                            )
                results.append(AppendResult(accepted, len(pending.payload) - len(accepted)))
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                try:
                    self._conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("rollback of a failed event commit failed")
            raise EventStoreUnavailable(f"events could not be stored: {exc}") from None
        return results

    # Reading: short-lived connections, so readers never wait for the writer (WAL).

    def _reader(self) -> sqlite3.Connection:
        return open_reader(self.path)

    def iter_events(self, after_seq: int = 0, chunk: int = 10_000) -> Iterator[StoredEvent]:
        """Every stored event with ``seq > after_seq``, in commit order."""
        with closing(self._reader()) as conn:
            cursor = conn.execute(f"SELECT {_COLUMNS} FROM events WHERE rowid > ? ORDER BY rowid", (after_seq,))
            while rows := cursor.fetchmany(chunk):
                yield from (_to_event(row) for row in rows)

    def events_of_user(self, user_key: str) -> list[StoredEvent]:
        """A user's events: their own, plus the anonymous events of every session linked to them.

        A session is linked to a user by any event carrying both ids; its anonymous events (no
        user id) then count for that user, whenever they happened.
        """
        with closing(self._reader()) as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE user_key = ?1 UNION ALL "
                f"SELECT {_COLUMNS} FROM events WHERE user_key IS NULL AND session_key IN "
                "(SELECT session_key FROM events WHERE user_key = ?1 AND session_key IS NOT NULL) "
                "ORDER BY 1",
                (user_key,),
            ).fetchall()
        return [_to_event(row) for row in rows]

    def events_of_session(self, session_key: str) -> list[StoredEvent]:
        with closing(self._reader()) as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM events WHERE session_key = ? ORDER BY rowid", (session_key,)
            ).fetchall()
        return [_to_event(row) for row in rows]

    def count(self) -> int:
        with closing(self._reader()) as conn:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])

    def last_seq(self) -> int:
        with closing(self._reader()) as conn:
            return int(conn.execute("SELECT coalesce(max(rowid), 0) FROM events").fetchone()[0])


def _to_event(row: tuple) -> StoredEvent:
    seq, event_key, user_key, session_key, item_id, event_type, ts, received = row
    return StoredEvent(event_key, user_key, session_key, item_id, event_type, float(ts), float(received), int(seq))
