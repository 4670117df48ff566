"""Content-addressed model cache: hashing a model directory and publishing exports atomically.

Layout::

    <cache_dir>/<sha256 of the source model's content>/<backend>/
        model.onnx, tokenizer.json, aisle_model.json, ...

A directory appears under its final name only once it is complete (it is built under a temporary
name in the same parent and renamed), so a reader never sees a half-written export and two
concurrent exporters cannot corrupt each other: the loser of the rename race discards its copy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Files that describe a model without changing what it computes; they do not enter the hash,
#: so that editing a model card does not invalidate every cached export.
#: ``aisle-serving.json`` and ``collaborative/`` (``aisle.embed.collaborative``) serve recommendations,
#: not the text encoder: a model trained on sequences shares its base model's export and indexes.
_IGNORED_NAMES = frozenset({"README.md", ".gitattributes", "LICENSE", "LICENSE.txt", "aisle-serving.json"})
_IGNORED_SUFFIXES = (".md", ".lock", ".onnx", ".tmp")
_CHUNK = 1 << 20
_ABANDONED_AFTER_S = 24 * 3600

_hash_memo: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}
_hash_memo_lock = threading.Lock()


def _model_files(model_dir: Path) -> Iterator[Path]:
    """Yields the files that define a model (weights, configs, tokenizer), sorted by path."""
    files = []
    for path in model_dir.rglob("*"):
        relative = path.relative_to(model_dir)
        # Hidden entries (.git, .cache) and exported ONNX side-cars are not model content.
        if any(part.startswith(".") for part in relative.parts):
            continue
        if not path.is_file() or path.name in _IGNORED_NAMES or path.name.endswith(_IGNORED_SUFFIXES):
            continue
        if relative.parts[0] in {"onnx", "openvino", "collaborative"}:
            continue
        files.append(path)
    yield from sorted(files, key=lambda p: p.relative_to(model_dir).as_posix())


def content_hash(model_dir: Path) -> str:
    """SHA-256 over the relative path, size and bytes of every model file, streamed.

    The result only depends on content, not on where the directory lives or on mtimes, so the
    same model copied elsewhere hits the same cache entry. Within one process the hash is
    memoised on (path, size, mtime) of each file, because hashing a model's weights is slow.

    Args:
        model_dir: a local model directory.

    Returns:
        The hex digest.

    Raises:
        FileNotFoundError: if the directory holds no model file.
    """
    model_dir = Path(model_dir).resolve()
    files = list(_model_files(model_dir))
    if not files:
        raise FileNotFoundError(f"no model files found in {model_dir}")
    stats = tuple((p.relative_to(model_dir).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    memo_key = (str(model_dir), stats)
    with _hash_memo_lock:
        if memo_key in _hash_memo:
            return _hash_memo[memo_key]
    digest = hashlib.sha256()
    for path, (relative, size, _) in zip(files, stats, strict=True):
        # Length-prefixing the name and size keeps file boundaries unambiguous.
        digest.update(f"{len(relative)}:{relative}:{size}\n".encode())
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    result = digest.hexdigest()
    with _hash_memo_lock:
        _hash_memo[memo_key] = result
    return result


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def export_dir(cache_dir: Path, model_hash: str, backend: str) -> Path:
    """Where the export of ``model_hash`` for ``backend`` lives (it may not exist yet)."""
    return Path(cache_dir) / model_hash / backend


def fsync_path(path: Path) -> None:
    """Flushes a file or a directory entry to disk (directories matter for renames)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if path.is_dir() else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except OSError:  # pragma: no cover - some filesystems refuse to open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - e.g. directories on some network filesystems
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Writes JSON through a temporary file, fsync and rename, so readers see all or nothing."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600; give the file the permissions a plain open() would.
        os.chmod(tmp_name, 0o666 & ~_current_umask())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def staging_dir(final_dir: Path) -> Path:
    """Creates an empty directory beside ``final_dir`` to build an export in.

    Staging directories abandoned by a crashed exporter more than a day ago are removed first
    (a live exporter's directory is never that old: exports take seconds to minutes).
    """
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    for abandoned in final_dir.parent.glob(f".{final_dir.name}.*.tmp"):
        try:
            if time.time() - abandoned.stat().st_mtime > _ABANDONED_AFTER_S:
                discard_dir(abandoned)
        except OSError:  # removed by another process meanwhile
            continue
    staged = Path(tempfile.mkdtemp(prefix=f".{final_dir.name}.", suffix=".tmp", dir=final_dir.parent))
    # mkdtemp creates 0700; a cache built by one user is often served by another.
    staged.chmod(0o777 & ~_current_umask())
    return staged


def publish_dir(staged: Path, final_dir: Path) -> Path:
    """Moves a finished export into place; if another process won the race, keeps theirs.

    Every file is fsynced before the rename so that a crash cannot leave a complete-looking
    directory with empty files.

    Args:
        staged: the directory built by :func:`staging_dir`.
        final_dir: the cache entry to create.

    Returns:
        ``final_dir``.
    """
    for path in staged.rglob("*"):
        if path.is_file():
            fsync_path(path)
    fsync_path(staged)
    try:
        # rename(2) of a directory onto an existing non-empty directory fails atomically.
        os.rename(staged, final_dir)
    except OSError:
        if not final_dir.is_dir():
            shutil.rmtree(staged, ignore_errors=True)
            raise
        shutil.rmtree(staged, ignore_errors=True)
    fsync_path(final_dir.parent)
    return final_dir


def discard_dir(path: Path) -> None:
    """Removes a stale or staging directory, tolerating concurrent removal."""
    shutil.rmtree(path, ignore_errors=True)
