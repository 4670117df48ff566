"""The live catalogue's change log: upserts, patches and deletes of products, durable before use.

An embedded SQLite database (``changes.sqlite3`` under the index root, beside the versions it
completes) in WAL mode with ``synchronous=FULL``, or, with ``AISLE_DATABASE_URL``, a table in
PostgreSQL shared by every replica (``aisle.index.changes_postgres``): a change is acknowledged
only after its commit reached the disk. ``seq`` numbers changes in commit order (SQLite admits
one writer at a time, across processes too; PostgreSQL writers take one lock per transaction),
so every reader that applies the changes above some ``seq`` in order reaches the same catalogue.
A published version records the ``seq`` it includes (``live_sequence`` in its manifest);
serving = that version plus every change above it.

A change may carry a ``change_id``: sent again, it is reported as a duplicate and stored once;
the same id with a different change is refused. A new or retitled product's vector is stored with
the change, so the other processes read it instead of encoding the product again.

One writer thread per process owns the write connection and commits whatever is queued in one
transaction (group commit: many requests, one fsync); each request's changes are all stored or,
when one of them is refused (a patch of an unknown product, a conflicting change id), none.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from aisle.index.catalog import EMBEDDED_FIELDS, KNOWN_FIELDS, CatalogError, Product, RowProblem, product_from_record
from aisle.index.sqlite_store import GroupCommitter, Pending, open_database

log = logging.getLogger(__name__)

CHANGES_FILE = "changes.sqlite3"
Op = Literal["upsert", "patch", "delete"]
#: Fields a PATCH may set; ``attributes`` merges (a ``null`` value removes the attribute).
PATCHABLE_FIELDS = tuple(name for name in KNOWN_FIELDS if name != "id") + ("attributes",)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    change_key TEXT UNIQUE,
    digest TEXT NOT NULL,
    item_id TEXT NOT NULL,
    op TEXT NOT NULL,
    body TEXT NOT NULL,
    content_hash TEXT,
    vector BLOB,
    model TEXT,
    received REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_by_item ON changes(item_id, seq);
"""


class ChangeLogError(RuntimeError):
    """The change log cannot be opened or written (disk full, I/O error): nothing was stored."""


class ChangeRefused(ValueError):
    """A submitted change cannot be stored; ``status`` is the HTTP status it maps to."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


@dataclass(frozen=True)
class Change:
    """One product change.

    Attributes:
        op: ``upsert`` (``product`` is the whole product), ``patch`` (``fields`` are set on the
            current product) or ``delete``.
        item_id: the product's id.
        product: the new product of an upsert.
        fields: the validated fields of a patch.
        change_id: the client's idempotency key, if any.
        content_hash: the embedded text's hash of the product this change produces, when the
            change touches embedded text (see ``Product.content_hash``).
        vector: that text's unit vector, encoded once by the process that accepted the change.
        model: the fingerprint of the encoder that wrote ``vector``.
        seq: the commit order (0 until stored).
    """

    op: Op
    item_id: str
    product: Product | None = None
    fields: dict[str, Any] | None = None
    change_id: str | None = None
    content_hash: str | None = None
    vector: np.ndarray | None = None
    model: str | None = None
    seq: int = 0

    def body(self) -> str:
        if self.op == "upsert":
            assert self.product is not None
            return json.dumps(dataclasses.asdict(self.product), sort_keys=True)
        return json.dumps(self.fields or {}, sort_keys=True)

    def digest(self) -> str:
        """Identifies the change's content, to tell a re-sent change from a conflicting one."""
        return hashlib.sha256(f"{self.op}\0{self.item_id}\0{self.body()}".encode()).hexdigest()

    @property
    def touches_text(self) -> bool:
        if self.op == "upsert":
            return True
        return self.op == "patch" and any(name in (self.fields or {}) for name in (*EMBEDDED_FIELDS, "image"))


def apply_change(current: Product | None, change: Change) -> Product | None:
    """The product after ``change`` (None: absent). A patch of an absent product changes nothing."""
    if change.op == "upsert":
        return change.product
    if change.op == "delete" or current is None:
        return None
    fields = dict(change.fields or {})
    attributes = fields.pop("attributes", None)
    patched = dataclasses.replace(current, **fields)
    if attributes is not None:
        merged = dict(current.attributes)
        for key, value in attributes.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        patched = dataclasses.replace(patched, attributes=merged)
    return patched


