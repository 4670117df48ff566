"""Holds the serving ``Engine`` and swaps it for a new index version without failing a request.

A request reads ``holder.engine`` once and uses that object to the end, so every response comes
from exactly one version; a swap replaces the reference only after the new version is loaded,
validated and has answered a smoke query.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from embed.base import Encoder
from index.loaded import LoadedIndex
from index.manifest import IndexValidationError
from index.versions import VersionStore
from service.engine import Engine

log = logging.getLogger(__name__)


class IndexHolder:
    """The current engine, and the logic to replace it."""

    def __init__(
        self,
        index_root: Path,
        encoder: Encoder,
        *,
        verify_checksums: bool = True,
        candidates: int = 200,
        on_swap: Callable[[Engine], None] | None = None,
    ) -> None:
        self.store = VersionStore(index_root)
        self.encoder = encoder
        self.verify_checksums = verify_checksums
        self.candidates = candidates
        self.on_swap = on_swap
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        engine = self._engine
        if engine is None:
            raise IndexValidationError("no index version is loaded")
        return engine

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    def load_version(self, path: Path) -> Engine:
        """Loads and validates a version, and checks it answers a query."""
        index = LoadedIndex.load(
            path, expected_fingerprint=self.encoder.fingerprint, verify_checksums=self.verify_checksums
        )
        engine = Engine(index, self.encoder, self.candidates)
        if len(index):
            smoke = engine.search(index.items.titles[0], 1)
            if not smoke:
                raise IndexValidationError(f"{path}: the smoke query returned nothing")
        return engine

    def reload(self) -> tuple[bool, str]:
        """Swaps in the current published version if it is new and valid.

        Returns:
            ``(swapped, version)``: whether a swap happened and the version now serving.

        Raises:
            IndexValidationError: the new version is invalid; the old one keeps serving.
        """
        with self._lock:
            path = self.store.current_path().resolve()
            if self._engine is not None and self._engine.index.path == path:
                return False, self._engine.version
            try:
                engine = self.load_version(path)
            except IndexValidationError as exc:
                log.error("refused index version %s: %s", path.name, exc)
                raise
            previous = self._engine.version if self._engine else None
            self._engine = engine
            log.info("serving index version %s (was %s, %d items)", engine.version, previous, len(engine.index))
            if self.on_swap is not None:
                self.on_swap(engine)
            return True, engine.version
