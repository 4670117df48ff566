"""Keyed hashing of user, session and event ids, so that raw ids never reach the disk.

The key is a per-install secret in ``<data_dir>/id-secret.key`` (32 random bytes, hex), created
atomically on first start: written to a temp file, fsynced, then hard-linked into place, which
fails instead of overwriting when another process won the race; the loser reads the winner's key.
Losing the file makes stored ids unrecognisable (the store detects it and refuses to start).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

from aisle.index.sqlite_store import ensure_private_dir
from aisle.index.storage import fsync_dir

SECRET_FILE = "id-secret.key"
#: Hex characters kept of each HMAC-SHA256 (128 bits: collisions are not a practical concern).
DIGEST_HEX_CHARS = 32


class IdHasher:
    """Maps raw ids to keyed hashes, with a separate domain per kind of id."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the id hashing secret must be at least 16 bytes")
        self._secret = secret

    def _digest(self, kind: bytes, raw: str) -> str:
        mac = hmac.new(self._secret, kind + b"\x00" + raw.encode("utf-8"), hashlib.sha256)
        return mac.hexdigest()[:DIGEST_HEX_CHARS]

    def user(self, user_id: str) -> str:
        return self._digest(b"user", user_id)

    def session(self, session_id: str) -> str:
        return self._digest(b"session", session_id)

    def event(self, event_id: str) -> str:
        """Event ids are hashed too: shops sometimes build them from user ids or emails."""
        return self._digest(b"event", event_id)

    def check_value(self) -> str:
        """A digest stored beside the data, to detect a replaced or lost secret."""
        return self._digest(b"check", "aisle")


def load_or_create_secret(data_dir: Path) -> bytes:
    """The install's secret, created (atomically, mode 0600) when absent."""
    ensure_private_dir(data_dir)
    path = data_dir / SECRET_FILE
    if not path.exists():
        fd, tmp_name = tempfile.mkstemp(prefix=f".{SECRET_FILE}.", suffix=".tmp", dir=data_dir)
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secrets.token_hex(32) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp_name, 0o600)
            try:
                os.link(tmp_name, path)  # never replaces an existing key
            except FileExistsError:
                pass
        finally:
            Path(tmp_name).unlink(missing_ok=True)
        fsync_dir(data_dir)
    text = path.read_text(encoding="ascii").strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{path} is not a hex-encoded key; restore it from a backup") from None
    if len(secret) < 16:
        raise ValueError(f"{path} holds a key shorter than 16 bytes; restore it from a backup")
    return secret
