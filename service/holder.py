"""Holds the serving ``Engine`` and swaps it for a new index version without failing a request.

A request reads ``holder.engine`` once and uses that object to the end, so every response comes
from exactly one version; a swap replaces the reference only after the new version is loaded,
validated (files, sizes, checksums, model, dimensions) and has answered a smoke query. An
invalid version is refused with a logged reason and the old one keeps serving.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aisle.embed.base import Encoder, ImageEncoder
from aisle.index.loaded import LoadedIndex
from aisle.index.manifest import IndexValidationError
from aisle.index.versions import VersionStore
from aisle.service.engine import Engine

log = logging.getLogger(__name__)

SwapListener = Callable[[Engine], None]
#: The image encoder for a version's image-space fingerprint, or None when none is available.
ImageEncoderLookup = Callable[[str], "ImageEncoder | None"]


@dataclass(frozen=True)
class Refusal:
    """The last version refused, and why."""

    path: Path
    reason: str
    at: float


class IndexHolder:
    """The current engine, and the logic to replace it."""

    def __init__(
        self,
        index_root: Path,
        encoder: Encoder,
        *,
        verify_checksums: bool = True,
        candidates: int = 200,
        ef_search: int | None = None,
        nprobe: int | None = None,
        on_swap: SwapListener | None = None,
        image_encoders: ImageEncoderLookup | None = None,
        engine_options: dict[str, Any] | None = None,
    ) -> None:
        self.store = VersionStore(index_root)
        self.encoder = encoder
        self.image_encoders = image_encoders
        self._image_encoders: dict[str, ImageEncoder | None] = {}
        self.verify_checksums = verify_checksums
        self.candidates = candidates
        self.ef_search = ef_search
        self.nprobe = nprobe
        #: Keyword arguments of every ``Engine`` (typo tolerance, query cache size, ...).
        self.engine_options = dict(engine_options or {})
        self._listeners: list[SwapListener] = [on_swap] if on_swap is not None else []
        self._refusal_listeners: list[Callable[[Refusal], None]] = []
        self.last_refusal: Refusal | None = None
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        #: Held while the serving engine is replaced; the live catalogue holds it to publish a delta.
        self.publish_lock = threading.Lock()
        #: Turns a freshly loaded version's engine into the one to serve (the live catalogue's
        #: changes applied on top), under ``publish_lock``, before the swap.
        self.overlay: Callable[[Engine], Engine] | None = None

    @property
    def engine(self) -> Engine:
        engine = self._engine
        if engine is None:
            raise IndexValidationError("no index version is loaded")
        return engine

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    @property
    def serving_path(self) -> Path | None:
        engine = self._engine
        return engine.index.path if engine is not None else None

    def add_swap_listener(self, listener: SwapListener) -> None:
        """Calls ``listener(new_engine)`` after every swap (metrics, caches keyed by version)."""
        self._listeners.append(listener)

    def add_refusal_listener(self, listener: Callable[[Refusal], None]) -> None:
        self._refusal_listeners.append(listener)

    def load_version(self, path: Path) -> Engine:
        """Loads and validates a version, and checks that it answers a query.

        Raises:
            IndexValidationError: naming the version and what is wrong with it.
        """
        index = LoadedIndex.load(
            path,
            expected_fingerprint=self.encoder.fingerprint,
            verify_checksums=self.verify_checksums,
            ef_search=self.ef_search,
            nprobe=self.nprobe,
        )
        dim = int(index.text.vectors.shape[1])
        if dim != self.encoder.dim:
            raise IndexValidationError(
                f"{path}: text vectors have {dim} dimensions, the query encoder writes {self.encoder.dim}"
            )
        engine = Engine(index, self.encoder, self.candidates, self._image_encoder(index), **self.engine_options)
        if len(index):
            try:
                smoke = engine.search(index.items.titles[0], 1)
            except Exception as exc:  # any failure here would fail every request after the swap
                raise IndexValidationError(f"{path}: the smoke query failed ({type(exc).__name__}: {exc})") from exc
            if not smoke:
                raise IndexValidationError(f"{path}: the smoke query returned nothing")
        return engine

    def publish(self, engine: Engine) -> None:
        """Serves ``engine``, a newer snapshot of the version serving; the caller holds ``publish_lock``."""
        self._engine = engine

    def _image_encoder(self, index: LoadedIndex) -> ImageEncoder | None:
        """The query-side image model of a version with an image space (None: image retrieval
        by text is off for it, with a warning; similar items still use its pictures)."""
        space = index.image
        if space is None:
            return None
        if space.fingerprint not in self._image_encoders:
            encoder = self.image_encoders(space.fingerprint) if self.image_encoders is not None else None
            if encoder is not None and encoder.fingerprint != space.fingerprint:
                encoder = None
            if encoder is None:
                log.warning(
                    "version %s has an image space (%s, %s) but its image model is not available here: "
                    "search uses text only; configure image_model or share the build's model cache",
                    index.version,
                    space.model,
                    space.fingerprint,
                )
            self._image_encoders[space.fingerprint] = encoder
        return self._image_encoders[space.fingerprint]

    def pending_path(self) -> Path | None:
        """The published version if it differs from the one serving, else None."""
        path = self.store.current_path().resolve()
        return None if path == self.serving_path else path

    def reload(self) -> tuple[bool, str]:
        """Swaps in the current published version if it is new and valid.

        Returns:
            ``(swapped, version)``: whether a swap happened and the version now serving.

        Raises:
            VersionError: nothing is published under the index root.
            IndexValidationError: the new version is invalid; the old one keeps serving.
        """
        with self._lock:
            path = self.store.current_path().resolve()
            if self._engine is not None and self._engine.index.path == path:
                return False, self._engine.version
            engine = self._swap_in(path)
        self._notify(engine)
        return True, engine.version

    def serve_last_good(self) -> str:
        """After the current version was refused with nothing serving: the newest older valid one.

        A start must not turn one corrupt publication into an outage when an earlier version is
        intact: the versions older than ``current`` are tried newest first, each validated as
        fully as a reload. ``current`` itself is left as it is (an operator decides: rebuild or
        ``aisle rollback``), and ``last_refusal`` keeps naming it, in ``/health`` as well.

        Raises:
            IndexValidationError: no older version is valid either (the message lists why).
        """
        refusal = self.last_refusal
        current = self.store.current_name()
        reasons = [refusal.reason] if refusal is not None else []
        with self._lock:
            for name in reversed([name for name in self.store.names() if current is None or name < current]):
                path = (self.store.versions_dir / name).resolve()
                try:
                    engine = self._swap_in(path)
                except IndexValidationError as exc:
                    reasons.append(str(exc))
                    continue
                self.last_refusal = refusal
                log.critical(
                    "THE CURRENT INDEX VERSION %s IS INVALID; serving the last good version %s instead. "
                    "Rebuild, or run `aisle rollback` to a good version. Reason: %s",
                    current,
                    name,
                    refusal.reason if refusal is not None else "?",
                    extra={"refused_version": current, "index_version": name},
                )
                break
            else:
                raise IndexValidationError("; ".join(reasons) or f"no valid index version under {self.store.root}")
        self._notify(engine)
        return engine.version

    def _swap_in(self, path: Path) -> Engine:
        """Loads and validates ``path`` and makes it the serving version (call with the lock held).

        Raises:
            IndexValidationError: the version is invalid (recorded as the last refusal).
        """
        started = time.perf_counter()
        # Collected now, the garbage of the requests so far is not frozen with the version below.
        gc.collect(2 if self._engine is None else 1)
        try:
            with _collector_paused():
                engine = self.load_version(path)
                # Python's full garbage collection walks every tracked object, and a
                # million-item version's tables made that a long pause of every
                # request, whenever enough long-lived objects (user profiles, caches) had
                # piled up. A version holds no reference cycles (checked), so it is moved
                # out of the collector's sight, and reference counting still frees it
                # after the next swap. Frozen before collection resumes: the first
                # collection after the load would walk it once more.
                gc.freeze()
        except IndexValidationError as exc:
            self._refuse(path, str(exc))
            raise
        previous = self._engine.version if self._engine else None
        with self.publish_lock:
            if self.overlay is not None:
                engine = self.overlay(engine)
            self._engine = engine  # the swap: one reference assignment, atomic for readers
        self.last_refusal = None
        log.info(
            "serving index version %s (was %s, %d items, loaded in %.0f ms)",
            engine.version,
            previous,
            len(engine.index),
            (time.perf_counter() - started) * 1000,
            extra={"index_version": engine.version, "previous_version": previous},
        )
        return engine

    def _notify(self, engine: Engine) -> None:
        for listener in self._listeners:
            try:
                listener(engine)
            except Exception:  # a listener's bug must not undo or fail a good swap
                log.exception("swap listener %r failed", listener)

    def _refuse(self, path: Path, reason: str) -> None:
        serving = self._engine.version if self._engine else None
        log.error(
            "refused index version %s: %s; %s",
            path.name,
            reason,
            f"still serving {serving}" if serving else "no version is serving",
            extra={"refused_version": path.name, "index_version": serving},
        )
        self.last_refusal = Refusal(path, reason, time.time())
        for listener in self._refusal_listeners:
            try:
                listener(self.last_refusal)
            except Exception:
                log.exception("refusal listener %r failed", listener)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No automatic garbage collection while a version loads.

    Each collection during a million-item load walked the new tables again, each holding the GIL
    and so pausing the requests served meanwhile.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
