"""The FastAPI application: settings, lifespan (load the index, open the stores), routers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from aisle import __version__
from aisle.embed.base import Encoder, ImageEncoder
from aisle.index.changes import ChangeLogError
from aisle.index.manifest import IndexValidationError
from aisle.service import metrics as metrics_routes
from aisle.service.errors import install_error_handlers
from aisle.service.events.erasure import ErasureWatcher
from aisle.service.experiments.runtime import Experiments
from aisle.service.holder import IndexHolder
from aisle.service.keygate import EarlyKeyMiddleware
from aisle.service.live import LiveCatalog
from aisle.service.metrics import ServiceMetrics
from aisle.service.middleware import BodyLimitMiddleware, RequestContextMiddleware, TimeBudgetMiddleware
from aisle.service.openapi import install_openapi
from aisle.service.personal.runtime import Personalization
from aisle.service.playground import install_playground
from aisle.service.query_log import open_query_log
from aisle.service.ranking.config import RankingConfig
from aisle.service.routers import admin, catalog, events, experiments, health, items, search, suggest, users
from aisle.service.settings import ServiceSettings
from aisle.service.watch import IndexWatcher

log = logging.getLogger(__name__)

EncoderFactory = Callable[[ServiceSettings], Encoder]

#: JSON values and keys one event may take (every field set, attribution included, takes 19).
EVENT_JSON_VALUES = 24
#: JSON values a batch change may take: a product with a dozen attributes.
CHANGE_JSON_VALUES = 40
#: Cheap routes that must answer even when the service is saturated, and reloads that may be slow.
BUDGET_EXEMPT_PREFIXES = ("/admin/", "/health", "/metrics")
#: (method, path prefix): an erasure rebuilds the worker's profiles before it answers.
BUDGET_EXEMPT_ROUTES = (("DELETE", "/users/"),)


def default_encoder(settings: ServiceSettings) -> Encoder:
    """The configured ONNX encoder (the bundled MiniLM unless the settings name another)."""
    from aisle.embed import create_encoder

    return create_encoder(settings.encoder_config())


def limit_blas_threads(threads: int) -> None:
    """Caps NumPy's BLAS at the serving ``threads`` (process-wide), as the encoder and FAISS are.

    OpenBLAS otherwise starts a thread per core and wakes them for the small matrix products of
    every request (candidate cosines, profiles), which costs CPU time on a busy machine. Called where
    the app and the holder are built: with NumPy's OpenBLAS 0.3.31 a limit set from a thread other
    than the main one (a test client's lifespan) did not reach the other threads.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")


def limit_handler_threads(threads: int) -> None:
    """Caps how many request handlers run at once in this worker's thread pool.

    Handlers are CPU-bound and the worker has one core's worth of GIL: a second concurrent search
    only interleaves with the first, so both finish late and the CPU caches hold neither's data.
    anyio's default pool runs 40 at once; with a few, later requests wait in order instead, and
    p99 under concurrent load falls at the same throughput. More than one keeps a stuck handler
    from stopping the worker; the time budget still answers for requests that wait too long.
    Call it from the serving event loop: the limiter belongs to the loop.
    """
    import anyio.to_thread

    anyio.to_thread.current_default_thread_limiter().total_tokens = threads


def install_cors(app: FastAPI, origins: list[str]) -> None:
    """Lets a storefront's pages call the API from the browser (``cors_origins``; off when empty).

    Added last, so it runs first: preflight requests are answered before the body limit and the
    time budget, and error responses carry the headers too. Browsers may read ``X-Request-ID``
    (to attribute events); the API key header is not allowed: a key belongs in the shop's
    backend, never in a page.
    """
    from starlette.middleware.cors import CORSMiddleware

    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Content-Type"],
        expose_headers=["X-Request-ID"],
        max_age=600,
    )


def create_holder(settings: ServiceSettings, encoder_factory: EncoderFactory | None = None) -> IndexHolder:
    """The index holder with the current version loaded and validated.

    A corrupt current version does not stop the start while an older one is intact: that one
    serves, with a critical log line naming both (``IndexHolder.serve_last_good``).

    Raises:
        VersionError: nothing is published under ``settings.index_dir``.
        IndexValidationError: the current version and every older one are invalid.
    """
    limit_blas_threads(settings.threads)
    holder = IndexHolder(
        settings.index_dir,
        (encoder_factory or default_encoder)(settings),
        verify_checksums=settings.verify_checksums,
        candidates=settings.candidates,
        ef_search=settings.ef_search,
        nprobe=settings.nprobe,
        image_encoders=image_encoder_lookup(settings),
        engine_options={
            "query_cache_size": settings.query_cache_size,
            "encode_corrected": settings.encode_corrected_query,
            "typo_tolerance": settings.typo_tolerance,
        },
    )
    try:
        holder.reload()
    except IndexValidationError:
        holder.serve_last_good()
    return holder


