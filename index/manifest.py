"""``manifest.json``: what a version holds, with a sha256 for every file, and its verification."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from aisle.index.layout import MANIFEST_FILE
from aisle.index.storage import atomic_write_json, sha256_file

MANIFEST_NAME = MANIFEST_FILE
FORMAT_VERSION = 1


class IndexValidationError(RuntimeError):
    """A version directory is incomplete, corrupt or incompatible; the message says why."""


def write_manifest(
    directory: Path, fields: dict[str, Any], known_checksums: dict[str, str] | None = None
) -> dict[str, Any]:
    """Writes the manifest of a fully written version directory, checksumming every file.

    Args:
        directory: the version directory; every file in it (but the manifest) is listed.
        fields: the manifest's other fields (version, count, model, spaces, ...).
        known_checksums: sha256 of files already verified by the caller (relative path →
            hex digest), so that large re-used files are not read twice.
    """
    known = known_checksums or {}
    files = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.relative_to(directory).as_posix() != MANIFEST_NAME:
            relative = path.relative_to(directory).as_posix()
            checksum = known.get(relative) or sha256_file(path)
            files[relative] = {"sha256": checksum, "bytes": path.stat().st_size}
    manifest = {
        "format": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **fields,
        "files": files,
    }
    atomic_write_json(directory / MANIFEST_NAME, manifest)
    return manifest


def read_manifest(directory: Path) -> dict[str, Any]:
    """Reads and sanity-checks a version's manifest.

    Raises:
        IndexValidationError: missing, unreadable, or not a manifest of this format.
    """
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
    """The path of a file named by the manifest, refusing anything outside ``directory``.

    Symbolic links are resolved first, so a link inside the version pointing out of it is
    refused as well.
    """
    if not isinstance(relative, str) or not relative:
        raise IndexValidationError(f"{directory}: manifest names a file by {relative!r}, not a relative path")
    root = Path(directory).resolve()
    candidate = (root / relative).resolve()
    if Path(relative).is_absolute() or not candidate.is_relative_to(root):
        raise IndexValidationError(f"{directory}: manifest names a file outside the version: {relative!r}")
    return candidate


def verify_files(directory: Path, manifest: dict[str, Any], *, checksums: bool = True) -> None:
    """Checks that every file the manifest lists is inside, present, of its size and checksum.

    Raises:
        IndexValidationError: naming the first file that is outside, missing, truncated or
            altered.
    """
    for relative, entry in manifest["files"].items():
        if not isinstance(entry, dict):
            raise IndexValidationError(f"{directory}: manifest entry for {relative!r} is not an object")
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


def require_listed(directory: Path, manifest: dict[str, Any], relative: str) -> Path:
    """The path of a file or directory the manifest refers to, which its ``files`` table covers.

    A reference to anything the checksums do not cover (or outside the version) is refused, so
    that every byte a loaded version reads has been verified.
    """
    path = resolve_member(directory, relative)
    files = manifest["files"]
    prefix = relative.rstrip("/") + "/"
    if relative not in files and not any(name.startswith(prefix) for name in files):
        raise IndexValidationError(f"{directory}: manifest refers to {relative!r}, which it does not checksum")
    return path
