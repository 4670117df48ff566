"""``GET /metrics``: Prometheus text with latency per route, statuses, index version/size, events."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from aisle.service.metrics import ServiceMetrics
from tests.fakes import HashingEncoder
from tests.service.harness import make_app, publish


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics as {(name, sorted labels): value}."""
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    encoder = HashingEncoder()
    with TestClient(make_app(tmp_path, encoder=encoder)) as client:
        client.encoder = encoder  # type: ignore[attr-defined]
        yield client


def test_latency_histogram_per_route_template_and_requests_by_status(client: TestClient) -> None:
    for _ in range(3):
        assert client.post("/search", json={"query": "knife"}).status_code == 200
    assert client.get("/items/a-1/similar").status_code == 200
    assert client.get("/items/a-2/similar").status_code == 200
    assert client.get("/items/unknown/similar").status_code == 404
    assert client.post("/search", json={"query": "knife", "k": 0}).status_code == 422
    assert client.get("/no/such/path").status_code == 404
    samples = scrape(client)
    assert value(samples, "aisle_request_duration_seconds_count", method="POST", route="/search") == 4
    assert value(samples, "aisle_request_duration_seconds_bucket", method="POST", route="/search", le="+Inf") == 4
    assert value(samples, "aisle_request_duration_seconds_sum", method="POST", route="/search") > 0
    # One label value per route template, never one per item id.
    similar = "/items/{item_id}/similar"
    assert value(samples, "aisle_request_duration_seconds_count", method="GET", route=similar) == 3
    assert value(samples, "aisle_requests_total", method="GET", route=similar, status="200") == 2
    assert value(samples, "aisle_requests_total", method="GET", route=similar, status="404") == 1
    assert value(samples, "aisle_requests_total", method="POST", route="/search", status="422") == 1
    assert value(samples, "aisle_requests_total", method="GET", route="<unmatched>", status="404") == 1
    assert not any("unknown" in str(labels) or "a-1" in str(labels) for _, labels in samples)


def test_index_version_and_size_follow_swaps(client: TestClient, tmp_path: Path) -> None:
    first = client.get("/health").json()["index_version"]
    samples = scrape(client)
    assert value(samples, "aisle_index_info", version=first) == 1
    assert value(samples, "aisle_index_items") == 30
    report = publish(tmp_path / "index", client.encoder, "b", count=12)  # type: ignore[attr-defined]
    assert client.post("/admin/reload").json()["swapped"] is True
    samples = scrape(client)
    assert value(samples, "aisle_index_info", version=report.version) == 1
    assert ("aisle_index_info", (("version", first),)) not in samples  # only the serving version
    assert value(samples, "aisle_index_items") == 12
    assert value(samples, "aisle_index_swaps_total") == 1


def test_refused_versions_are_counted(client: TestClient, tmp_path: Path) -> None:
    report = publish(tmp_path / "index", client.encoder, "b")  # type: ignore[attr-defined]
    vectors = report.path / "vectors.text.npy"
    vectors.write_bytes(vectors.read_bytes()[:-8])  # truncated
    assert client.post("/admin/reload").status_code == 409
    assert value(scrape(client), "aisle_index_refusals_total") == 1


def test_events_accepted_duplicates_and_stored(client: TestClient) -> None:
    batch = {"events": [{"event_id": f"m-{n}", "user_id": "u1", "item_id": f"a-{n}", "type": "view"} for n in range(5)]}
    assert client.post("/events", json=batch).json()["accepted"] == 5
    assert client.post("/events", json=batch).json()["duplicates"] == 5
    samples = scrape(client)
    assert value(samples, "aisle_events_accepted_total") == 5
    assert value(samples, "aisle_events_duplicates_total") == 5
    assert value(samples, "aisle_events_stored") == 5
    assert value(samples, "aisle_requests_total", method="POST", route="/events", status="200") == 2


def test_events_counters() -> None:
    metrics = ServiceMetrics()
    metrics.record_events(accepted=5, duplicates=2)
    metrics.record_events(accepted=0, duplicates=3)
    text = metrics.exposition().decode()
    assert "aisle_events_accepted_total 5.0" in text
    assert "aisle_events_duplicates_total 5.0" in text


def test_each_app_has_its_own_registry(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path / "one")) as one, TestClient(make_app(tmp_path / "two")) as two:
        one.post("/search", json={"query": "knife"})
        samples = scrape(two)
        assert value(samples, "aisle_request_duration_seconds_count", method="POST", route="/search") == 0
        assert value(scrape(one), "aisle_request_duration_seconds_count", method="POST", route="/search") == 1
