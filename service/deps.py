"""FastAPI dependencies: the settings, the engine of this request, the API key check, the limits.

The dependencies that only read the app's state are ``async``: FastAPI runs a plain ``def``
dependency in the thread pool, and on ``/search`` those hops (one per dependency, each a thread
switch and back) cost more CPU than the dependencies themselves. Handlers stay ``def``: the
search work runs in a worker thread, so a stuck request cannot hold up the event loop and the
time budget can still answer for it.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, Request

from aisle.service.engine import Engine
from aisle.service.errors import ApiError
from aisle.service.settings import ServiceSettings

API_KEY_HEADER = "X-API-Key"


async def get_settings(request: Request) -> ServiceSettings:
    """The settings the app was built with."""
    return request.app.state.settings


async def get_engine(request: Request) -> Engine:
    """The engine this request uses from start to end (one index version per response)."""
    return engine_of(request)


def engine_of(request: Request) -> Engine:
    """``get_engine`` for a route that reads its request itself (503 before an index is loaded)."""
    holder = request.app.state.holder
    if holder is None or not holder.loaded:
        raise ApiError(503, "no index version is loaded yet", headers={"Retry-After": "1"})
    return holder.engine


async def require_api_key(request: Request, settings: Annotated[ServiceSettings, Depends(get_settings)]) -> None:
    """Guards write, admin and private read routes (a user's profile) when an API key is configured.

    The comparison takes constant time, so the key cannot be guessed byte by byte.
    """
    if settings.api_key is None:
        return
    supplied = request.headers.get(API_KEY_HEADER, "")
    if not hmac.compare_digest(supplied.encode(), settings.api_key.encode()):
        raise ApiError(401, f"missing or wrong API key (send it in the {API_KEY_HEADER} header)")


def is_write_guarded(route: Any) -> bool:
    """Whether ``require_api_key`` runs for ``route`` (directly or through a sub-dependency).

    ``route`` is an ``APIRoute`` or an effective route from ``aisle.service.routes.api_routes``.
    """
    pending: list[Any] = [route.dependant]
    while pending:
        dependant = pending.pop()
        if dependant.call is require_api_key:
            return True
        pending.extend(dependant.dependencies)
    return False


def check_k(settings: ServiceSettings, k: int) -> int:
    """``k`` within 1..``max_k`` (the schema allows up to 100; an operator may lower it)."""
    if not 1 <= k <= settings.max_k:
        raise ApiError(422, f"k: must be between 1 and {settings.max_k}, got {k}")
    return k


def check_batch_size(settings: ServiceSettings, count: int) -> None:
    """At most ``max_events_per_batch`` events in one ``POST /events``."""
    if count > settings.max_events_per_batch:
        raise ApiError(
            413,
            f"events: at most {settings.max_events_per_batch} per batch, got {count}; split the batch",
            "batch_too_large",
        )


SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
WRITE_GUARD = [Depends(require_api_key)]
