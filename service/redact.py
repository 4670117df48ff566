"""What of a request may reach a log line: paths with the user id replaced by a pseudonym.

A shop's user ids are often e-mail addresses, and ``/users/{user_id}/...`` puts them in the
path. Log lines carry the path with that segment replaced by ``~`` and the first hex characters
of the id's keyed hash (the same ``IdHasher.user`` the event store uses), so an operator can
still follow one shopper's requests through the log without the log holding who they are. Before
the id secret is loaded (start-up), the segment is replaced by ``<redacted>``.
"""

from __future__ import annotations

import re

from starlette.types import Scope

#: Hex characters of the keyed hash shown in logs: enough to tell users apart, short to read.
PSEUDONYM_HEX_CHARS = 16
REDACTED = "<redacted>"
_USER_SEGMENT = re.compile(r"(/users/)([^/]+)")


def pseudonym(scope: Scope, user_id: str) -> str:
    """``~`` + a prefix of the user id's keyed hash, or ``<redacted>`` without the id secret."""
    app = scope.get("app")
    personal = getattr(getattr(app, "state", None), "personal", None)
    if personal is None:
        return REDACTED
    return "~" + personal.hasher.user(user_id)[:PSEUDONYM_HEX_CHARS]


def loggable_path(scope: Scope) -> str:
    """The request path as it may be logged: never a raw user id."""
    path = scope.get("path", "")
    if "/users/" not in path:
        return path
    return _USER_SEGMENT.sub(lambda match: match[1] + pseudonym(scope, match[2]), path)
