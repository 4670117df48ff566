"""Hostile callers at the HTTP level (issue 24, findings 3 and 9), against a real uvicorn server.

Each test failed on the code before the fixes: the HTTP layer's 400s were plain text, a request
that stalled mid-body or mid-head was never closed, and one large body stalled the event loop.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from tests.service.harness import make_app
from tests.service.live import live_server, raw_exchange

KEY = "hostile-key"


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def read_one_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    raw = b""
    while b"\r\n\r\n" not in raw:
        raw += sock.recv(65536)
    status, headers, body = split_response(raw)
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return status, headers, body


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header Without Colon\r\n\r\n",
        b"GET /he alth HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /health HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
    ],
)
def test_the_http_layers_own_400s_use_the_json_envelope(tmp_path: Path, request_bytes: bytes) -> None:
    with live_server(make_app(tmp_path, api_key=KEY)) as address:
        status, headers, body = split_response(raw_exchange(address, request_bytes))
    assert status == 400
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == "bad_request" and error["message"] and error["request_id"] == headers["x-request-id"]


def test_a_body_that_stalls_midway_is_cut_off_and_its_connection_closed(tmp_path: Path) -> None:
    with live_server(make_app(tmp_path, api_key=KEY, read_timeout_s=1.0), read_timeout_s=1.0) as address:
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(
                b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"query": "kni'
            )
            started = time.monotonic()
            raw = b""
            while chunk := sock.recv(65536):
                raw += chunk
            waited = time.monotonic() - started
    status, headers, body = split_response(raw)
    assert status == 408 and json.loads(body)["error"]["code"] == "timeout"
    assert 0.8 <= waited < 5, waited  # closed by the server (recv returned b"") soon after the deadline


def test_a_request_head_that_stalls_is_closed(tmp_path: Path) -> None:
    with live_server(make_app(tmp_path, api_key=KEY), read_timeout_s=1.0) as address:
        for fragment in (b"", b"POST /sea", b"GET /health HTTP/1.1\r\nHost: x\r\n"):
            with socket.create_connection(address, timeout=10) as sock:
                sock.sendall(fragment)
                started = time.monotonic()
                assert sock.recv(65536) == b""  # the server closed it
                assert time.monotonic() - started < 5
        # A well-behaved keep-alive client is unaffected.
        with socket.create_connection(address, timeout=10) as sock:
            for _ in range(3):
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                assert read_one_response(sock)[0] == 200
                time.sleep(0.6)  # idle between requests, under the keep-alive timeout


def test_a_guarded_route_refuses_a_missing_key_before_reading_the_body(tmp_path: Path) -> None:
    """The body never arrives: the 401 comes anyway, instead of waiting to parse it first."""
    with live_server(make_app(tmp_path, api_key=KEY)) as address:
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(
                b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 900000\r\n\r\n"
            )
            status, headers, body = read_one_response(sock)
        assert status == 401 and json.loads(body)["error"]["code"] == "unauthorized"
        assert headers["connection"] == "close"
        with socket.create_connection(address, timeout=10) as sock:  # the right key waits for the body
            sock.sendall(
                b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"X-API-Key: " + KEY.encode() + b"\r\nContent-Length: 13\r\n\r\n"
            )
            sock.sendall(b'{"events":[]}')
            assert read_one_response(sock)[0] == 200
