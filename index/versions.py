"""Immutable index versions under one root, and the atomic ``current`` pointer.

Layout::

    ROOT/versions/<name>/manifest.json ...   one directory per published version, never modified
    ROOT/current -> versions/<name>          symlink, replaced atomically
    ROOT/.staging-<name>/                    a build in progress (removed or left behind by a crash)

A crash at any point leaves ``current`` on a complete, verified version.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from index.storage import fsync_dir, fsync_file

VERSIONS_DIR = "versions"
CURRENT_LINK = "current"
STAGING_PREFIX = ".staging-"
STALE_STAGING_SECONDS = 6 * 3600


class VersionError(RuntimeError):
    """A version is missing or the store is unusable."""


@dataclass(frozen=True)
class VersionInfo:
    name: str
    path: Path
    created: str
    items: int
    model: str
    current: bool


def new_version_name() -> str:
    """Sortable by creation time, unique across concurrent builds."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return f"v{stamp}-{secrets.token_hex(3)}"


class VersionStore:
    """Publishes, lists, rolls back and prunes versions under ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def versions_dir(self) -> Path:
        return self.root / VERSIONS_DIR

    def stage(self) -> tuple[str, Path]:
        """Creates an empty staging directory for a new version and returns ``(name, path)``."""
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        name = new_version_name()
        staging = self.root / f"{STAGING_PREFIX}{name}"
        staging.mkdir()
        return name, staging

    def publish(self, name: str, staging: Path) -> Path:
        """Makes a fully written staging directory an immutable version and the current one."""
        for path in staging.rglob("*"):
            if path.is_file():
                fsync_file(path)
        for directory in [staging, *[p for p in staging.rglob("*") if p.is_dir()]]:
            fsync_dir(directory)
        final = self.versions_dir / name
        os.rename(staging, final)
        fsync_dir(self.versions_dir)
        fsync_dir(self.root)
        self.set_current(name)
        return final

    def set_current(self, name: str) -> None:
        """Points ``current`` at version ``name`` atomically (symlink swap by rename)."""
        if not (self.versions_dir / name / "manifest.json").is_file():
            raise VersionError(f"no published version named '{name}' in {self.versions_dir}")
        tmp_link = self.root / f".{CURRENT_LINK}.{secrets.token_hex(4)}"
        os.symlink(f"{VERSIONS_DIR}/{name}", tmp_link)
        os.replace(tmp_link, self.root / CURRENT_LINK)
        fsync_dir(self.root)

    def current_name(self) -> str | None:
        link = self.root / CURRENT_LINK
        if not link.is_symlink():
            return None
        return Path(os.readlink(link)).name

    def current_path(self) -> Path:
        name = self.current_name()
        if name is None:
            raise VersionError(f"no current index version under {self.root}; run `aisle build` first")
        return self.versions_dir / name

    def names(self) -> list[str]:
        if not self.versions_dir.is_dir():
            return []
        return sorted(
            p.name for p in self.versions_dir.iterdir() if (p / "manifest.json").is_file()
        )

    def list(self) -> list[VersionInfo]:
        current = self.current_name()
        infos = []
        for name in self.names():
            path = self.versions_dir / name
            try:
                manifest = json.loads((path / "manifest.json").read_text())
            except (OSError, ValueError):
                manifest = {}
            infos.append(VersionInfo(
                name=name,
                path=path,
                created=str(manifest.get("created", "?")),
                items=int(manifest.get("count", 0)),
                model=str(manifest.get("model", {}).get("name", "?")),
                current=name == current,
            ))
        return infos

    def rollback(self, name: str | None = None) -> str:
        """Makes ``name`` (default: the version published before the current one) current."""
        names = self.names()
        if name is None:
            current = self.current_name()
            older = [n for n in names if current is None or n < current]
            if not older:
                raise VersionError("no earlier version to roll back to")
            name = older[-1]
        self.set_current(name)
        return name

    def prune(self, keep: int) -> list[str]:
        """Deletes all but the newest ``keep`` versions (never the current one) and stale staging dirs."""
        current = self.current_name()
        names = self.names()
        doomed = [n for n in names[: max(0, len(names) - keep)] if n != current]
        for name in doomed:
            shutil.rmtree(self.versions_dir / name, ignore_errors=True)
        # A staging directory this old was left by a crashed build, not one still running.
        for staging in self.root.glob(f"{STAGING_PREFIX}*"):
            if time.time() - staging.stat().st_mtime > STALE_STAGING_SECONDS:
                shutil.rmtree(staging, ignore_errors=True)
        return doomed
