"""The live catalogue in a serving process: accept product changes, follow the log, serve the delta.

Every worker process runs one ``LiveCatalog``. A change is validated, encoded when its text is
new (``prepare_*``), committed to the shared change log (``aisle.index.changes``) and only then
acknowledged. A follower thread polls the log's newest ``seq`` every ``poll_s`` and applies what
other workers committed; a worker's own commits wake it at once, and the request waits (at most
``visible_timeout_s``) until its change is served, so a client reads its own writes. Applying
builds the next immutable ``LiveIndex`` snapshot (``aisle.index.live``) and publishes it through
the ``IndexHolder``; a version swap goes through ``overlay``, which replays every change above
the new version's ``live_sequence`` before the new version is served.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from aisle.index.catalog import Product
from aisle.index.changes import Change, ChangeLog, Existence, Receipt, apply_change, open_change_log
from aisle.index.live import Delta, LiveIndex, base_sequence
from aisle.index.loaded import LoadedIndex
from aisle.service.engine import Engine
from aisle.service.holder import IndexHolder

log = logging.getLogger(__name__)

FollowListener = Callable[[Engine], None]


class LiveCatalog:
    """The change log, the delta over the serving version and the thread that follows the log.

    Args:
        holder: the serving index holder (its overlay hook is taken over).
        change_log: the shared log.
        poll_s: how often other workers' changes are looked for.
        visible_timeout_s: how long a write waits for its change to be served before answering.
    """

    def __init__(
        self, holder: IndexHolder, change_log: ChangeLog, *, poll_s: float = 0.1, visible_timeout_s: float = 1.0
    ) -> None:
        self.holder = holder
        self.log = change_log
        self.poll_s = poll_s
        self.visible_timeout_s = visible_timeout_s
        self._delta: Delta | None = None
        self._listeners: list[FollowListener] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._applied = threading.Condition()
        self._thread: threading.Thread | None = None

    @classmethod
    def open(cls, holder: IndexHolder, *, poll_s: float = 0.1, database_url: str | None = None) -> LiveCatalog:
        """Opens the log (under the holder's index root, or in PostgreSQL with ``database_url``)
        and serves its changes at once.

        Raises:
            ChangeLogError: the log cannot be opened.
        """
        live = cls(holder, open_change_log(Path(holder.store.root), database_url), poll_s=poll_s)
        live.log.start()
        with holder.publish_lock:
            holder.overlay = live.overlay
            if holder.loaded:
                holder.publish(live.overlay(holder.engine))
        live._thread = threading.Thread(target=live._follow, name="aisle-live-follower", daemon=True)
        live._thread.start()
        return live

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        self.holder.overlay = None
        self.log.close()

    def add_listener(self, listener: FollowListener) -> None:
        """Calls ``listener(engine)`` after each snapshot of the same version is published."""
        self._listeners.append(listener)

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self.holder.encoder.encode_documents(texts, show_progress=False)

    def overlay(self, engine: Engine) -> Engine:
        """``engine``'s version with every logged change above its ``live_sequence`` applied."""
        base = engine.index.base if isinstance(engine.index, LiveIndex) else engine.index
        assert isinstance(base, LoadedIndex)
        delta = Delta(base, self._encode)
        started = time.perf_counter()
        snapshot = delta.apply(self.log.iter_after(delta.sequence))
        self._delta = delta
        applied = snapshot.sequence - delta.base_sequence
        if applied:
            log.info(
                "live catalogue: %d changes above version %s replayed in %.0f ms",
                applied,
                base.version,
                (time.perf_counter() - started) * 1000,
            )
        if snapshot.items is base.items:  # nothing changed since the version: serve it as it is
            return engine if engine.index is base else _engine_over(base, engine)
        return _engine_over(snapshot, engine)

    @property
    def sequence(self) -> int:
        """The newest change this process serves."""
        delta = self._delta
        return delta.sequence if delta is not None else 0

    def catch_up(self) -> int:
        """Applies the changes committed since the last look; returns the ``seq`` now served."""
        with self.holder.publish_lock:
            delta = self._delta
            if delta is None:
                return 0
            changes = self.log.read_after(delta.sequence)
            if changes:
                snapshot = delta.apply(changes)
                engine = self.holder.engine
                fresh = _engine_over(snapshot, engine)
                self.holder.publish(fresh)
            else:
                fresh = None
            sequence = delta.sequence
        with self._applied:
            self._applied.notify_all()
        if fresh is not None:
            for listener in self._listeners:
                try:
                    listener(fresh)
                except Exception:  # a listener's bug must not stop the catalogue from following
                    log.exception("live catalogue listener %r failed", listener)
        return sequence

    def _follow(self) -> None:
        pace = 0.0
        while not self._stop.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            # Under a stream of writes, applies are spaced by twice the last one's duration: each
            # takes every change committed meanwhile, and building snapshots never takes more than
            # about a third of the worker's core from the requests.
            if pace and self._stop.wait(pace):
                return
            if self._stop.is_set():
                return
            try:
                if self.log.last_seq() > self.sequence:
                    started = time.perf_counter()
                    self.catch_up()
                    pace = min(2 * (time.perf_counter() - started), self.poll_s)
                else:
                    pace = 0.0
            except Exception:  # the old snapshot keeps serving; the delta is rebuilt from the log
                log.exception("live catalogue: applying changes failed; rebuilding the delta from the log")
                time.sleep(self.poll_s)
                self._rebuild()

    def _rebuild(self) -> None:
        try:
            with self.holder.publish_lock:
                self.holder.publish(self.overlay(self.holder.engine))
        except Exception:
            log.exception("live catalogue: rebuilding the delta failed; will retry")

    def wait_visible(self, sequence: int) -> bool:
        """Waits until this process serves ``sequence`` (bounded); True when it does."""
        deadline = time.monotonic() + self.visible_timeout_s
        self._wake.set()
        with self._applied:
            while self.sequence < sequence:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._applied.wait(left)
        return True

    # Accepting changes.

    def current(self, item_id: str) -> Product | None:
        """The product as this process serves it now (None: unknown or deleted)."""
        items = self.holder.engine.index.items
        row = items.row_of.get(item_id)
        return None if row is None else items.product(row)

    def prepare_upserts(self, products: list[Product], change_ids: list[str | None]) -> list[Change]:
        """Upserts of whole products, each encoded here when its text differs from the served one."""
        return self.prepare_batch([None] * len(products), dict(enumerate(products, start=1)), change_ids)

    def prepare_patch(self, item_id: str, fields: dict, change_id: str | None) -> Change:
        """A patch; when it changes embedded text the patched product is encoded here.

        Raises:
            KeyError: the product does not exist now.
        """
        if self.current(item_id) is None:
            raise KeyError(item_id)
        return self.prepare_batch([Change("patch", item_id, fields=fields)], {}, [change_id])[0]

    def prepare_batch(
        self, changes: list[Change | None], upserts: dict[int, Product], change_ids: list[str | None]
    ) -> list[Change]:
        """The changes of a batch with their change ids, content hashes and new vectors.

        ``changes[i]`` is None where ``upserts[i + 1]`` holds the upserted product. Products are
        followed through the batch, so a patch after an upsert of the same product is encoded
        from the upserted text; a text the served product already has is not encoded again.
        """
        state: dict[str, Product | None] = {}
        prepared: list[Change] = []
        to_encode: dict[int, str] = {}
        for position, (change, change_id) in enumerate(zip(changes, change_ids, strict=True)):
            if change is None:
                product = upserts[position + 1]
                change = Change("upsert", product.id, product=product)
            item_id = change.item_id
            before = state[item_id] if item_id in state else self.current(item_id)
            after = apply_change(before, change)
            state[item_id] = after
            content_hash = after.content_hash() if after is not None and change.touches_text else None
            prepared.append(
                Change(
                    change.op,
                    item_id,
                    product=change.product,
                    fields=change.fields,
                    change_id=change_id,
                    content_hash=content_hash,
                )
            )
            if content_hash is not None and (before is None or before.content_hash() != content_hash):
                assert after is not None
                to_encode[position] = after.embedding_text()
        if to_encode:
            vectors = self._encode(list(to_encode.values()))
            for position, vector in zip(to_encode, vectors, strict=True):
                prepared[position] = dataclasses.replace(
                    prepared[position], vector=np.asarray(vector, np.float32), model=self.holder.encoder.fingerprint
                )
        return prepared

    def submit(self, changes: list[Change]) -> tuple[Receipt, bool]:
        """Commits ``changes`` durably (all or none), then waits until they are served here.

        Returns:
            The receipt and whether the changes were already visible when it returned.

        Raises:
            ChangeRefused: a patch or delete of an unknown product, or a conflicting change id.
            ChangeLogError: the log could not be written; nothing was stored.
        """
        index = self.holder.engine.index
        base = index.base if isinstance(index, LiveIndex) else index
        existence = Existence(base_sequence(base.manifest), base.items.row_of.__contains__)
        receipt = self.log.submit(changes, existence)
        visible = self.wait_visible(receipt.last) if receipt.last else True
        return receipt, visible


def _engine_over(index: LoadedIndex | LiveIndex, engine: Engine) -> Engine:
    """An engine like ``engine`` (same encoders and settings) over ``index``."""
    return Engine(index, engine.encoder, engine.candidates, engine.image_encoder)  # type: ignore[arg-type]
