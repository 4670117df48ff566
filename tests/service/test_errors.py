"""The error envelope, request ids in headers, bodies and JSON log lines, and no 500 for bad input."""

from __future__ import annotations

import errno
import io
import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aisle.service.deps import get_engine
from aisle.service.logs import json_handler
from tests.fakes import HashingEncoder
from tests.service.harness import make_app, publish


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(make_app(tmp_path)) as client:
        yield client


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """Every log record of the process, formatted by the service's JSON handler."""
    stream = io.StringIO()
    handler = json_handler(stream)
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)


def assert_envelope(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    return error


def test_unknown_route_and_method(client: TestClient) -> None:
    assert_envelope(client.get("/nowhere"), 404, "not_found")
    error = assert_envelope(client.delete("/search"), 405, "method_not_allowed")
    assert "Method Not Allowed" in error["message"]


def test_unknown_item_is_404_naming_it(client: TestClient) -> None:
    error = assert_envelope(client.get("/items/no-such-item/similar"), 404, "not_found")
    assert "no-such-item" in error["message"]


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe\x00garbage", b"[1, 2]", b'"query"', b"null"])
def test_malformed_bodies_are_4xx_envelopes(client: TestClient, body: bytes) -> None:
    response = client.post("/search", content=body, headers={"Content-Type": "application/json"})
    assert 400 <= response.status_code < 500
    assert response.json()["error"]["code"] in {"bad_request", "invalid_request"}


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"query": "knife", "k": "ten"}, "k"),
        ({"query": 42}, "query"),
        ({"query": "knife", "filters": {"price_min": -1}}, "filters.price_min"),
        ({"query": "knife", "filters": {"colour": "red"}}, "filters.colour"),
        ({"query": "knife", "facets": ["colour"]}, "colour"),
        ({"query": "knife", "sort": "colour:up"}, "sort"),
        ({"query": "knife", "sort": "title:asc"}, "title"),
    ],
)
def test_validation_errors_name_the_field(client: TestClient, payload: dict, field: str) -> None:
    error = assert_envelope(client.post("/search", json=payload), 422, "invalid_request")
    assert field in error["message"]


def test_a_bug_answers_500_envelope_with_request_id_and_logs_the_trace(
    client: TestClient, log_lines: io.StringIO
) -> None:
    def broken_engine() -> None:
        raise RuntimeError("simulated bug in the engine")

    client.app.dependency_overrides[get_engine] = broken_engine
    response = client.post("/search", json={"query": "knife"})
    error = assert_envelope(response, 500, "internal")
    assert "simulated" not in error["message"]  # no internals leak to the client
    records = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    traced = [r for r in records if r.get("exception") and "simulated bug" in r["exception"]]
    assert traced and traced[0]["request_id"] == response.headers["x-request-id"]


def test_request_id_in_header_body_and_every_log_line_of_the_request(
    client: TestClient, log_lines: io.StringIO
) -> None:
    response = client.post("/search", json={"query": "chef knife", "k": 2})
    request_id = response.headers["x-request-id"]
    assert response.json()["request_id"] == request_id
    missing = client.get("/items/ghost/similar")
    records = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    access = [r for r in records if r["logger"] == "aisle.access"]
    assert {r["request_id"] for r in access} == {request_id, missing.headers["x-request-id"]}
    search_line = next(r for r in access if r["request_id"] == request_id)
    assert search_line["route"] == "/search" and search_line["status"] == 200
    assert search_line["duration_ms"] >= 0


def test_client_request_id_is_kept_when_safe_and_replaced_when_not(client: TestClient) -> None:
    kept = client.get("/health", headers={"X-Request-ID": "shop-frontend.42:abc"})
    assert kept.headers["x-request-id"] == "shop-frontend.42:abc"
    assert kept.json()["request_id"] == "shop-frontend.42:abc"
    hostile = client.get("/health", headers={"X-Request-ID": 'x" injected {json}' + "y" * 300})
    assert hostile.headers["x-request-id"] != 'x" injected {json}' + "y" * 300
    assert len(hostile.headers["x-request-id"]) == 32


def test_every_response_has_a_distinct_request_id(client: TestClient) -> None:
    ids = {client.get(path).headers["x-request-id"] for path in ("/health", "/metrics", "/nowhere", "/openapi.json")}
    assert len(ids) == 4


@pytest.mark.parametrize(
    "error",
    [
        sqlite3.OperationalError("database or disk is full"),
        OSError(errno.ENOSPC, "No space left on device"),
        sqlite3.OperationalError("database is locked"),
    ],
)
def test_full_or_locked_storage_is_503_with_retry_after(tmp_path: Path, error: Exception) -> None:
    app = make_app(tmp_path)

    @app.post("/test-write")
    def write() -> None:
        raise error

    with TestClient(app) as client:
        response = client.post("/test-write")
        assert_envelope(response, 503, "storage_unavailable")
        assert int(response.headers["retry-after"]) > 0
        assert "aisle_storage_errors_total 1.0" in client.get("/metrics").text
        assert client.post("/search", json={"query": "knife"}).status_code == 200


def test_other_storage_errors_stay_500(tmp_path: Path) -> None:
    app = make_app(tmp_path)

    @app.post("/test-write")
    def write() -> None:
        raise sqlite3.OperationalError("no such table: events")

    with TestClient(app) as client:
        assert_envelope(client.post("/test-write"), 500, "internal")


def test_log_lines_written_in_worker_threads_carry_the_request_id(tmp_path: Path, log_lines: io.StringIO) -> None:
    encoder = HashingEncoder()
    with TestClient(make_app(tmp_path, encoder=encoder)) as client:
        bad = publish(tmp_path / "index", encoder, "b")
        (bad.path / "index.text.faiss").unlink()
        response = client.post("/admin/reload")  # the reload runs in a worker thread
        assert response.status_code == 409
    records = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    refusal = next(r for r in records if r["logger"] == "aisle.service.holder" and r["level"] == "ERROR")
    assert refusal["request_id"] == response.headers["x-request-id"]
    assert refusal["refused_version"] == bad.version


def test_malformed_json_and_an_inverted_price_range_are_named(client: TestClient) -> None:
    error = assert_envelope(
        client.post("/search", content=b"not json", headers={"content-type": "application/json"}),
        422,
        "invalid_request",
    )
    assert error["message"].startswith("the request body is not valid JSON")
    error = assert_envelope(
        client.post("/search", json={"query": "lamp", "filters": {"price_min": 50, "price_max": 10}}),
        422,
        "invalid_request",
    )
    assert "price_min (50) is above price_max (10)" in error["message"]
    equal = client.post("/search", json={"query": "lamp", "filters": {"price_min": 10, "price_max": 10}})
    assert equal.status_code == 200, equal.text
