"""The HTTP connection layer under the app: uvicorn's h11 protocol with two additions.

* Its own 400 (a request line or header h11 cannot parse never reaches the app) answers with
  the JSON error envelope, like every other error, instead of uvicorn's plain text.
* A request head must arrive within ``read_timeout_s`` of the connection opening (or of the
  previous response): uvicorn stops its keep-alive timer at the first byte of a new request,
  so a client that sent half a request line and stalled held its connection forever. The body
  has its own deadline in ``aisle.service.middleware.BodyLimitMiddleware``.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from aisle.service.middleware import REQUEST_ID_HEADER


def envelope_400(message: str, request_id: str) -> bytes:
    """The error envelope of a request the HTTP layer could not parse."""
    body = {"code": "bad_request", "message": f"malformed HTTP request: {message}", "request_id": request_id}
    return json.dumps({"error": body}).encode()


class EnvelopeH11Protocol(H11Protocol):
    """uvicorn's h11 protocol answering its 400s with the envelope and timing out slow heads."""

    #: Seconds a client has to send a complete request head; set by ``protocol_class``.
    read_timeout_s: float = 10.0
    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_deadline()

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_deadline = self.loop.call_later(self.read_timeout_s, self._head_overdue)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_overdue(self) -> None:
        self._head_deadline = None
        # IDLE: no complete request head yet (nothing, or a fragment); a request being handled or
        # a body being received is past this deadline's concern.
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        request_id = uuid.uuid4().hex
        body = envelope_400(msg, request_id)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            (REQUEST_ID_HEADER.lower().encode(), request_id.encode()),
        ]
        self.transport.write(self.conn.send(h11.Response(status_code=400, headers=headers, reason=b"Bad Request")))
        self.transport.write(self.conn.send(h11.Data(data=body)))
        self.transport.close()


def protocol_class(read_timeout_s: float) -> type[EnvelopeH11Protocol]:
    """The protocol class uvicorn should build connections with (``uvicorn.Config(http=...)``)."""
    return type("AisleH11Protocol", (EnvelopeH11Protocol,), {"read_timeout_s": read_timeout_s})
