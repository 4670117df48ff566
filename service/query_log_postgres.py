"""The query log's counts in PostgreSQL: every replica's searches feed every replica's suggest box.

One row per normalised text in ``aisle_query_counts``. A flush adds this process's counts with
one upsert per text (in sorted order, so that replicas flushing together lock rows in the same
order and never deadlock), drops the least counted beyond the capacity and reads the rest back,
in one transaction. What is kept is still only text and count (``aisle.service.query_log``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aisle.index.postgres_store import Connection, psycopg_module

_SCHEMA = "CREATE TABLE IF NOT EXISTS aisle_query_counts (text TEXT PRIMARY KEY, count BIGINT NOT NULL)"
#: Taken while creating the table (the events store's lock): replicas starting together create it once.
SCHEMA_LOCK = 0x41_49_53_4C_45


class QueryLogError(RuntimeError):
    """The counts' database cannot be reached or written (the counts wait for the next flush)."""


class PostgresCounts:
    """The ``CountStore`` of ``aisle.service.query_log`` in PostgreSQL.

    Args:
        url: a libpq connection URL.
    """

    def __init__(self, url: str) -> None:
        self._pg = Connection(url, QueryLogError, "query log")
        self._conn: Any = self._pg.connect(autocommit=False)
        with self._transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            self._conn.execute(_SCHEMA)

    def _transaction(self) -> Any:
        if self._conn.closed or self._conn.broken:
            self._conn.close()
            self._conn = self._pg.connect(autocommit=False)
        return self._conn.transaction()

    def load(self) -> Counter[str]:
        return Counter(dict(self._pg.execute("SELECT text, count FROM aisle_query_counts")))

    def merge(self, pending: Counter[str], capacity: int) -> Counter[str]:
        psycopg = psycopg_module(QueryLogError)
        try:
            with self._transaction(), self._conn.cursor() as cursor:
                if pending:
                    cursor.executemany(
                        "INSERT INTO aisle_query_counts(text, count) VALUES (%s, %s) ON CONFLICT (text)"
                        " DO UPDATE SET count = aisle_query_counts.count + excluded.count",
                        sorted(pending.items()),
                    )
                    cursor.execute(
                        "DELETE FROM aisle_query_counts WHERE text IN (SELECT text FROM aisle_query_counts"
                        " ORDER BY count DESC, text OFFSET %s)",
                        (capacity,),
                    )
                rows = cursor.execute("SELECT text, count FROM aisle_query_counts").fetchall()
        except psycopg.Error as exc:
            raise QueryLogError(f"the query counts could not be stored: {exc}") from None
        return Counter({str(text): int(count) for text, count in rows})

    def close(self) -> None:
        self._conn.close()
        self._pg.close()
