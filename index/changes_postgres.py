"""The live catalogue's change log in PostgreSQL, for replicas on several machines over one index.

The contract of the embedded log (:class:`~aisle.index.changes.ChangeLog`, whose group-committing
writer and submission rules this class keeps): a change is acknowledged once its transaction has
committed, ``change_id`` makes re-sent changes harmless, ``seq`` is the commit order. Replicas
follow the log by reading the changes above the last ``seq`` they serve, which is only safe if a
change with a smaller ``seq`` can never commit after one with a larger: every writing transaction
takes one transaction-level advisory lock before it draws sequence numbers (one lock per batch,
not per change, thanks to group commit). The existence checks of patches and deletes run under
that lock too, so two replicas can never both delete a product, or patch one just deleted.

The table is ``aisle_changes`` in the database of ``AISLE_DATABASE_URL``: one database per shop
(per published index directory). A version's ``live_sequence`` counts this table's ``seq``, so a
shop moving from the embedded log to PostgreSQL rebuilds its index once, with the changes folded
(``aisle compact`` before the move).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from aisle.index.changes import ChangeLog, ChangeLogError, ChangeRefused, Receipt, _resolve, _Submission
from aisle.index.postgres_store import Connection, psycopg_module, redacted
from aisle.index.sqlite_store import Pending

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS aisle_changes (
    seq BIGSERIAL PRIMARY KEY,
    change_key TEXT UNIQUE,
    digest TEXT NOT NULL,
    item_id TEXT NOT NULL,
    op TEXT NOT NULL,
    body TEXT NOT NULL,
    content_hash TEXT,
    vector BYTEA,
    model TEXT,
    received DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS aisle_changes_by_item ON aisle_changes(item_id, seq);
"""
_INSERT = """
INSERT INTO aisle_changes (change_key, digest, item_id, op, body, content_hash, vector, model, received)
SELECT k, d, i, o, b, h, v, m, r FROM unnest(
    %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::bytea[], %s::text[], %s::float8[]
) WITH ORDINALITY AS batch(k, d, i, o, b, h, v, m, r, position)
ORDER BY position
RETURNING seq
"""
#: Serialises writing transactions across replicas (see the module docstring); not the events'
#: lock, so a burst of events never waits for a catalogue change, nor the other way round.
_WRITE_LOCK = 0x41_49_53_4C_43  # "AISLC"
#: Taken while creating tables: replicas starting together create them once.
SCHEMA_LOCK = 0x41_49_53_4C_45


def _psycopg() -> Any:
    return psycopg_module(ChangeLogError)


class PostgresChangeLog(ChangeLog):
    """Durable, idempotent storage of product changes in PostgreSQL, shared by every replica.

    Args:
        url: a libpq connection URL.
        writer: open the writing connection (False: read only).
        max_batch_changes: most changes committed in one transaction.
    """

    _table = "aisle_changes"
    _mark = "%s"

    def __init__(self, url: str, *, writer: bool = True, max_batch_changes: int = 5000) -> None:
        self.url = url
        self.location = redacted(url)
        self._read_lock = threading.Lock()
        self._pg = Connection(url, ChangeLogError, "change log")
        self._writer_conn: Any = None
        if writer:
            self._writer_conn = self._pg.connect(autocommit=False)
            self._create_schema()
        self._init_writer(writer, max_batch_changes)

    @classmethod
    def open_existing_url(cls, url: str) -> PostgresChangeLog | None:
        """The log for reading, or None when its table was never created (no change accepted)."""
        probe = Connection(url, ChangeLogError, "change log")
        try:
            exists = probe.execute("SELECT to_regclass('aisle_changes') IS NOT NULL")[0][0]
        finally:
            probe.close()
        return cls(url, writer=False) if exists else None

    def _create_schema(self) -> None:
        psycopg = _psycopg()
        try:
            with self._writer_conn.transaction():
                self._writer_conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                self._writer_conn.execute(_SCHEMA)
        except psycopg.Error as exc:
            self._writer_conn.close()
            self._pg.close()
            raise ChangeLogError(f"cannot prepare the change log in {self.location}: {exc}") from None

    def _close_connections(self) -> None:
        if self._writer_conn is not None:
            self._writer_conn.close()
        self._pg.close()

    def _commit(self, batch: list[Pending[_Submission]]) -> None:
        psycopg = _psycopg()
        outcomes: list[Receipt | Exception] = []
        try:
            if self._writer_conn.closed:
                self._writer_conn = self._pg.connect(autocommit=False)
            conn = self._writer_conn
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
                for pending in batch:
                    try:
                        outcomes.append(self._insert(conn, pending.payload))
                    except ChangeRefused as exc:  # refused before it wrote anything
                        outcomes.append(exc)
        except psycopg.Error as exc:
            if self._writer_conn.broken:
                self._writer_conn.close()  # reopened by the next batch
            log.error("change log write failed, %d submissions refused: %s", len(batch), exc)
            raise ChangeLogError(f"the change log could not be written ({exc}); nothing was stored") from None
        _resolve(batch, outcomes)

    def _known_digests(self, conn: Any, change_keys: list[str]) -> dict[str, str]:
        if not change_keys:
            return {}
        rows = conn.execute(
            "SELECT change_key, digest FROM aisle_changes WHERE change_key = ANY(%s)", (change_keys,)
        ).fetchall()
        return {str(key): str(digest) for key, digest in rows}

    def _latest_ops(self, conn: Any, item_ids: list[str], after_seq: int) -> dict[str, str]:
        if not item_ids:
            return {}
        # One index probe per item (aisle_changes_by_item, newest first), not a scan of the whole
        # log above after_seq, which grows with every change until the next rebuild.
        rows = conn.execute(
            "SELECT i.item_id, c.op FROM unnest(%s::text[]) AS i(item_id) CROSS JOIN LATERAL"
            " (SELECT op FROM aisle_changes WHERE item_id = i.item_id AND seq > %s ORDER BY seq DESC LIMIT 1) c",
            (item_ids, after_seq),
        ).fetchall()
        return {str(item_id): str(op) for item_id, op in rows}

    def _store(self, conn: Any, rows: list[tuple]) -> list[int]:
        columns = [list(column) for column in zip(*rows, strict=True)]
        stored = conn.execute(_INSERT, columns).fetchall()
        # Sequence numbers are drawn row by row in the ordered SELECT's order, so ascending seq is
        # submission order (RETURNING's own order is not promised).
        return sorted(int(row[0]) for row in stored)

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self._pg.execute(sql, params)
