"""The live catalogue's change log: upserts, patches and deletes of products, durable before use.

An embedded SQLite database (``changes.sqlite3`` under the index root, beside the versions it
completes) in WAL mode with ``synchronous=FULL``: a change is acknowledged only after its commit
reached the disk. ``seq`` numbers changes in commit order (SQLite admits one writer at a time,
across processes too), so every reader that applies the changes above some ``seq`` in order
reaches the same catalogue. A published version records the ``seq`` it includes
(``live_sequence`` in its manifest); serving = that version plus every change above it.

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
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from aisle.index.catalog import EMBEDDED_FIELDS, KNOWN_FIELDS, CatalogError, Product, RowProblem, product_from_record

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
    """Answers "does this product exist now?" against the log inside the writer's transaction.

    Args:
        base_sequence: the ``seq`` the serving version includes.
        in_base: whether that version has the product.
    """

    def __init__(self, base_sequence: int, in_base: Callable[[str], bool]) -> None:
        self.base_sequence = base_sequence
        self.in_base = in_base

    def exists(self, conn: sqlite3.Connection, item_id: str) -> bool:
        row = conn.execute(
            "SELECT op FROM changes WHERE item_id = ? AND seq > ? ORDER BY seq DESC LIMIT 1",
            (item_id, self.base_sequence),
        ).fetchone()
        if row is None:
            return self.in_base(item_id)
        return row[0] != "delete"


@dataclass
class _Pending:
    changes: list[Change]
    existence: Existence
    future: Future


_STOP = object()


class ChangeLog:
    """Durable, idempotent storage of product changes with one group-committing writer thread."""

    def __init__(self, path: Path, *, writer: bool = True, max_batch_changes: int = 5000) -> None:
        self.path = Path(path)
        self.max_batch_changes = max_batch_changes
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._read_lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = self._connect() if writer else None
            self._reader = self._connect()
        except (sqlite3.Error, OSError) as exc:
            raise ChangeLogError(f"cannot open the change log {self.path}: {exc}") from None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.executescript(_SCHEMA)
        return conn

    @classmethod
    def open_existing(cls, index_root: Path) -> ChangeLog | None:
        """The index root's log for reading, or None when no change was ever accepted."""
        path = Path(index_root) / CHANGES_FILE
        return cls(path, writer=False) if path.is_file() else None

    def start(self) -> None:
        if self._writer is None:
            raise ChangeLogError("this change log was opened for reading only")
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="aisle-change-writer", daemon=True)
            self._thread.start()

    def close(self, timeout_s: float = 30.0) -> None:
        """Commits what is queued, stops the writer and closes the connections."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout_s)
            self._thread = None
        for conn in (self._writer, self._reader):
            if conn is not None:
                conn.close()

    def submit(self, changes: list[Change], existence: Existence, timeout_s: float = 30.0) -> Receipt:
        """Stores ``changes`` durably (all or none) and returns once they are committed.

        Raises:
            ChangeRefused: a patch or delete of a product that does not exist, or a change id
                already used for another change; nothing of the submission was stored.
            ChangeLogError: the write failed or timed out; nothing was acknowledged.
        """
        if self._thread is None:
            raise ChangeLogError("the change log's writer is not running")
        future: Future = Future()
        self._queue.put(_Pending(changes, existence, future))
        try:
            return future.result(timeout_s)
        except TimeoutError:
            raise ChangeLogError("the change log did not commit in time; retry (with the same change ids)") from None

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch: list[_Pending] = [first]
            count = len(first.changes)
            stop = False
            while count < self.max_batch_changes:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)
                count += len(more.changes)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Pending]) -> None:
        assert self._writer is not None
        conn = self._writer
        outcomes: list[Receipt | Exception] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for pending in batch:
                conn.execute("SAVEPOINT submission")
                try:
                    outcomes.append(self._insert(conn, pending))
                    conn.execute("RELEASE submission")
                except ChangeRefused as exc:
                    conn.execute("ROLLBACK TO submission")
                    conn.execute("RELEASE submission")
                    outcomes.append(exc)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            log.error("change log write failed, %d submissions refused: %s", len(batch), exc)
            error = ChangeLogError(f"the change log could not be written ({exc}); nothing was stored")
            for pending in batch:
                pending.future.set_exception(error)
            return
        for pending, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Exception):
                pending.future.set_exception(outcome)
            else:
                pending.future.set_result(outcome)

    @staticmethod
    def _insert(conn: sqlite3.Connection, pending: _Pending) -> Receipt:
        sequences: list[int] = []
        duplicates = 0
        now = time.time()
        for position, change in enumerate(pending.changes, start=1):
            digest = change.digest()
            if change.change_id is not None:
                known = conn.execute("SELECT digest FROM changes WHERE change_key = ?", (change.change_id,)).fetchone()
                if known is not None:
                    if known[0] != digest:
                        raise ChangeRefused(
                            409,
                            "change_id_conflict",
                            f"change {position}: change_id '{change.change_id}' was already used for another change",
                        )
                    duplicates += 1
                    sequences.append(0)
                    continue
            if change.op != "upsert" and not pending.existence.exists(conn, change.item_id):
                raise ChangeRefused(404, "not_found", f"change {position}: unknown item id '{change.item_id}'")
            vector = None if change.vector is None else np.asarray(change.vector, dtype="<f4").tobytes()
            cursor = conn.execute(
                "INSERT INTO changes (change_key, digest, item_id, op, body, content_hash, vector, model, received) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                ),
            )
            sequences.append(int(cursor.lastrowid or 0))
        return Receipt(sequences, duplicates)

    def last_seq(self) -> int:
        """The newest committed change's ``seq`` (0 when none)."""
        with self._read_lock:
            row = self._reader.execute("SELECT max(seq) FROM changes").fetchone()
        return int(row[0] or 0)

    def count(self) -> int:
        with self._read_lock:
            return int(self._reader.execute("SELECT count(*) FROM changes").fetchone()[0])

    def read_after(self, seq: int, up_to: int | None = None) -> list[Change]:
        """Committed changes with ``seq`` above ``seq`` (and at most ``up_to``), in order."""
        return list(self.iter_after(seq, up_to))

    def iter_after(self, seq: int, up_to: int | None = None) -> Iterator[Change]:
        query = "SELECT seq, change_key, item_id, op, body, content_hash, vector, model FROM changes WHERE seq > ?"
        params: list[Any] = [seq]
        if up_to is not None:
            query += " AND seq <= ?"
            params.append(up_to)
        with self._read_lock:
            rows = self._reader.execute(query + " ORDER BY seq", params).fetchall()
        for seq_, key, item_id, op, body, content_hash, vector, model in rows:
            data = json.loads(body)
            yield Change(
                op=op,
                item_id=item_id,
                product=Product(**data) if op == "upsert" else None,
                fields=data if op == "patch" else None,
                change_id=key,
                content_hash=content_hash,
                vector=None if vector is None else np.frombuffer(vector, dtype="<f4").astype(np.float32),
                model=model,
                seq=int(seq_),
            )


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


def fold_log(index_root: Path, products: list[Product], fingerprint: str, *, after: int = 0) -> FoldedCatalogue:
    """``products`` with every change of the index root's log above ``after`` applied.

    Args:
        index_root: where the log lives (no log: nothing to apply).
        products: the catalogue the changes apply to.
        fingerprint: the build's encoder; logged vectors of another model are not re-used.
        after: changes up to this ``seq`` are already in ``products``.
    """
    change_log = ChangeLog.open_existing(index_root)
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