def validate_patch(fields: Mapping[str, Any], *, row: int = 1) -> dict[str, Any]:
    """A PATCH body checked and typed like a catalogue row's fields.

    Raises:
        CatalogError: an unknown or unpatchable field, or a value a catalogue row would refuse.
    """
    problems = [
        RowProblem(row, name, f"cannot be patched; patchable fields: {', '.join(PATCHABLE_FIELDS)}")
        for name in fields
        if name not in PATCHABLE_FIELDS
    ]
    attributes = fields.get("attributes")
    if attributes is not None and not isinstance(attributes, dict):
        problems.append(RowProblem(row, "attributes", "must be an object of attribute name → value (null removes)"))
    elif attributes:
        problems += [
            RowProblem(row, f"attributes.{key}", "is one of Aisle's fields; patch it directly")
            for key in attributes
            if key in KNOWN_FIELDS
        ]
    if not fields:
        problems.append(RowProblem(row, "(body)", "no field to change"))
    if problems:
        raise CatalogError(f"patch {row}: {len(problems)} bad field(s)", problems)
    known = {name: value for name, value in fields.items() if name in KNOWN_FIELDS}
    # Typed by the catalogue's own rules: a placeholder id and title stand in for the product's.
    typed = product_from_record({"id": "_", "title": "_", **known}, row=row)
    patch: dict[str, Any] = {name: getattr(typed, name) for name in known}
    if attributes:
        patch["attributes"] = {
            key: (None if value is None else json.loads(json.dumps(value, default=str)))
            for key, value in attributes.items()
        }
    return patch


@dataclass(frozen=True)
class Receipt:
    """What a submission stored: the changes' sequence numbers (0 for duplicates) and the last."""

    sequences: list[int]
    duplicates: int

    @property
    def last(self) -> int:
        return max(self.sequences, default=0)


class Existence:
    """Answers "does this product exist now?" from the log's latest change of it, inside the writer's transaction.

    Args:
        base_sequence: the ``seq`` the serving version includes.
        in_base: whether that version has the product.
    """

    def __init__(self, base_sequence: int, in_base: Callable[[str], bool]) -> None:
        self.base_sequence = base_sequence
        self.in_base = in_base

    def exists(self, item_id: str, latest_op: str | None) -> bool:
        """``latest_op``: the op of the product's newest change above ``base_sequence`` (None: none)."""
        if latest_op is None:
            return self.in_base(item_id)
        return latest_op != "delete"


@dataclass(frozen=True)
class _Submission:
    changes: list[Change]
    existence: Existence


#: The stored columns read back, in ``_to_change``'s order.
_READ_COLUMNS = "seq, change_key, item_id, op, body, content_hash, vector, model"


