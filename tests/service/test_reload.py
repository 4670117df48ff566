"""Hot swap in-process: POST /admin/reload, the ``current`` watcher, refusals, one version per response."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aisle.index.manifest import IndexValidationError
from aisle.index.versions import VersionStore
from aisle.service.holder import IndexHolder
from aisle.service.watch import IndexWatcher
from tests.fakes import HashingEncoder
from tests.service.harness import make_app, publish


@pytest.fixture
def encoder() -> HashingEncoder:
    return HashingEncoder()


@pytest.fixture
def client(tmp_path: Path, encoder: HashingEncoder) -> Iterator[TestClient]:
    with TestClient(make_app(tmp_path, encoder=encoder)) as client:
        yield client


def served_marker(response) -> set[str]:
    """The catalogue markers (``a``/``b``) of a response's results."""
    return {result["id"].split("-")[0] for result in response.json()["results"]}


def test_reload_swaps_to_the_newly_published_version(
    client: TestClient, tmp_path: Path, encoder: HashingEncoder
) -> None:
    before = client.get("/health").json()["index_version"]
    assert served_marker(client.post("/search", json={"query": "knife"})) == {"a"}
    report = publish(tmp_path / "index", encoder, "b")
    response = client.post("/admin/reload")
    assert response.status_code == 200
    body = response.json()
    assert body["swapped"] is True
    assert body["index_version"] == report.version and body["previous_version"] == before
    assert body["items"] == 30 and body["request_id"] == response.headers["x-request-id"]
    search = client.post("/search", json={"query": "knife"})
    assert search.json()["index_version"] == report.version and served_marker(search) == {"b"}
    again = client.post("/admin/reload").json()
    assert again["swapped"] is False and again["index_version"] == report.version


def test_rollback_is_picked_up_by_reload(client: TestClient, tmp_path: Path, encoder: HashingEncoder) -> None:
    first = client.get("/health").json()["index_version"]
    publish(tmp_path / "index", encoder, "b")
    client.post("/admin/reload")
    VersionStore(tmp_path / "index").rollback(first)
    assert client.post("/admin/reload").json()["index_version"] == first


def test_refused_version_keeps_the_old_one_serving(client: TestClient, tmp_path: Path, encoder: HashingEncoder) -> None:
    serving = client.get("/health").json()["index_version"]
    report = publish(tmp_path / "index", encoder, "b")
    items = report.path / "items.parquet"
    items.write_bytes(items.read_bytes()[:100])  # truncated
    response = client.post("/admin/reload")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "invalid_index"
    assert "items.parquet" in error["message"] and serving in error["message"]
    health = client.get("/health").json()
    assert health["index_version"] == serving and health["refused_version"] == report.version
    search = client.post("/search", json={"query": "knife"})
    assert search.status_code == 200 and search.json()["index_version"] == serving


def test_reload_with_nothing_published_is_404(tmp_path: Path, encoder: HashingEncoder) -> None:
    holder_app = make_app(tmp_path, encoder=encoder)
    with TestClient(holder_app) as client:
        current = tmp_path / "index" / "current"
        current.unlink()
        response = client.post("/admin/reload")
        assert response.status_code == 404
        assert "aisle build" in response.json()["error"]["message"]
        assert client.post("/search", json={"query": "knife"}).status_code == 200  # still serving


def test_watcher_swaps_a_published_version_and_skips_a_refused_one(tmp_path: Path, encoder: HashingEncoder) -> None:
    root = tmp_path / "index"
    first = publish(root, encoder, "a")
    holder = IndexHolder(root, encoder)
    holder.reload()
    watcher = IndexWatcher(holder, interval_s=0.05)
    assert watcher.check_once() is False  # nothing new
    bad = publish(root, encoder, "b")
    (bad.path / "index.text.faiss").unlink()
    assert watcher.check_once() is False
    assert holder.engine.version == first.version and holder.last_refusal is not None
    attempts = []
    holder.reload = lambda: attempts.append(1)  # type: ignore[method-assign]
    assert watcher.check_once() is False and attempts == []  # a refused version is not retried
    del holder.reload
    good = publish(root, encoder, "c")
    watcher.start()
    try:
        deadline = time.monotonic() + 5
        while holder.engine.version != good.version and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        watcher.stop()
    assert holder.engine.version == good.version
    assert holder.last_refusal is None


def test_app_watcher_picks_up_a_new_version(tmp_path: Path, encoder: HashingEncoder) -> None:
    with TestClient(make_app(tmp_path, encoder=encoder, watch_interval_s=0.05)) as client:
        report = publish(tmp_path / "index", encoder, "b")
        deadline = time.monotonic() + 5
        while client.get("/health").json()["index_version"] != report.version and time.monotonic() < deadline:
            time.sleep(0.02)
        assert client.get("/health").json()["index_version"] == report.version


def test_concurrent_requests_during_swaps_each_come_from_one_version(
    client: TestClient, tmp_path: Path, encoder: HashingEncoder
) -> None:
    markers = {client.get("/health").json()["index_version"]: "a"}
    failures: list[str] = []
    mixed: list[str] = []
    stop = threading.Event()
    seen = 0

    def hammer() -> None:
        nonlocal seen
        while not stop.is_set():
            for response in (
                client.post("/search", json={"query": "chef knife", "k": 20}),
                client.get("/items/a-3/similar"),
            ):
                if response.status_code == 404 and "a-3" in response.text:
                    continue  # item a-3 only exists in catalogue a
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                    continue
                body = response.json()
                version_markers = served_marker(response)
                expected = markers.get(body["index_version"])
                if expected is None or version_markers - {expected}:
                    mixed.append(f"{body['index_version']}: {version_markers}")
                seen += 1

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for number in range(6):
            marker = "b" if number % 2 == 0 else "a"
            report = publish(tmp_path / "index", encoder, marker)
            markers[report.version] = marker
            assert client.post("/admin/reload").json()["swapped"] is True
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == [] and mixed == []
    assert seen > 0


def test_a_served_version_is_out_of_the_garbage_collectors_sight_and_freed_after_a_swap(
    tmp_path: Path, encoder: HashingEncoder
) -> None:
    # A full collection walks every tracked object; a million-item version made that a pause of
    # 140-190 ms for every request in flight. The served version is frozen, yet freed by
    # reference counting once it is swapped out.
    root = tmp_path / "index"
    publish(root, encoder, "a")
    holder = IndexHolder(root, encoder)
    holder.reload()
    first = holder.engine.index
    tracked = {id(obj) for obj in gc.get_objects()}
    assert id(first) not in tracked and id(first.items) not in tracked
    gone = weakref.ref(first)
    del first
    publish(root, encoder, "b")
    assert holder.reload()[0] is True
    assert gone() is None


def test_no_automatic_collection_while_a_version_loads_and_collection_resumes_after(
    tmp_path: Path, encoder: HashingEncoder
) -> None:
    # Each automatic collection during a load walked the new version's tables once more.
    root = tmp_path / "index"
    publish(root, encoder, "a")
    holder = IndexHolder(root, encoder)
    seen: list[bool] = []
    load = holder.load_version
    holder.load_version = lambda path: seen.append(gc.isenabled()) or load(path)  # type: ignore[method-assign]
    holder.reload()
    bad = publish(root, encoder, "b")
    (bad.path / "index.text.faiss").unlink()
    with pytest.raises(IndexValidationError):
        holder.reload()
    assert seen == [False, False] and gc.isenabled()
