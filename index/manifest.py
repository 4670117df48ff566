"""``manifest.json``: what a version holds, with a sha256 for every file, and its verification."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from index.storage import atomic_write_json, sha256_file

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


class IndexValidationError(RuntimeError):
    """A version directory is incomplete, corrupt or incompatible; the message says why."""


def write_manifest(directory: Path, fields: dict[str, Any]) -> dict[str, Any]:
    """Writes the manifest of a fully written version directory, checksumming every file."""
    files = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name != MANIFEST_NAME:
            relative = path.relative_to(directory).as_posix()
            files[relative] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    manifest = {
        "format": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **fields,
        "files": files,
    }
    atomic_write_json(directory / MANIFEST_NAME, manifest)
    return manifest


def read_manifest(directory: Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise IndexValidationError(f"{directory}: {MANIFEST_NAME} is missing")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexValidationError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise IndexValidationError(f"{path}: not an Aisle manifest (no 'files' table)")
    if manifest.get("format") != FORMAT_VERSION:
        raise IndexValidationError(
            f"{path}: manifest format {manifest.get('format')!r}, this Aisle reads {FORMAT_VERSION}"
        )
    return manifest


def resolve_member(directory: Path, relative: str) -> Path:
    """The path of a file named by the manifest, refusing anything outside ``directory``."""
    root = Path(directory).resolve()
    candidate = (root / relative).resolve()
    if Path(relative).is_absolute() or not candidate.is_relative_to(root):
        raise IndexValidationError(f"{directory}: manifest names a file outside the version: {relative!r}")
    return candidate


def verify_files(directory: Path, manifest: dict[str, Any], *, checksums: bool = True) -> None:
    """Checks that every file the manifest lists is inside, present, of its size and checksum."""
    for relative, entry in manifest["files"].items():
        path = resolve_member(directory, relative)
        if not path.is_file():
            raise IndexValidationError(f"{directory}: file '{relative}' is missing")
        size = path.stat().st_size
        if size != entry.get("bytes"):
            raise IndexValidationError(
                f"{directory}: file '{relative}' has {size} bytes, the manifest says {entry.get('bytes')} (truncated or replaced)"
            )
        if checksums and sha256_file(path) != entry.get("sha256"):
            raise IndexValidationError(f"{directory}: file '{relative}' fails its sha256 checksum")
