"""Owner-only permissions for the data directory and the files in it.

The event database holds keyed hashes, not raw ids, but what each shopper looked at and bought
is still private: the directory is created ``0700`` and the database files (with SQLite's
``-wal`` and ``-shm``, which SQLite creates with the database's own mode) ``0600``, whatever
the process umask. A data directory that already exists keeps its mode (an operator may have
chosen it), with a warning when others can read it.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def ensure_private_dir(path: Path) -> None:
    """Creates ``path`` (and parents) owner-only; warns when an existing one is open to others."""
    if not path.exists():
        path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
        os.chmod(path, PRIVATE_DIR_MODE)  # mkdir's mode is filtered by the umask
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning(
            "data directory %s is readable by other users (mode %o); `chmod 700 %s` keeps shoppers' data private",
            path,
            mode,
            path,
        )


def ensure_private_database(path: Path) -> None:
    """Creates the SQLite file ``0600`` if absent and tightens it and its side files if present."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    os.close(fd)
    for candidate in (path, *(path.with_name(path.name + suffix) for suffix in SQLITE_SIDE_FILES)):
        try:
            if stat.S_IMODE(candidate.stat().st_mode) != PRIVATE_FILE_MODE:
                os.chmod(candidate, PRIVATE_FILE_MODE)
        except FileNotFoundError:
            continue
        except PermissionError as exc:  # not ours to change: say so, keep serving
            log.warning("cannot make %s owner-only: %s", candidate, exc)