class ChangeLog:
    """Durable, idempotent storage of product changes with one group-committing writer thread.

    The embedded SQLite log; :class:`~aisle.index.changes_postgres.PostgresChangeLog` keeps the
    same contract in PostgreSQL for replicas on several machines (``open_change_log`` picks).
    """

    #: Where the log is, for messages (no password).
    location: str

    def __init__(self, path: Path, *, writer: bool = True, max_batch_changes: int = 5000) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self._read_lock = threading.Lock()
        try:
            self._writer_conn: sqlite3.Connection | None = self._connect() if writer else None
            self._reader = self._connect()
        except (sqlite3.Error, OSError) as exc:
            raise ChangeLogError(f"cannot open the change log {self.path}: {exc}") from None
        self._init_writer(writer, max_batch_changes)

    def _init_writer(self, writer: bool, max_batch_changes: int) -> None:
        self._committer: GroupCommitter[_Submission] | None = None
        if writer:
            self._committer = GroupCommitter(
                "aisle-change-writer",
                self._commit,
                size=lambda submission: len(submission.changes),
                max_batch=max_batch_changes,
                failure=_write_failure,
            )

    def _connect(self) -> sqlite3.Connection:
        # The index root is published to the serving user: not owner-only like the event data.
        return open_database(self.path, private=False, busy_timeout_ms=30_000, schema=_SCHEMA)

    @classmethod
    def open_existing(cls, index_root: Path) -> ChangeLog | None:
        """The index root's log for reading, or None when no change was ever accepted."""
        path = Path(index_root) / CHANGES_FILE
        return cls(path, writer=False) if path.is_file() else None

    def start(self) -> None:
        if self._committer is None:
            raise ChangeLogError("this change log was opened for reading only")
        self._committer.start()

    def close(self, timeout_s: float = 30.0) -> None:
        """Commits what is queued, stops the writer and closes the connections."""
        if self._committer is not None:
            self._committer.stop(timeout_s)
        self._close_connections()

    def _close_connections(self) -> None:
        for conn in (self._writer_conn, self._reader):
            if conn is not None:
                conn.close()

    def submit(self, changes: list[Change], existence: Existence, timeout_s: float = 30.0) -> Receipt:
        """Stores ``changes`` durably (all or none) and returns once they are committed.

        Raises:
            ChangeRefused: a patch or delete of a product that does not exist, or a change id
                already used for another change; nothing of the submission was stored.
            ChangeLogError: the write failed or timed out; nothing was acknowledged.
        """
        if self._committer is None or not self._committer.running:
            raise ChangeLogError("the change log's writer is not running")
        try:
            return self._committer.submit(_Submission(changes, existence), timeout_s)
        except TimeoutError:
            raise ChangeLogError("the change log did not commit in time; retry (with the same change ids)") from None

    def _commit(self, batch: list[Pending[_Submission]]) -> None:
        """One transaction; a refused submission is refused before it writes anything."""
        conn = self._writer_conn
        assert conn is not None
        outcomes: list[Receipt | Exception] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for pending in batch:
                try:
                    outcomes.append(self._insert(conn, pending.payload))
                except ChangeRefused as exc:
                    outcomes.append(exc)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("rollback of a failed change commit failed")
            log.error("change log write failed, %d submissions refused: %s", len(batch), exc)
            raise ChangeLogError(f"the change log could not be written ({exc}); nothing was stored") from None
        _resolve(batch, outcomes)

    def _insert(self, conn: Any, submission: _Submission) -> Receipt:
        """Stores one submission's changes inside the open transaction, or raises ``ChangeRefused``
        having stored none: every change is checked first (against the log and the submission's
        earlier changes), then all are written at once (few round trips to a database server)."""
        changes = submission.changes
        digests = self._known_digests(conn, sorted({c.change_id for c in changes if c.change_id is not None}))
        latest = self._latest_ops(
            conn, sorted({c.item_id for c in changes if c.op != "upsert"}), submission.existence.base_sequence
        )
        now = time.time()
        rows: list[tuple] = []
        positions: list[int | None] = []  # index into rows, None for a duplicate
        for position, change in enumerate(changes, start=1):
            digest = change.digest()
            if change.change_id is not None:
                known = digests.get(change.change_id)
                if known is not None:
                    if known != digest:
                        raise ChangeRefused(
                            409,
                            "change_id_conflict",
                            f"change {position}: change_id '{change.change_id}' was already used for another change",
                        )
                    positions.append(None)
                    continue
                digests[change.change_id] = digest
            if change.op != "upsert" and not submission.existence.exists(change.item_id, latest.get(change.item_id)):
                raise ChangeRefused(404, "not_found", f"change {position}: unknown item id '{change.item_id}'")
            latest[change.item_id] = change.op
            vector = None if change.vector is None else np.asarray(change.vector, dtype="<f4").tobytes()
            positions.append(len(rows))
            rows.append(
                (
                    change.change_id,
                    digest,
                    change.item_id,
                    change.op,
                    change.body(),
                    change.content_hash,
                    vector,
                    change.model,
                    now,
                )
            )
        stored = self._store(conn, rows) if rows else []
        sequences = [0 if at is None else stored[at] for at in positions]
        return Receipt(sequences, positions.count(None))

    # The backend's statements: SQLite here (local calls, one per key); PostgresChangeLog batches them.

    def _known_digests(self, conn: Any, change_keys: list[str]) -> dict[str, str]:
        """change id → digest of the stored changes among ``change_keys``."""
        found = {}
        for key in change_keys:
            row = conn.execute("SELECT digest FROM changes WHERE change_key = ?", (key,)).fetchone()
            if row is not None:
                found[key] = str(row[0])
        return found

    def _latest_ops(self, conn: Any, item_ids: list[str], after_seq: int) -> dict[str, str]:
        """item id → op of its newest change above ``after_seq``, for the items that have one."""
        found = {}
        for item_id in item_ids:
            row = conn.execute(
                "SELECT op FROM changes WHERE item_id = ? AND seq > ? ORDER BY seq DESC LIMIT 1", (item_id, after_seq)
            ).fetchone()
            if row is not None:
                found[item_id] = str(row[0])
        return found

    def _store(self, conn: Any, rows: list[tuple]) -> list[int]:
        """Inserts the rows in order; their ``seq`` numbers."""
        sequences = []
        for row in rows:
            cursor = conn.execute(
                "INSERT INTO changes (change_key, digest, item_id, op, body, content_hash, vector, model, received) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            sequences.append(int(cursor.lastrowid or 0))
        return sequences

    _table = "changes"
    _mark = "?"

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._read_lock:
            return self._reader.execute(sql, params).fetchall()

    def last_seq(self) -> int:
        """The newest committed change's ``seq`` (0 when none)."""
        return int(self._read(f"SELECT max(seq) FROM {self._table}")[0][0] or 0)

    def count(self) -> int:
        return int(self._read(f"SELECT count(*) FROM {self._table}")[0][0])

    def read_after(self, seq: int, up_to: int | None = None) -> list[Change]:
        """Committed changes with ``seq`` above ``seq`` (and at most ``up_to``), in order."""
        return list(self.iter_after(seq, up_to))

    def iter_after(self, seq: int, up_to: int | None = None) -> Iterator[Change]:
        query = f"SELECT {_READ_COLUMNS} FROM {self._table} WHERE seq > {self._mark}"
        params: list[Any] = [seq]
        if up_to is not None:
            query += f" AND seq <= {self._mark}"
            params.append(up_to)
        for row in self._read(query + " ORDER BY seq", tuple(params)):
            yield _to_change(row)


def _write_failure(exc: Exception) -> Exception:
    if isinstance(exc, ChangeLogError):
        return exc
    return ChangeLogError(f"the change log could not be written ({exc}); nothing was stored")


def _resolve(batch: list[Pending[_Submission]], outcomes: list[Receipt | Exception]) -> None:
    for pending, outcome in zip(batch, outcomes, strict=True):
        if isinstance(outcome, Exception):
            pending.future.set_exception(outcome)
        else:
            pending.future.set_result(outcome)


def _to_change(row: tuple) -> Change:
    seq, key, item_id, op, body, content_hash, vector, model = row
    data = json.loads(body)
    return Change(
        op=op,
        item_id=item_id,
        product=Product(**data) if op == "upsert" else None,
        fields=data if op == "patch" else None,
        change_id=key,
        content_hash=content_hash,
        vector=None if vector is None else np.frombuffer(bytes(vector), dtype="<f4").astype(np.float32),
        model=model,
        seq=int(seq),
    )


def open_change_log(index_root: Path, database_url: str | None = None, *, writer: bool = True) -> ChangeLog:
    """The live catalogue's log: in PostgreSQL when ``database_url`` is set (replicas on several
    machines share it), else ``changes.sqlite3`` under the index root.

    Raises:
        ChangeLogError: the log cannot be opened.
    """
    if database_url:
        from aisle.index.changes_postgres import PostgresChangeLog

        return PostgresChangeLog(database_url, writer=writer)
    return ChangeLog(Path(index_root) / CHANGES_FILE, writer=writer)


def existing_change_log(index_root: Path, database_url: str | None = None) -> ChangeLog | None:
    """The log for reading, or None when no change was ever accepted (nothing to fold)."""
    if database_url:
        from aisle.index.changes_postgres import PostgresChangeLog

        return PostgresChangeLog.open_existing_url(database_url)
    return ChangeLog.open_existing(index_root)


def fold(products: list[Product], changes: list[Change]) -> list[Product]:
    """``products`` with ``changes`` applied in order: the catalogue a rebuild indexes.

    Changed products keep their place; new ones follow in the order they were first added.
    """
    state: dict[str, Product | None] = {product.id: product for product in products}
    for change in changes:
        state[change.item_id] = apply_change(state.get(change.item_id), change)
    return [product for product in state.values() if product is not None]


@dataclass
class FoldedCatalogue:
    """A catalogue with the change log applied: what a rebuild indexes, and what it includes.

    Attributes:
        products: the products after the changes.
        sequence: the newest change included (the new version's ``live_sequence``).
        vectors: content hash → vector of the logged texts encoded by ``model``, for re-use.
        changes: how many logged changes were applied.
    """

    products: list[Product]
    sequence: int
    vectors: dict[str, np.ndarray]
    changes: int


def fold_log(
    index_root: Path, products: list[Product], fingerprint: str, *, after: int = 0, database_url: str | None = None
) -> FoldedCatalogue:
    """``products`` with every change of the index root's log above ``after`` applied.

    Args:
        index_root: where the log lives (no log: nothing to apply).
        products: the catalogue the changes apply to.
        fingerprint: the build's encoder; logged vectors of another model are not re-used.
        after: changes up to this ``seq`` are already in ``products``.
        database_url: the log is in this PostgreSQL database (``AISLE_DATABASE_URL``).
    """
    change_log = existing_change_log(index_root, database_url)
    if change_log is None:
        return FoldedCatalogue(products, after, {}, 0)
    try:
        sequence = max(change_log.last_seq(), after)
        changes = change_log.read_after(after, sequence)
    finally:
        change_log.close()
    vectors = {
        change.content_hash: change.vector
        for change in changes
        if change.vector is not None and change.content_hash and change.model == fingerprint
    }
    return FoldedCatalogue(fold(products, changes), sequence, vectors, len(changes))
