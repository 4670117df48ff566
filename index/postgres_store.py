"""What every PostgreSQL store shares: the driver import, a password-free URL, one reading connection.

Stores whose data several replicas share (events, the live catalogue's changes, attribution,
experiments, the query log) live in the database named by ``AISLE_DATABASE_URL``
(``postgresql://user:pass@host/db``), in tables prefixed ``aisle_``, created on first use.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

PSYCOPG_INSTALL_HINT = "install the postgres extra (pip install 'aisle-search[postgres]')"


def psycopg_module(error: type[Exception]) -> Any:
    """The ``psycopg`` module, or ``error`` saying how to install it."""
    try:
        import psycopg
    except ImportError as exc:
        raise error(f"AISLE_DATABASE_URL needs psycopg: {PSYCOPG_INSTALL_HINT}") from exc
    return psycopg


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class Connection:
    """One autocommit connection shared by a store's threads, reopened after a failure.

    Args:
        url: the libpq URL.
        error: the store's exception for an unreachable database (raised with the cause).
        what: the store's name in messages.
    """

    def __init__(self, url: str, error: type[Exception], what: str) -> None:
        self.url = url
        self.location = redacted(url)
        self.error = error
        self.what = what
        self._lock = threading.Lock()
        self._conn: Any = self.connect(autocommit=True)

    def connect(self, *, autocommit: bool) -> Any:
        """A new connection of the store's own (a writer's transactions)."""
        psycopg = psycopg_module(self.error)
        try:
            return psycopg.connect(self.url, autocommit=autocommit, connect_timeout=10)
        except psycopg.Error as exc:
            raise self.error(f"cannot connect to the {self.what} database {self.location}: {exc}") from None

    def execute(self, sql: str, params: Any = None) -> list[tuple]:
        """Runs one statement in its own transaction; its rows (empty when it returns none).

        Raises:
            error: the database is unreachable or refused the statement.
        """
        psycopg = psycopg_module(self.error)
        with self._lock:
            try:
                if self._conn.closed:
                    self._conn = self.connect(autocommit=True)
                cursor = self._conn.execute(sql, params)
                return cursor.fetchall() if cursor.description is not None else []
            except psycopg.OperationalError as exc:
                self._conn.close()  # reopened by the next call
                raise self.error(f"the {self.what} database is unreachable: {exc}") from None
            except psycopg.Error as exc:
                raise self.error(f"the {self.what} database refused a statement: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()