def image_encoder_lookup(settings: ServiceSettings) -> Callable[[str], ImageEncoder | None]:
    """Finds the image model of a version: the configured ``image_model`` (its cached export),
    else the export in the model cache whose fingerprint the version recorded."""
    from aisle.embed.image_encoder import cached_image_encoder

    def lookup(fingerprint: str) -> ImageEncoder | None:
        if settings.image_model is not None:
            from aisle.cli import CommandError, load_image_encoder

            try:
                configured = load_image_encoder(settings, prepare=False)
            except CommandError as exc:
                log.warning("%s", exc)
                configured = None
            if configured is not None and configured.fingerprint == fingerprint:
                return configured
        return cached_image_encoder(fingerprint, settings.cache_dir, threads=settings.threads)

    return lookup


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def warn_without_api_key(settings: ServiceSettings) -> None:
    """Warns at every start without an API key; loudly when other machines can connect."""
    if settings.api_key is not None:
        return
    if is_loopback(settings.host):
        log.warning(
            "no API key is set (AISLE_API_KEY): events, admin routes, erasure and shoppers' profiles "
            "need no key; only this machine can connect to %s",
            settings.host,
        )
        return
    log.critical(
        "NO API KEY IS SET (AISLE_API_KEY) and the server listens on %s: anyone who can reach it can "
        "send events, read every shopper's profile, erase users and reload the index",
        settings.host,
    )


def _watch_metrics(holder: IndexHolder, metrics: ServiceMetrics) -> None:
    holder.add_swap_listener(lambda _engine: metrics.index_swaps.inc())
    holder.add_refusal_listener(lambda _refusal: metrics.index_refusals.inc())


def _stored_events(app: FastAPI) -> int | None:
    """Events in the store, for /metrics; None before the store is open."""
    personal = getattr(app.state, "personal", None)
    return personal.store.last_seq() if personal is not None else None


def create_app(
    settings: ServiceSettings | None = None,
    *,
    encoder_factory: EncoderFactory | None = None,
    holder: IndexHolder | None = None,
) -> FastAPI:
    """Builds the app; the index is loaded in the lifespan unless a loaded ``holder`` is given.

    Resources opened in the lifespan are closed in reverse order at shutdown, which uvicorn runs
    only after in-flight requests have drained: the last request finishes before a store closes.
    """
    settings = settings or ServiceSettings()
    limit_blas_threads(settings.threads)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as resources:
            app.state.resources = resources
            limit_handler_threads(settings.handler_threads)
            warn_without_api_key(settings)
            serving = holder or create_holder(settings, encoder_factory)
            _watch_metrics(serving, app.state.metrics)
            app.state.holder = serving
            if settings.watch_interval_s > 0:
                watcher = IndexWatcher(serving, settings.watch_interval_s)
                watcher.start()
                resources.callback(watcher.stop)
            # Stores opened here: register their close/flush with resources.callback(...) so they
            # run after the last request.
            try:
                app.state.live = LiveCatalog.open(
                    serving, poll_s=settings.live_poll_ms / 1000, database_url=settings.database_url
                )
                resources.callback(app.state.live.close)
            except ChangeLogError as exc:  # e.g. a read-only index root: search still serves
                log.warning("live catalogue disabled (item writes answer 503): %s", exc)
                app.state.live = None
            app.state.personal = Personalization.open(settings, serving)
            resources.callback(app.state.personal.close)
            if settings.query_log_size > 0:
                app.state.query_log = open_query_log(settings)
                app.state.query_log.start()
                resources.callback(app.state.query_log.close)
            app.state.experiments = Experiments.open(settings, app.state.personal.hasher, app.state.metrics.registry)
            resources.callback(app.state.experiments.close)
            app.state.erasures = ErasureWatcher(
                app.state.personal.store,
                lambda: app.state.personal.profiles.attach(app.state.holder.engine),
                interval_s=settings.profile_refresh_s or 1.0,
                retention_days=settings.events_retention_days,
            )
            app.state.erasures.start()
            resources.callback(app.state.erasures.stop)
            if app.state.live is not None:
                app.state.live.add_listener(app.state.personal.profiles.follow)
            log.info("ready: serving index version %s", serving.engine.version)
            yield
            log.info("shutting down: in-flight requests drained, closing the stores")
        log.info("shut down cleanly: stores closed")

    app = FastAPI(
        title="Aisle",
        version=__version__,
        description=(
            "Semantic product search and personalized recommendations. Errors answer "
            '`{"error": {"code", "message", "request_id"}}`; every response carries `X-Request-ID`.'
        ),
        lifespan=lifespan,
        # Served by the playground from files in the package: FastAPI's own pages use a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    # Read (and validated) once: a bad rules file stops the start with a clear message.
    app.state.ranking = RankingConfig.from_settings(settings)
    app.state.holder = holder
    app.state.query_log = None
    app.state.metrics = ServiceMetrics(lambda: app.state.holder, lambda: _stored_events(app))
    install_error_handlers(app)
    # add_middleware wraps: the last added runs first.
    app.add_middleware(
        TimeBudgetMiddleware,
        budget_s=settings.request_timeout_ms / 1000,
        exempt_prefixes=BUDGET_EXEMPT_PREFIXES,
        exempt_routes=BUDGET_EXEMPT_ROUTES,
    )
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        read_timeout_s=settings.read_timeout_s,
        max_json_values=settings.max_json_values,
        json_values_by_path={
            "/events": max(settings.max_json_values, EVENT_JSON_VALUES * settings.max_events_per_batch),
            "/items/batch": max(settings.max_json_values, CHANGE_JSON_VALUES * settings.max_events_per_batch),
        },
    )
    app.add_middleware(EarlyKeyMiddleware, api_key=settings.api_key)
    app.add_middleware(RequestContextMiddleware, metrics=app.state.metrics)
    if settings.cors_origins:
        install_cors(app, settings.cors_origins)

    for module in (health, search, suggest, items, catalog, admin, metrics_routes, events, users, experiments):
        app.include_router(module.router)
    install_openapi(app)
    install_playground(app)
    return app
