"""The served-response log: what each ranked response showed, to whom, under which variant.

Attribution needs to know, when a click arrives minutes or days later, what the response it
names contained. Recording must not slow ranking down, so a response is recorded in memory (a
bounded dict of the most recent ones, which answers nearly every lookup) and a background
thread writes what was recorded to ``served.sqlite3`` (or, with ``AISLE_DATABASE_URL``, to
PostgreSQL: ``aisle.service.attribution.postgres``) every ``flush_interval_s`` in one transaction. A crash can lose the last fraction of a second of served responses, never an
acknowledged event's attribution: that is written with the event (``records``).

Privacy and size: rows hold hashed user and session keys only, are deleted after
``retention_s`` and beyond ``max_rows`` (oldest first). ``exposures`` keeps, per experiment and
visitor unit, the variant, the first and last exposure and the impressions, for the reports; it
holds one row per enrolled visitor for as long as the experiment's data are kept.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aisle.index.sqlite_store import open_database, open_reader
from aisle.service.attribution.records import ATTRIBUTION_TABLE

if TYPE_CHECKING:
    from aisle.service.settings import ServiceSettings

log = logging.getLogger(__name__)

SERVED_FILE = "served.sqlite3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS served (
    request_id TEXT PRIMARY KEY,
    ts REAL NOT NULL,
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
CREATE INDEX IF NOT EXISTS served_by_ts ON served(ts);
CREATE TABLE IF NOT EXISTS exposures (
    experiment TEXT NOT NULL,
    unit_key TEXT NOT NULL,
    variant TEXT NOT NULL,
    segment TEXT,
    first_ts REAL NOT NULL,
    last_ts REAL NOT NULL,
    impressions INTEGER NOT NULL,
    PRIMARY KEY (experiment, unit_key)
);
CREATE TABLE IF NOT EXISTS looks (
    experiment TEXT NOT NULL,
    metric TEXT NOT NULL,
    variant TEXT NOT NULL,
    ts REAL NOT NULL,
    p_value REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS looks_by_experiment ON looks(experiment, metric, variant);
"""
#: How often old rows are deleted (seconds).
PRUNE_EVERY_S = 600.0
#: The columns ``_to_served`` reads, in its order.
_SERVED_COLUMNS = (
    "request_id, ts, surface, items, query, user_key, session_key, experiment, variant, segment, index_version"
)


@dataclass(frozen=True)
class Served:
    """One ranked response as remembered for attribution (ids hashed, query normalised)."""

    request_id: str
    ts: float
    surface: str
    items: tuple[str, ...]
    query: str | None = None
    user_key: str | None = None
    session_key: str | None = None
    experiment: str | None = None
    variant: str | None = None
    unit_key: str | None = None
    segment: str | None = None
    index_version: str | None = None

    def position_of(self, item_id: str) -> int | None:
        """1-based position of ``item_id`` in the response, None when it was not shown."""
        try:
            return self.items.index(item_id) + 1
        except ValueError:
            return None


