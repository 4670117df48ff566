"""The FastAPI application: settings, lifespan (load the index, open the stores), routers."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response

from embed.base import Encoder
from service.errors import install_error_handlers
from service.holder import IndexHolder
from service.routers import admin, health, items, search
from service.settings import ServiceSettings

log = logging.getLogger(__name__)


def default_encoder(settings: ServiceSettings) -> Encoder:
    from embed import create_encoder

    return create_encoder(settings.encoder_config())


def create_holder(
    settings: ServiceSettings, encoder_factory: Callable[[ServiceSettings], Encoder] = default_encoder
) -> IndexHolder:
    """The index holder with the current version loaded and validated."""
    holder = IndexHolder(
        settings.index_dir, encoder_factory(settings),
        verify_checksums=settings.verify_checksums, candidates=settings.candidates,
    )
    holder.reload()
    return holder


def create_app(
    settings: ServiceSettings | None = None,
    *,
    encoder_factory: Callable[[ServiceSettings], Encoder] = default_encoder,
    holder: IndexHolder | None = None,
) -> FastAPI:
    """Builds the app; the index is loaded in the lifespan unless a loaded ``holder`` is given."""
    settings = settings or ServiceSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.holder = holder or create_holder(settings, encoder_factory)
        yield

    app = FastAPI(
        title="Aisle",
        version="0.1.0",
        description="Semantic product search and personalized recommendations.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)

    @app.middleware("http")
    async def request_id(request: Request, call_next) -> Response:
        request.state.request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        response = await call_next(request)
        response.headers["X-Request-ID"] = request.state.request_id
        return response

    for module in (health, search, items, admin):
        app.include_router(module.router)
    return app
