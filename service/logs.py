"""JSON log lines, each carrying the ``request_id`` of the request it was written for.

The request id lives in a context variable set by ``aisle.service.middleware``; asyncio tasks and
Starlette's thread pool copy the context, so a log call anywhere below a request handler (the
engine, the event store, a sync route running in a worker thread) is tagged with it. Lines
written outside a request (start-up, the index watcher) carry ``"request_id": null``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any, TextIO

_request_id: ContextVar[str | None] = ContextVar("aisle_request_id", default=None)

#: A client-supplied X-Request-ID is kept only when it is this tame (no log injection, bounded).
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

#: Attributes every ``logging.LogRecord`` has; anything else was passed through ``extra=``.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
    "taskName",
    "color_message",  # uvicorn's copy of the message with terminal colour codes
}
#: Chatty third-party loggers whose INFO lines say nothing an operator needs.
_QUIET_LOGGERS = ("faiss.loader", "bm25s", "httpx")


def current_request_id() -> str | None:
    """The id of the request being handled in this context, if any."""
    return _request_id.get()


def bind_request_id(supplied: str | None) -> tuple[str, Any]:
    """Sets this context's request id: the client's own when it is safe, else a fresh one.

    Returns:
        ``(request_id, token)``; pass the token to ``unbind_request_id`` when the request ends.
    """
    request_id = supplied if supplied and _SAFE_REQUEST_ID.fullmatch(supplied) else uuid.uuid4().hex
    return request_id, _request_id.set(request_id)


def unbind_request_id(token: Any) -> None:
    """Restores the context's previous request id (none, outside a request)."""
    _request_id.reset(token)


class RequestIdFilter(logging.Filter):
    """Stamps ``record.request_id`` from the context (installed on handlers, so every logger is covered)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id and any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", _request_id.get()),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str, ensure_ascii=False)


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (it may be replaced later)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def json_handler(stream: TextIO | None = None) -> logging.Handler:
    """A handler writing JSON lines tagged with the request id (to ``stream``, else stderr)."""
    handler = logging.StreamHandler(stream) if stream is not None else _CurrentStderrHandler()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    return handler


def configure_json_logging(level: str | int = "INFO", stream: TextIO | None = None) -> None:
    """Makes every log line of the process (uvicorn's included) a JSON line on ``stream``.

    Replaces the root logger's handlers, and makes uvicorn's loggers propagate to the root
    instead of printing through their own plain-text handlers.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(json_handler(stream))
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
