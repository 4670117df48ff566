"""The error envelope ``{"error": {"code", "message", "request_id"}}`` of every 4xx/5xx response."""

from __future__ import annotations

import errno
import logging
import sqlite3
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from aisle.service.logs import current_request_id
from aisle.service.redact import loggable_path

log = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    500: "internal",
    503: "unavailable",
    504: "timeout",
}


#: Seconds a client should wait before re-sending when storage is full or locked.
STORAGE_RETRY_AFTER_S = 5
_NO_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_SQLITE_TRANSIENT = ("disk is full", "database is locked", "database table is locked", "disk i/o error")


class ErrorBody(BaseModel):
    """What went wrong, for machines (``code``) and humans (``message``)."""

    code: str = Field(..., description="Stable machine-readable code, e.g. 'invalid_request'.")
    message: str = Field(..., description="What went wrong, for a human.")
    request_id: str | None = Field(None, description="The request's id, also in the X-Request-ID header and the log.")


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorBody


class ApiError(Exception):
    """Raised by handlers for a clean error response."""

    def __init__(
        self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _CODES.get(status, "error")
        self.message = message
        self.headers = headers


def error_response(
    status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The envelope as a response (also a plain ASGI app, usable from middleware)."""
    body = {"code": code or _CODES.get(status, "error"), "message": message, "request_id": current_request_id()}
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def is_storage_unavailable(exc: BaseException) -> bool:
    """A write failed for lack of space or a lock held too long: transient, the client should retry."""
    if isinstance(exc, OSError) and exc.errno in _NO_SPACE_ERRNOS:
        return True
    if isinstance(exc, sqlite3.OperationalError):
        message = str(exc).lower()
        return any(symptom in message for symptom in _SQLITE_TRANSIENT)
    return False


def storage_unavailable(request: Request, exc: BaseException) -> JSONResponse:
    """503 + Retry-After: nothing of the request was acknowledged, and reads keep working."""
    log.error("storage unavailable on %s %s: %s", request.method, loggable_path(request.scope), exc)
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.storage_errors.inc()
    return error_response(
        503,
        "storage is full or busy; nothing from this request was stored, retry later",
        "storage_unavailable",
        headers={"Retry-After": str(STORAGE_RETRY_AFTER_S)},
    )


def _describe(error: dict[str, Any]) -> str:
    if error.get("type") == "json_invalid":  # its location is a character offset, not a field
        detail = (error.get("ctx") or {}).get("error")
        return "the request body is not valid JSON" + (f" ({detail})" if detail else "")
    location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    return f"{location}: {error.get('msg', 'invalid')}" if location else str(error.get("msg", "invalid"))


def install_error_handlers(app: FastAPI) -> None:
    """Routes every error FastAPI or a handler raises through the envelope."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.code, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        messages = [_describe(error) for error in exc.errors()[:10]]
        return error_response(422, "; ".join(messages) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(sqlite3.OperationalError)
    async def _sqlite_error(request: Request, exc: sqlite3.OperationalError) -> JSONResponse:
        if not is_storage_unavailable(exc):
            return await _unexpected(request, exc)
        return storage_unavailable(request, exc)

    @app.exception_handler(OSError)
    async def _os_error(request: Request, exc: OSError) -> JSONResponse:
        if not is_storage_unavailable(exc):
            return await _unexpected(request, exc)
        return storage_unavailable(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Normally unreachable: RequestContextMiddleware answers first. Kept so that an app
        # built without that middleware still never leaks a stack trace.
        log.error("unhandled error on %s %s", request.method, loggable_path(request.scope), exc_info=exc)
        return error_response(500, "internal error; see the server log", "internal")
