"""Immutable index versions under one root, and the atomic ``current`` pointer.

Layout::

    ROOT/versions/<name>/manifest.json ...   one directory per published version, never modified
    ROOT/current -> versions/<name>          symlink, replaced atomically
    ROOT/.staging-<name>/                    a build in progress (removed or left behind by a crash)
    ROOT/.build.lock                         held (flock) by the running build

A crash at any point leaves ``current`` on a complete, verified version: a version directory is
fully written and fsynced before it is renamed into ``versions/``, and ``current`` is replaced by
renaming a new symlink over it. Staging directories left by crashed builds are removed by a
later build once they are ``STALE_STAGING_SECONDS`` old (so a build running on another host
sharing the directory is never disturbed). The files of one version are described in
``aisle.index.layout``.
"""

from __future__ import annotations

import builtins
import fcntl
import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from aisle.index.storage import fsync_dir, fsync_file

VERSIONS_DIR = "versions"
CURRENT_LINK = "current"
STAGING_PREFIX = ".staging-"
LOCK_FILE = ".build.lock"
STALE_STAGING_SECONDS = 6 * 3600


class VersionError(RuntimeError):
    """A version is missing or the store is unusable."""


class BuildLockedError(VersionError):
    """Another build of the same index root is running."""


@dataclass(frozen=True)
class VersionInfo:
    """One published version as ``aisle versions`` lists it."""

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

    @contextmanager
    def build_lock(self) -> Iterator[None]:
        """Holds the root's build lock; a second concurrent build fails fast instead of racing.

        Raises:
            BuildLockedError: another process holds the lock.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise BuildLockedError(
                    f"another build of {self.root} is running (pid {holder}); try again when it ends"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield
        finally:
            os.close(fd)  # closing releases the lock; a crash releases it too

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
        """The current version's name, or None before the first publication."""
        link = self.root / CURRENT_LINK
        if not link.is_symlink():
            return None
        return Path(os.readlink(link)).name

    def current_path(self) -> Path:
        """The current version's directory.

        Raises:
            VersionError: nothing was published yet.
        """
        name = self.current_name()
        if name is None:
            raise VersionError(f"no current index version under {self.root}; run `aisle build` first")
        return self.versions_dir / name

    def names(self) -> list[str]:
        """Published versions, oldest first (names sort by creation time)."""
        if not self.versions_dir.is_dir():
            return []
        return sorted(p.name for p in self.versions_dir.iterdir() if (p / "manifest.json").is_file())

    def list(self) -> list[VersionInfo]:
        """Every published version, oldest first, marking the current one."""
        current = self.current_name()
        infos = []
        for name in self.names():
            path = self.versions_dir / name
            try:
                manifest = json.loads((path / "manifest.json").read_text())
            except (OSError, ValueError):
                manifest = {}
            infos.append(
                VersionInfo(
                    name=name,
                    path=path,
                    created=str(manifest.get("created", "?")),
                    items=int(manifest.get("count", 0)),
                    model=str(manifest.get("model", {}).get("name", "?")),
                    current=name == current,
                )
            )
        return infos

    def rollback(self, name: str | None = None, check: Callable[[Path], None] | None = None) -> str:
        """Makes ``name`` (default: the version published before the current one) current.

        ``check(path)`` runs on the chosen version before the pointer moves and may raise (an
        invalid version is refused and ``current`` stays as it was).
        """
        names = self.names()
        current = self.current_name()
        if name is None:
            if current is None:
                raise VersionError(f"no current version under {self.root}; name the version to make current")
            older = [n for n in names if n < current]
            if not older:
                raise VersionError(f"no version older than the current {current} to roll back to")
            name = older[-1]
        elif name not in names:
            known = ", ".join(names) or "none"
            raise VersionError(f"no published version named '{name}' (published: {known})")
        if check is not None:
            check(self.versions_dir / name)
        self.set_current(name)
        return name

    def prune(self, keep: int) -> builtins.list[str]:  # ``list`` here is the method above
        """Deletes all but the newest ``keep`` versions (never the current one) and stale staging dirs."""
        if keep < 1:
            raise ValueError(f"keep must be at least 1, not {keep}")
        current = self.current_name()
        names = self.names()
        doomed = [n for n in names[: max(0, len(names) - keep)] if n != current]
        for name in doomed:
            shutil.rmtree(self.versions_dir / name, ignore_errors=True)
        # A staging directory this old was left by a crashed build, not one still running.
        for staging in self.root.glob(f"{STAGING_PREFIX}*"):
            try:
                age = time.time() - staging.stat().st_mtime
            except FileNotFoundError:  # removed meanwhile by its own build
                continue
            if age > STALE_STAGING_SECONDS:
                shutil.rmtree(staging, ignore_errors=True)
        return doomed
