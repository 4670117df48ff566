"""Enumerating the app's routes across FastAPI versions.

FastAPI 0.16x keeps included routers as a tree (``app.routes`` holds ``_IncludedRouter``
nodes whose effective routes carry the include's prefix and dependencies); older releases
flattened them into ``APIRoute`` objects. The API key check, the OpenAPI completion and the
metrics' route labels all need "every operation with its effective path and dependencies".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import Scope


def api_routes(app: FastAPI) -> Iterator[Any]:
    """Every API operation's route with ``path``, ``methods``, ``dependant`` and ``matches(scope)``.

    ``path`` and ``dependant`` are the effective ones: include prefixes and include-level
    dependencies applied.
    """
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before routers were kept as a tree: app.routes is flat
        yield from (route for route in app.routes if isinstance(route, APIRoute))
        return
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            yield context


def original_route(route: Any) -> APIRoute:
    """The ``APIRoute`` as declared (what the router records in ``scope["route"]``)."""
    return getattr(route, "original_route", route)


def route_template(app: FastAPI, scope: Scope) -> str | None:
    """The path template of the route serving (or that would serve) ``scope``, prefixes included."""
    chosen = scope.get("route")
    if chosen is not None:
        for route in api_routes(app):
            if original_route(route) is chosen:
                return route.path
        return getattr(chosen, "path", None)  # a plain Starlette route (e.g. /openapi.json)
    plain_routes = [route for route in app.router.routes if getattr(route, "path", None)]
    for route in [*api_routes(app), *plain_routes]:
        if route.matches(scope)[0] is Match.FULL:
            return route.path
    return None