class ServedLog:
    """Records served responses and finds them again by request id; reads them for the reports.

    Reports (``query``) see the served responses, the experiments' exposures and looks, and the
    attributed events as the tables ``{served}``, ``{exposures}``, ``{looks}`` and
    ``{attributions}``, with ``:name`` parameters: one SQL text for both backends.

    Args:
        path: the SQLite file (the event database, for ``{attributions}``, is ``events_path``).
        retention_s: served rows older than this are deleted.
        max_rows: most served rows kept.
        memory_rows: most recent responses kept in memory for fast lookups.
        flush_interval_s: how often recorded responses are written.
        events_path: the event database beside it (default: ``events.sqlite3`` in the same directory).
    """

    #: The tables as ``query`` names them (SQLite: the event database is attached as ``ev``).
    tables = {"served": "served", "exposures": "exposures", "looks": "looks", "attributions": "ev.attributions"}

    def __init__(
        self,
        path: Path,
        *,
        retention_s: float,
        max_rows: int,
        memory_rows: int = 100_000,
        flush_interval_s: float = 0.25,
        events_path: Path | None = None,
    ) -> None:
        self.path = Path(path)
        self.events_path = Path(events_path) if events_path is not None else self.path.with_name("events.sqlite3")
        self.retention_s = retention_s
        self.max_rows = max_rows
        self.memory_rows = memory_rows
        self.flush_interval_s = flush_interval_s
        self._lock = threading.Lock()
        # One flush at a time: a report's flush waits for the writer's batch in flight, so that it
        # reads every response recorded before it. Reentrant: a flush prunes, with the same connection.
        self._flush_lock = threading.RLock()
        self._recent: OrderedDict[str, Served] = OrderedDict()
        self._pending: list[Served] = []
        self._stop = threading.Event()
        self._last_prune = 0.0
        self._open()
        self._thread = threading.Thread(target=self._run, name="aisle-served-writer", daemon=True)
        self._thread.start()

    def record(self, served: Served) -> None:
        """Remembers a response (in memory now, on disk within ``flush_interval_s``)."""
        with self._lock:
            self._recent[served.request_id] = served
            self._recent.move_to_end(served.request_id)
            while len(self._recent) > self.memory_rows:
                self._recent.popitem(last=False)
            self._pending.append(served)

    def get(self, request_id: str) -> Served | None:
        """The response with this request id, from memory or the file (None: unknown or expired)."""
        with self._lock:
            served = self._recent.get(request_id)
        if served is not None:
            return served
        rows = self.query(f"SELECT {_SERVED_COLUMNS} FROM {{served}} WHERE request_id = :rid", {"rid": request_id})
        return _to_served(rows[0]) if rows else None

    def flush(self) -> None:
        """Writes what was recorded so far (also called by the background thread)."""
        with self._flush_lock:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        if pending:
            try:
                self._write(pending)
            except Exception as exc:  # any backend's failure: the responses wait for the next try
                log.error("could not write %d served responses (kept for the next try): %s", len(pending), exc)
                with self._lock:
                    # Bounded: beyond the memory size the oldest are given up.
                    self._pending = (pending + self._pending)[-self.memory_rows :]
                return
        now = time.time()
        if now - self._last_prune >= PRUNE_EVERY_S:
            self._last_prune = now
            self.prune(now)

    def _write(self, pending: Iterable[Served]) -> None:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for served in pending:
                conn.execute(
                    "INSERT OR REPLACE INTO served(request_id, ts, surface, query, user_key, session_key, experiment,"
                    " variant, segment, items, results, index_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        served.request_id,
                        served.ts,
                        served.surface,
                        served.query,
                        served.user_key,
                        served.session_key,
                        served.experiment,
                        served.variant,
                        served.segment,
                        json.dumps(served.items),
                        len(served.items),
                        served.index_version,
                    ),
                )
                if served.experiment is not None and served.unit_key is not None:
                    # The first exposure fixes the variant and the segment the visitor is reported under.
                    conn.execute(
                        "INSERT INTO exposures(experiment, unit_key, variant, segment, first_ts, last_ts, impressions)"
                        " VALUES (?, ?, ?, ?, ?, ?, 1) ON CONFLICT(experiment, unit_key) DO UPDATE SET"
                        " impressions = impressions + 1, last_ts = max(last_ts, excluded.last_ts),"
                        " first_ts = min(first_ts, excluded.first_ts)",
                        (served.experiment, served.unit_key, served.variant, served.segment, served.ts, served.ts),
                    )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def prune(self, now: float | None = None) -> int:
        """Deletes served rows past the retention or beyond ``max_rows``; returns how many."""
        now = time.time() if now is None else now
        try:
            with self._flush_lock:
                return self._prune(now - self.retention_s)
        except Exception as exc:  # pruning is retried at the next interval
            log.warning("pruning served responses failed: %s", exc)
            return 0

    def erase(self, user_key: str, session_keys: list[str]) -> int:
        """Forgets a user: their served responses and experiment exposures (``DELETE /users/{id}``).

        Pending responses are written first, so that none of the user's survives the erasure.
        """
        keys = {user_key, *session_keys}
        with self._lock:
            for request_id in [rid for rid, s in self._recent.items() if s.user_key in keys or s.session_key in keys]:
                del self._recent[request_id]
        self.flush()
        return self._erase(sorted(keys))

    # The backend: SQLite here; PostgresServedLog overrides these.

    def _open(self) -> None:
        # What each shopper was shown is as private as what they did: owner-only, like the events.
        # NORMAL, not FULL: a power cut may lose the last served responses, never an event.
        self._conn = open_database(self.path, private=True, synchronous="NORMAL", schema=_SCHEMA)

    def _prune(self, cutoff: float) -> int:
        deleted = self._conn.execute("DELETE FROM served WHERE ts < ?", (cutoff,)).rowcount
        deleted += self._conn.execute(
            "DELETE FROM served WHERE rowid IN (SELECT rowid FROM served ORDER BY ts DESC LIMIT -1 OFFSET ?)",
            (self.max_rows,),
        ).rowcount
        return deleted

    def _erase(self, keys: list[str]) -> int:
        deleted = 0
        with closing(sqlite3.connect(self.path, isolation_level=None)) as conn:
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("BEGIN IMMEDIATE")
            for key in keys:
                deleted += conn.execute("DELETE FROM served WHERE user_key = ?1 OR session_key = ?1", (key,)).rowcount
                deleted += conn.execute("DELETE FROM exposures WHERE unit_key = ?", (key,)).rowcount
            conn.execute("COMMIT")
        return deleted

    def query(self, sql: str, params: dict[str, Any]) -> list[tuple]:
        """Rows of a report query (see the class docstring), read-only."""
        with closing(open_reader(self.path)) as conn:
            if self.events_path.exists():
                conn.execute("ATTACH DATABASE ? AS ev", (self.events_path.resolve().as_uri() + "?mode=ro",))
            else:  # no event stored yet: an empty table, so that the same SQL runs
                conn.execute("ATTACH DATABASE ':memory:' AS ev")
                conn.execute(ATTRIBUTION_TABLE.replace("EXISTS attributions", "EXISTS ev.attributions"))
            return conn.execute(sql.format(**self.tables), params).fetchall()

    def record_look(self, experiment: str, metric: str, variant: str, ts: float, p_value: float) -> float:
        """Stores one look's sequential p-value; returns the running minimum over all looks.

        Its own short-lived connection: reports run on request threads and in the CLI, beside the
        running writer (WAL lets both write in turn).
        """
        with closing(sqlite3.connect(self.path, isolation_level=None)) as conn:
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute(
                "INSERT INTO looks(experiment, metric, variant, ts, p_value) VALUES (?, ?, ?, ?, ?)",
                (experiment, metric, variant, ts, p_value),
            )
            row = conn.execute(
                "SELECT min(p_value) FROM looks WHERE experiment = ? AND metric = ? AND variant = ?",
                (experiment, metric, variant),
            ).fetchone()
        return float(row[0])

    def _close(self) -> None:
        self._conn.close()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval_s):
            try:
                self.flush()
            except Exception:  # the writer must outlive any one bad batch
                log.exception("the served-response writer failed")

    def close(self) -> None:
        """Writes what is pending, stops the writer and closes the file."""
        self._stop.set()
        self._thread.join()
        self.flush()
        self._close()


