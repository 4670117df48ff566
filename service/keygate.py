"""Refuses a request for a key-guarded route without the right key before its body is read.

FastAPI reads and parses a request's JSON body before it solves the route's dependencies, the
API key check among them, so an unauthenticated ``POST /events`` still had its body parsed on
the event loop (the most JSON any route allows) only to be refused. This ASGI middleware checks
the key first, from the routes' own declarations (``is_write_guarded``: the same routes the
dependency guards), and answers 401 before the body is read. The dependency stays the authority;
this only makes refusing cheap.
"""

from __future__ import annotations

import hmac
import re

from starlette.datastructures import Headers
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from aisle.service.errors import error_response


class EarlyKeyMiddleware:
    """Answers 401 to a request for a guarded route whose ``X-API-Key`` is missing or wrong."""

    def __init__(self, app: ASGIApp, api_key: str | None, header: str = "X-API-Key") -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key is not None else None
        self.header = header
        self._guarded: list[tuple[frozenset[str], re.Pattern[str]]] | None = None

    def _guarded_routes(self, scope: Scope) -> list[tuple[frozenset[str], re.Pattern[str]]]:
        """(methods, path regex) of every guarded operation, read from the app once."""
        if self._guarded is None:
            from aisle.service.deps import is_write_guarded
            from aisle.service.routes import api_routes

            self._guarded = [
                (frozenset(route.methods), compile_path(route.path)[0])
                for route in api_routes(scope["app"])
                if is_write_guarded(route)
            ]
        return self._guarded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.api_key is None or "app" not in scope:
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        if any(method in methods and regex.match(path) for methods, regex in self._guarded_routes(scope)):
            headers = Headers(scope=scope)
            if not hmac.compare_digest(headers.get(self.header, "").encode(), self.api_key):
                message = f"missing or wrong API key (send it in the {self.header} header)"
                # The body is left unread: the connection cannot carry another request after it.
                has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
                await error_response(401, message, headers={"Connection": "close"} if has_body else None)(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)
