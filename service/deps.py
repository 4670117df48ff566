"""FastAPI dependencies: the settings, the engine of this request, the API key check."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from service.engine import Engine
from service.errors import ApiError
from service.settings import ServiceSettings


def get_settings(request: Request) -> ServiceSettings:
    return request.app.state.settings


def get_engine(request: Request) -> Engine:
    """The engine this request uses from start to end (one index version per response)."""
    holder = request.app.state.holder
    if not holder.loaded:
        raise ApiError(503, "no index version is loaded yet", headers={"Retry-After": "1"})
    return holder.engine


def require_api_key(request: Request, settings: Annotated[ServiceSettings, Depends(get_settings)]) -> None:
    """Guards write and admin routes when an API key is configured."""
    if settings.api_key is None:
        return
    supplied = request.headers.get("x-api-key", "")
    if not hmac.compare_digest(supplied.encode(), settings.api_key.encode()):
        raise ApiError(401, "missing or wrong API key (send it in the X-API-Key header)")


SettingsDep = Annotated[ServiceSettings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
WRITE_GUARD = [Depends(require_api_key)]