def _to_served(row: tuple) -> Served:
    rid, ts, surface, items, query, user_key, session_key, experiment, variant, segment, version = row
    return Served(
        rid,
        float(ts),
        surface,
        tuple(json.loads(items)),
        query,
        user_key,
        session_key,
        experiment,
        variant,
        None,
        segment,
        version,
    )


def served_rows(pending: Iterable[Served]) -> list[tuple]:
    """The ``served`` rows of ``pending``, in ``_SERVED_COLUMNS``'s order."""
    return [
        (
            served.request_id,
            served.ts,
            served.surface,
            json.dumps(served.items),
            served.query,
            served.user_key,
            served.session_key,
            served.experiment,
            served.variant,
            served.segment,
            served.index_version,
        )
        for served in pending
    ]


def open_served_log(settings: ServiceSettings) -> ServedLog:
    """PostgreSQL when ``database_url`` is set (every replica's responses in one place), else
    ``served.sqlite3`` in ``data_dir``."""
    retention_s, max_rows = settings.served_retention_days * 86400, settings.served_max_rows
    if settings.database_url:
        from aisle.service.attribution.postgres import PostgresServedLog

        return PostgresServedLog(settings.database_url, retention_s=retention_s, max_rows=max_rows)
    return ServedLog(settings.data_dir / SERVED_FILE, retention_s=retention_s, max_rows=max_rows)
