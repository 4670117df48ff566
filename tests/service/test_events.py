"""``POST /events``: durable, idempotent intake with hashed ids and clear errors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aisle.service.app import create_app
from aisle.service.events.identity import SECRET_FILE
from aisle.service.events.store import EventStoreError
from tests.fakes import HashingEncoder
from tests.service.harness import make_app, publish, settings_for

MAY_FIRST = 1714564800.0  # 2024-05-01T12:00:00Z
SAME_ID = {"X-Request-ID": "restart-check"}


def event(event_id: str, item: str = "a-0", user: str | None = "u1", **extra) -> dict:
    body = {"event_id": event_id, "item_id": item, "type": "view", **extra}
    if user is not None:
        body["user_id"] = user
    return body


def post(client: TestClient, *events: dict, **headers):
    return client.post("/events", json={"events": list(events)}, headers=headers)


def without_request_id(body: dict) -> dict:
    """The profile body flattened to comparable leaves (pytest.approx needs flat numbers)."""
    flat: dict = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}.{key}", inner)
        elif isinstance(value, list):
            for index, inner in enumerate(value):
                walk(f"{prefix}[{index}]", inner)
        else:
            flat[prefix] = value

    walk("", {k: v for k, v in body.items() if k != "request_id"})
    return flat


def stored(client: TestClient) -> list:
    return list(client.app.state.personal.store.iter_events())


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(make_app(tmp_path)) as client:
        yield client


def test_duplicates_are_counted_and_change_nothing(client: TestClient) -> None:
    first = post(client, event("e1"), event("e2", "a-1"), event("e2", "a-1"))
    assert first.status_code == 200, first.text
    assert first.json()["accepted"] == 2 and first.json()["duplicates"] == 1
    profile_before = client.get("/users/u1/profile").json()
    again = post(client, event("e1"), event("e2", "a-1"), event("e3", "a-2"))
    assert (again.json()["accepted"], again.json()["duplicates"]) == (1, 2)
    assert len(stored(client)) == 3
    profile_after = client.get("/users/u1/profile").json()
    assert profile_after["events"]["total"] == profile_before["events"]["total"] + 1


def test_unknown_items_are_reported_not_fatal(client: TestClient) -> None:
    response = post(client, event("k1", "a-5"), event("k2", "no-such-item"), event("k3", "no-such-item"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 3 and body["unknown_items"] == ["no-such-item"]
    profile = client.get("/users/u1/profile").json()
    assert profile["events"]["total"] == 3
    assert [item["id"] for item in profile["top_items"]] == ["a-5"]  # only indexed items shape it


@pytest.mark.parametrize(
    "timestamp",
    [
        "2024-05-01T12:00:00Z",
        "2024-05-01T14:00:00+02:00",
        "2024-05-01T12:00:00",
        "2024-05-01 12:00:00Z",
        MAY_FIRST,
        int(MAY_FIRST),
        "1714564800",
    ],
)
def test_iso_8601_and_unix_seconds_are_accepted(client: TestClient, timestamp) -> None:
    response = post(client, event("t", timestamp=timestamp))
    assert response.status_code == 200, response.text
    assert [e.timestamp for e in stored(client)] == [MAY_FIRST]


def test_missing_or_slightly_future_timestamps_take_the_arrival_time(client: TestClient) -> None:
    before = time.time()
    assert post(client, event("now"), event("skew", timestamp=time.time() + 60)).status_code == 200
    after = time.time()
    for stored_event in stored(client):
        assert before <= stored_event.timestamp <= after
        assert stored_event.timestamp <= stored_event.received


@pytest.mark.parametrize(
    ("timestamp", "message"),
    [
        ("yesterday", "neither ISO-8601"),
        (True, "not a boolean"),
        (-5, "before 1970"),
        (1_714_564_800_000, "milliseconds"),
        (time.time() + 86400, "in the future"),
        ("nan", "finite"),
        ({"seconds": 1}, "ISO-8601 string or Unix seconds"),
    ],
)
def test_bad_timestamps_are_refused_with_a_message(client: TestClient, timestamp, message) -> None:
    response = post(client, event("ok", timestamp=MAY_FIRST), event("bad", timestamp=timestamp))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert "events.1.timestamp" in error["message"] and message in error["message"]
    assert stored(client) == []  # the whole batch is refused


@pytest.mark.parametrize(
    "bad",
    [
        {"event_id": "x", "item_id": "a-0", "type": "like", "user_id": "u"},
        {"event_id": "", "item_id": "a-0", "type": "view", "user_id": "u"},
        {"event_id": "x", "type": "view", "user_id": "u"},
        {"event_id": "x", "item_id": "a-0", "type": "view", "user_id": "u", "colour": "red"},
        {"event_id": "x", "item_id": "a-0", "type": "view", "user_id": "u" * 300},
    ],
)
def test_malformed_events_are_422(client: TestClient, bad: dict) -> None:
    response = post(client, bad)
    assert response.status_code == 422 and "error" in response.json()


def test_batch_size_limit_and_api_key(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path, max_events_per_batch=2, api_key="secret")) as client:
        assert post(client, event("a")).status_code == 401
        too_many = post(client, event("a"), event("b"), event("c"), **{"X-API-Key": "secret"})
        assert too_many.status_code == 413 and too_many.json()["error"]["code"] == "batch_too_large"
        assert post(client, event("a"), event("b"), **{"X-API-Key": "secret"}).status_code == 200


def test_a_full_disk_answers_503_and_loses_nothing_acknowledged(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path, events_max_db_mb=0.06)) as client:
        acknowledged: set[str] = set()
        refused = None
        for batch in range(200):
            events = [event(f"b{batch}-{i}-" + "x" * 150, f"a-{i % 30}", user=f"user-{batch}-{i}") for i in range(20)]
            response = post(client, *events)
            if response.status_code != 200:
                refused = (response, events)
                break
            acknowledged.update(e["event_id"] for e in events)
        assert refused is not None, "the size quota never filled up"
        response, events = refused
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert response.json()["error"]["code"] == "storage_unavailable"
        hasher = client.app.state.personal.hasher
        keys = {e.event_key for e in stored(client)}
        assert keys == {hasher.event(event_id) for event_id in acknowledged}
        assert not {hasher.event(e["event_id"]) for e in events} & keys
        # Still serving reads.
        assert client.get("/users/user-0-0/recommendations").status_code == 200


def test_events_and_profiles_survive_a_restart(tmp_path: Path) -> None:
    encoder = HashingEncoder()
    settings = settings_for(tmp_path)
    publish(settings.index_dir, encoder)
    events = [
        event("r1", "a-6", user=None, session_id="s-9", timestamp=MAY_FIRST),
        event("r2", "a-7", user="u7", session_id="s-9", timestamp=MAY_FIRST + 60),
        {**event("r3", "a-8", user="u7", timestamp=MAY_FIRST + 120), "type": "purchase"},
    ]
    with TestClient(create_app(settings, encoder_factory=lambda _s: encoder)) as client:
        assert post(client, *events).status_code == 200
        profile = client.get("/users/u7/profile").json()
        # Same request id, same exploration draw: the lists must then match exactly.
        recommended = client.get("/users/u7/recommendations", params={"k": 5}, headers=SAME_ID).json()["results"]
    with TestClient(create_app(settings, encoder_factory=lambda _s: encoder)) as client:
        assert len(stored(client)) == 3
        again = client.get("/users/u7/profile").json()
        # Equal up to the decay of the seconds between the two reads.
        before, after = without_request_id(profile), without_request_id(again)
        assert before.keys() == after.keys()
        for key, value in before.items():
            assert after[key] == (pytest.approx(value, rel=1e-4) if isinstance(value, float) else value), key
        assert profile["events"]["total"] == 3 and profile["linked_sessions"] == 1
        rerun = client.get("/users/u7/recommendations", params={"k": 5}, headers=SAME_ID).json()["results"]
        assert [r["id"] for r in rerun] == [r["id"] for r in recommended]
        assert post(client, *events).json()["duplicates"] == 3


def test_stored_ids_are_keyed_hashes(tmp_path: Path) -> None:
    raw = {"user": "jane.doe@example.com", "session": "sess-4f1c-raw", "event": "order-jane.doe-0001"}
    with TestClient(make_app(tmp_path)) as client:
        response = post(client, event(raw["event"], "a-3", user=raw["user"], session_id=raw["session"]))
        assert response.status_code == 200
        hasher = client.app.state.personal.hasher
        (only,) = stored(client)
        assert only.user_key == hasher.user(raw["user"]) and only.session_key == hasher.session(raw["session"])
        assert only.event_key == hasher.event(raw["event"])
    data = b"".join(path.read_bytes() for path in (tmp_path / "data").iterdir() if path.is_file())
    assert hasher.user(raw["user"]).encode() in data  # the database really was searched
    for value in raw.values():
        assert value.encode() not in data
        assert value.encode("utf-16-le") not in data


def test_a_replaced_secret_is_detected(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    with TestClient(app) as client:
        assert post(client, event("s1")).status_code == 200
    (tmp_path / "data" / SECRET_FILE).write_text("00" * 32 + "\n")
    with pytest.raises(EventStoreError, match="another id secret"):
        with TestClient(create_app(app.state.settings, encoder_factory=lambda _s: HashingEncoder())):
            pass


def test_workers_sharing_a_data_directory_see_each_others_events(tmp_path: Path) -> None:
    encoder = HashingEncoder()
    settings = settings_for(tmp_path, profile_refresh_s=0)
    publish(settings.index_dir, encoder)
    first = create_app(settings, encoder_factory=lambda _s: encoder)
    second = create_app(settings, encoder_factory=lambda _s: encoder)
    with TestClient(first) as one, TestClient(second) as two:
        assert post(one, event("w1", "a-6"), event("w2", "a-7", session_id="tab")).status_code == 200
        body = post(two, event("w3", "a-8"), event("w1", "a-6")).json()  # w1 came through the other one
        assert (body["accepted"], body["duplicates"]) == (1, 1)
        for client in (one, two):
            profile = client.get("/users/u1/profile").json()
            assert profile["events"]["total"] == 3 and profile["linked_sessions"] == 1
