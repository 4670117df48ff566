"""Crash-safe file writing: temp file, fsync, atomic rename. Nothing here ever pickles."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, BinaryIO, cast


def fsync_dir(path: Path) -> None:
    """Makes a rename or a new entry in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: Path, *, text: bool = False, mode: int = 0o644) -> Iterator[IO[Any]]:
    """A handle on a temporary file beside ``path``, fsynced and renamed onto it when the block
    ends without an error (and removed when it raises): readers see the old or the new file, whole.

    ``mode``: index files must be readable by the serving user too; data files are owner-only.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        handle: IO[Any] = os.fdopen(fd, "w", encoding="utf-8") if text else os.fdopen(fd, "wb")
        with handle:
            os.fchmod(handle.fileno(), mode)
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write(path: Path, write: Callable[[BinaryIO], None], mode: int = 0o644) -> None:
    """Writes a file through ``write(handle)`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path, mode=mode) as handle:
        write(cast(BinaryIO, handle))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replaces ``path`` with ``data`` atomically."""

    def write(handle: BinaryIO) -> None:
        handle.write(data)

    atomic_write(path, write)


def atomic_write_json(path: Path, payload: Any) -> None:
    """Replaces ``path`` with ``payload`` as indented, key-sorted JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def fsync_file(path: Path) -> None:
    """Flushes a file's data to disk (a read-only descriptor is enough on POSIX)."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's content, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
