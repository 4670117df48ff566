"""Request bodies parsed by pydantic-core's JSON parser instead of the standard library's.

FastAPI parses every JSON body on the event loop with ``json.loads``, in one call that holds the
GIL: a body within the size cap made of numbers like ``1.5e300`` took tens of milliseconds, and
every concurrent request (``/health`` included) waited for it. pydantic-core's parser gives the
same values (big integers, ``NaN``/``Infinity``, the last of duplicate keys) many times faster
(``benchmarks/results/DECISIONS.md``, "Parsing request bodies"). What it refuses (a lone UTF-16
surrogate escape, a non-UTF-8 encoding) is handed to ``json.loads``, so a body is accepted or
refused, with the same error, exactly as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic_core import from_json


class FastJsonRequest(Request):
    """A request whose ``json()`` parses the body with pydantic-core."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = from_json(body)
            except ValueError:
                # The standard parser decides, and raises the error FastAPI reports as today.
                self._json = json.loads(body)
        return self._json


class FastJsonRoute(APIRoute):
    """Routes whose handlers receive a :class:`FastJsonRequest` (FastAPI's custom route class)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:  # nothing to parse: no extra step on the request's path
            return handler

        async def parse_fast(request: Request) -> Response:
            return await handler(FastJsonRequest(request.scope, request.receive))

        return parse_fast
