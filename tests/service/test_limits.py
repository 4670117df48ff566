"""Request limits: body size (declared and chunked), k, query length, unknown fields, time budget."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aisle.service.deps import get_engine
from aisle.service.middleware import BodyLimitMiddleware, TimeBudgetMiddleware
from tests.service.harness import make_app

BODY_LIMIT = 4096


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(make_app(tmp_path, max_body_bytes=BODY_LIMIT)) as client:
        yield client


def padded_search(size: int) -> bytes:
    """A valid search body of exactly ``size`` bytes (padding inside the query's JSON whitespace)."""
    body = b'{"query": "knife"}'
    return body[:-1] + b" " * (size - len(body)) + b"}"


def test_body_over_the_limit_is_413_by_content_length(client: TestClient) -> None:
    response = client.post(
        "/search", content=padded_search(BODY_LIMIT + 1), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert str(BODY_LIMIT) in response.json()["error"]["message"]


def test_body_at_the_limit_is_served(client: TestClient) -> None:
    response = client.post("/search", content=padded_search(BODY_LIMIT), headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text


def test_chunked_body_over_the_limit_is_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: httpx sends Transfer-Encoding: chunked
        yield b'{"query": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    response = client.post("/search", content=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_chunked_body_under_the_limit_is_served(client: TestClient) -> None:
    response = client.post(
        "/search", content=iter([b'{"query": ', b'"chef knife", "k": 3}']), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert ids_of(response)[0] == "a-0"


def test_chunked_upload_is_cut_off_before_it_is_all_read() -> None:
    sent: list[dict] = []
    chunks_read = 0

    async def receive() -> dict:
        nonlocal chunks_read
        chunks_read += 1
        return {"type": "http.request", "body": b"x" * 1000, "more_body": True}  # endless stream

    async def send(message: dict) -> None:
        sent.append(message)

    async def app(scope, receive, send) -> None:
        raise AssertionError("the app must not see an oversized body")

    scope = {"type": "http", "method": "POST", "path": "/events", "headers": []}
    asyncio.run(BodyLimitMiddleware(app, max_bytes=5000)(scope, receive, send))
    assert sent[0]["status"] == 413
    assert chunks_read == 6  # stopped at the first chunk past the limit


def test_invalid_content_length_is_400() -> None:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    async def app(scope, receive, send) -> None:
        raise AssertionError("unreachable")

    scope = {"type": "http", "method": "POST", "path": "/search", "headers": [(b"content-length", b"12abc")]}
    asyncio.run(BodyLimitMiddleware(app, max_bytes=5000)(scope, receive, send))
    assert sent[0]["status"] == 400


@pytest.mark.parametrize("k", [0, -1, 101, 10**9])
def test_k_outside_1_to_100_is_422(client: TestClient, k: int) -> None:
    for response in (
        client.post("/search", json={"query": "knife", "k": k}),
        client.get("/search", params={"q": "knife", "k": k}),
        client.get("/items/a-0/similar", params={"k": k}),
    ):
        assert response.status_code == 422, response.text
        assert "k" in response.json()["error"]["message"]


@pytest.mark.parametrize("k", [1, 100])
def test_k_bounds_are_inclusive(client: TestClient, k: int) -> None:
    response = client.post("/search", json={"query": "knife", "k": k})
    assert response.status_code == 200
    assert 1 <= len(response.json()["results"]) <= k


def test_query_length_cap(client: TestClient) -> None:
    cap = client.app.state.settings.max_query_chars
    assert client.post("/search", json={"query": "k" * cap}).status_code == 200
    too_long = client.post("/search", json={"query": "k" * (cap + 1)})
    assert too_long.status_code == 422 and "query" in too_long.json()["error"]["message"]
    assert client.get("/search", params={"q": "k" * (cap + 1)}).status_code == 422
    # An empty query is a browse page of every (in-stock) item.
    browse = client.post("/search", json={"query": ""})
    assert browse.status_code == 200 and browse.json()["total"] >= len(browse.json()["results"]) > 0


@pytest.mark.parametrize(
    "payload",
    [
        {"query": "knife", "colour": "red"},
        {"query": "knife", "K": 5},
    ],
)
def test_unknown_fields_are_rejected(client: TestClient, payload: dict) -> None:
    response = client.post("/search", json=payload)
    assert response.status_code == 422
    assert "Extra inputs are not permitted" in response.json()["error"]["message"]


def test_unknown_filter_fields_are_rejected_by_name(client: TestClient) -> None:
    response = client.post("/search", json={"query": "knife", "filters": {"category": "Kitchen", "material": "steel"}})
    assert response.status_code == 422
    assert "filters.material: unknown field" in response.json()["error"]["message"]


def ids_of(response) -> list[str]:
    return [result["id"] for result in response.json()["results"]]


def test_request_over_its_time_budget_is_503_with_retry_after(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path, request_timeout_ms=500)) as client:
        assert client.post("/search", json={"query": "knife"}).status_code == 200

        def slow_engine():
            time.sleep(1.5)  # a sync dependency in a worker thread, like a stuck encoder call
            return client.app.state.holder.engine

        client.app.dependency_overrides[get_engine] = slow_engine
        response = client.post("/search", json={"query": "knife"})
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "timeout"
        assert response.headers["retry-after"] == "1"
        client.app.dependency_overrides.clear()
        assert client.post("/search", json={"query": "knife"}).status_code == 200  # the service recovered


def test_handlers_run_at_most_handler_threads_at_once(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    state = {"running": 0, "most": 0}
    lock = threading.Lock()
    with TestClient(make_app(tmp_path, handler_threads=2)) as client:

        def slow_engine():  # a sync dependency runs in the same pool as the handlers
            with lock:
                state["running"] += 1
                state["most"] = max(state["most"], state["running"])
            time.sleep(0.2)
            with lock:
                state["running"] -= 1
            return client.app.state.holder.engine

        client.app.dependency_overrides[get_engine] = slow_engine
        with ThreadPoolExecutor(6) as pool:
            statuses = list(pool.map(lambda _: client.post("/search", json={"query": "knife"}).status_code, range(6)))
    assert statuses == [200] * 6
    assert state["most"] == 2  # anyio's default pool would have run all six at once


def _run_budget(app, budget_s: float) -> tuple[list[dict], float]:
    """Runs ``app`` under the budget; returns the messages sent and when the response started."""
    sent: list[dict] = []
    started_at: list[float] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            started_at.append(time.perf_counter())
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/search", "headers": []}
    began = time.perf_counter()
    asyncio.run(TimeBudgetMiddleware(app, budget_s)(scope, receive, send))
    return sent, started_at[0] - began


def test_time_budget_answers_on_time_even_when_a_worker_thread_is_stuck() -> None:
    async def stuck(scope, receive, send) -> None:
        await asyncio.to_thread(time.sleep, 1.0)  # not cancellable, as a sync route is
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late"})

    sent, answered_after = _run_budget(stuck, 0.1)
    assert sent[0]["status"] == 503
    assert answered_after < 0.5
    assert all(message.get("body") != b"late" for message in sent)  # the late answer was dropped


def test_time_budget_never_cuts_a_started_response() -> None:
    async def streaming(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0.3)
        await send({"type": "http.response.body", "body": b"complete"})

    sent, _ = _run_budget(streaming, 0.1)
    assert sent[0]["status"] == 200 and sent[-1]["body"] == b"complete"


def test_events_per_batch_cap(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path, max_events_per_batch=10)) as client:

        def batch(size: int) -> dict:
            return {"events": [{"event_id": f"cap-{size}-{n}", "item_id": "a-1", "type": "view"} for n in range(size)]}

        assert client.post("/events", json=batch(10)).json()["accepted"] == 10
        refused = client.post("/events", json=batch(11))
        assert refused.status_code == 413
        assert refused.json()["error"]["code"] == "batch_too_large"
        assert "at most 10" in refused.json()["error"]["message"]


def test_operator_can_tighten_k_and_query_length(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path, max_k=20, max_query_chars=40)) as client:
        assert client.post("/search", json={"query": "knife", "k": 20}).status_code == 200
        for response in (
            client.post("/search", json={"query": "knife", "k": 21}),
            client.get("/search", params={"q": "knife", "k": 21}),
            client.get("/items/a-0/similar", params={"k": 21}),
        ):
            assert response.status_code == 422 and "between 1 and 20" in response.json()["error"]["message"]
        assert client.post("/search", json={"query": "k" * 40}).status_code == 200
        too_long = client.post("/search", json={"query": "k" * 41})
        assert too_long.status_code == 422 and "at most 40 characters" in too_long.json()["error"]["message"]


def test_serving_caps_numpy_blas_at_the_threads_setting(tmp_path: Path) -> None:
    from threadpoolctl import threadpool_info, threadpool_limits

    def numpy_blas() -> list[dict]:
        return [pool for pool in threadpool_info() if pool["user_api"] == "blas" and "numpy" in pool["filepath"]]

    if not numpy_blas():
        pytest.skip("NumPy's BLAS is not a separate library on this platform")
    with threadpool_limits(limits=2, user_api="blas"):
        assert all(pool["num_threads"] == 2 for pool in numpy_blas())
        # The app starts in TestClient's own thread; NumPy's BLAS setting is process-wide.
        with TestClient(make_app(tmp_path, threads=1)):
            assert all(pool["num_threads"] == 1 for pool in numpy_blas())
