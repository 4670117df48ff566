"""ASGI middleware: request ids, access logs and metrics; the body size cap; the time budget.

Plain ASGI classes rather than ``BaseHTTPMiddleware``: they add no task or memory stream per
request, see the raw body stream (so a chunked upload without ``Content-Length`` is capped
too), and can answer before the app has produced anything.

Order, outermost first: ``RequestContextMiddleware`` → ``EarlyKeyMiddleware``
(``aisle.service.keygate``) → ``BodyLimitMiddleware`` → ``TimeBudgetMiddleware`` → the routes.
Every response, errors from the inner ones included, therefore carries ``X-Request-ID`` and is
counted and logged once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aisle.service.errors import error_response
from aisle.service.logs import bind_request_id, unbind_request_id
from aisle.service.metrics import UNMATCHED_ROUTE, ServiceMetrics
from aisle.service.redact import loggable_path
from aisle.service.routes import route_template

log = logging.getLogger(__name__)
access_log = logging.getLogger("aisle.access")

REQUEST_ID_HEADER = "X-Request-ID"
CLIENT_CLOSED_REQUEST = 499


def route_label(scope: Scope, cache: dict[int, str] | None = None) -> str:
    """The route's path template (bounded label values), never the raw path.

    The router records the route it chose in the scope; a request answered before routing
    (413) is matched against the app's routes instead. ``cache`` maps chosen routes to labels.
    """
    chosen = scope.get("route")
    if cache is not None and chosen is not None and id(chosen) in cache:
        return cache[id(chosen)]
    app = scope.get("app")
    label = (route_template(app, scope) if app is not None else None) or UNMATCHED_ROUTE
    if cache is not None and chosen is not None:
        cache[id(chosen)] = label
    return label


class RequestContextMiddleware:
    """Gives each request an id (header, body of errors, every log line), logs and measures it.

    An exception escaping the app becomes a 500 envelope here, so that even a bug answers with
    the request id that finds its stack trace in the log.
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._labels: dict[int, str] = {}  # id(route) → label; routes live as long as the app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id, token = bind_request_id(Headers(scope=scope).get("x-request-id"))
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        outcome: dict[str, Any] = {"status": None, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                outcome["status"] = message["status"]
                outcome["started"] = True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error on %s %s", scope["method"], loggable_path(scope))
            if not outcome["started"]:
                await error_response(500, "internal error; see the server log", "internal")(
                    scope, receive, send_with_id
                )
        finally:
            self.metrics.in_flight.dec()
            seconds = time.perf_counter() - started
            route = route_label(scope, self._labels)
            # No response at all: the client went away first (nginx's 499), not a server error.
            status = int(outcome["status"] or CLIENT_CLOSED_REQUEST)
            self.metrics.observe_request(scope["method"], route, status, seconds)
            path = loggable_path(scope)  # never a raw user id
            access_log.info(
                "%s %s %s",
                scope["method"],
                path,
                status,
                extra={
                    "method": scope["method"],
                    "path": path,
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                },
            )
            unbind_request_id(token)


class BodyLimitMiddleware:
    """Refuses bodies over ``max_bytes`` or ``max_json_values`` with 413, and slow ones with 408.

    The body is read here, up to the cap, and replayed to the app: a chunked upload (no
    ``Content-Length``) is cut off as soon as it passes the cap, not after it is all in memory.
    A client that stalls mid-body (or trickles it) gets a 408 and its connection is closed when
    the deadline passes, instead of holding the connection and a request slot forever.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        read_timeout_s: float = 10.0,
        max_json_values: int | None = None,
        json_values_by_path: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s
        self.max_json_values = max_json_values
        self.json_values_by_path = json_values_by_path or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await error_response(400, f"invalid Content-Length header: {declared[:40]!r}")(scope, receive, send)
                return
            if int(declared) > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
        chunks: list[bytes] = []
        size = 0
        deadline = asyncio.get_running_loop().time() + self.read_timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), deadline - asyncio.get_running_loop().time())
            except TimeoutError:
                await self._too_slow(scope, receive, send)
                return
            if message["type"] != "http.request":  # the client went away before finishing its body
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        most = self.json_values_by_path.get(scope["path"], self.max_json_values)
        if most is not None and json_values_bound(body) > most:
            reason = f"the request body holds more than {most} JSON values; no request needs that many"
            await error_response(413, reason, "too_many_values")(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _too_slow(self, scope: Scope, receive: Receive, send: Send) -> None:
        log.warning(
            "%s %s: body not received within %.0f s; closing",
            scope["method"],
            loggable_path(scope),
            self.read_timeout_s,
        )
        message = f"the request body did not arrive within {self.read_timeout_s:g} s"
        await error_response(408, message, headers={"Connection": "close"})(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = f"request body over the limit of {self.max_bytes} bytes"
        await error_response(413, message, headers={"Connection": "close"})(scope, receive, send)


def json_values_bound(body: bytes) -> int:
    """An upper bound of the values and keys a JSON body holds, read without parsing it.

    Parsing and validating run on the event loop and hold the GIL (``json.loads`` is one C
    call), so their cost must be bounded before they start: every value after the first follows
    a ``,`` or ``:`` or opens with ``[`` or ``{``. Separators inside strings count too, which
    only errs towards refusing. The counts scan the bytes in C, far faster than any parse.
    """
    return body.count(b",") + body.count(b":") + body.count(b"[") + body.count(b"{") + 1


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the buffered body once, then defers to the real one (disconnects)."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class TimeBudgetMiddleware:
    """Answers 503 (code ``timeout``) when a request has not started its response within the budget.

    The handler keeps running to its end (a worker thread cannot be interrupted), but its late
    response is dropped; the client has its answer on time and may retry after ``Retry-After``.
    A response already started is never cut. Paths under ``exempt_prefixes`` (index reloads,
    which may legitimately take long), and ``(method, prefix)`` pairs of ``exempt_routes``
    (erasures, which rebuild the profiles), have no budget.
    """

    def __init__(
        self,
        app: ASGIApp,
        budget_s: float,
        exempt_prefixes: Iterable[str] = ("/admin/",),
        exempt_routes: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.app = app
        self.budget_s = budget_s
        self.exempt_prefixes = tuple(exempt_prefixes)
        self.exempt_routes = tuple(exempt_routes)

    def _exempt(self, scope: Scope) -> bool:
        path = scope["path"]
        if path.startswith(self.exempt_prefixes):
            return True
        return any(scope["method"] == method and path.startswith(prefix) for method, prefix in self.exempt_routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._exempt(scope):
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = {"started": False, "timed_out": False}

        async def guarded_send(message: Message) -> None:
            if state["timed_out"]:
                return  # the 503 went out already
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, guarded_send))
        try:
            done, _ = await asyncio.wait({task}, timeout=self.budget_s)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task in done or state["started"]:
            await task
            return
        state["timed_out"] = True  # set before any await: the handler can no longer start a response
        log.warning(
            "%s %s exceeded its time budget of %.0f ms", scope["method"], loggable_path(scope), self.budget_s * 1000
        )
        await error_response(
            503,
            f"the request did not complete within its time budget of {self.budget_s * 1000:.0f} ms; retry",
            "timeout",
            headers={"Retry-After": "1"},
        )(scope, receive, send)
        task.cancel()
        await asyncio.wait({task})  # returns without raising the task's own error or cancellation
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "%s %s failed after its time budget", scope["method"], loggable_path(scope), exc_info=task.exception()
            )
