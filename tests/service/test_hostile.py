"""Hostile and careless callers (issue 24): one section per finding, each probing from outside.

Every test here failed on the code before the fixes. Elsewhere: the HTTP level (finding 3's
event-loop stalls on a real server, finding 9's slow heads and bodies and the HTTP layer's own
400s) in ``tests/service/test_hostile_http.py``; catalogue loading (finding 5) in
``tests/index/test_catalog_hostile.py``; every route fuzzed in ``test_openapi_fuzz.py``.
Findings 2 (field visibility) and 4 (bounded profile memory) were fixed by other changes, with
their own tests: the catalogue-fields tests under ``tests/index`` and ``tests/service``, and the
profile-memory tests under ``tests/service/personal``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.service.harness import make_app

KEY = "hostile-key"
GUARD = {"X-API-Key": KEY}


def send(client: TestClient, events: list[dict], headers: dict | None = None) -> None:
    response = client.post("/events", json={"events": events}, headers=headers or GUARD)
    assert response.status_code == 200, response.text


def event(number: int, item: str, user: str | None = None, session: str | None = None, kind: str = "purchase") -> dict:
    body: dict = {"event_id": f"{user}-{session}-{number}", "item_id": item, "type": kind, "timestamp": time.time()}
    if user is not None:
        body["user_id"] = user
    if session is not None:
        body["session_id"] = session
    return body


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(make_app(tmp_path, api_key=KEY)) as client:
        yield client


# 1. A shopper's history is private.


def test_a_profile_needs_the_key(client: TestClient) -> None:
    send(client, [event(1, "a-6", user="alice@example.com"), event(2, "a-7", session="visitor-1")])
    for path, params in (
        ("/users/alice@example.com/profile", {}),
        ("/users/nobody@example.com/profile", {}),
        ("/users/x/profile", {"session_id": "visitor-1"}),
    ):
        for headers in ({}, {"X-API-Key": "wrong"}):
            response = client.get(path, params=params, headers=headers)
            assert response.status_code == 401, (path, params, response.text)
            assert response.json()["error"]["code"] == "unauthorized"
            assert "known" not in response.text and "a-6" not in response.text and "a-7" not in response.text
    # Known and unknown ids are indistinguishable without the key; the shop's backend reads both.
    assert client.get("/users/alice@example.com/profile", headers=GUARD).json()["known"] is True
    assert client.get("/users/nobody@example.com/profile", headers=GUARD).json()["known"] is False


# 10. Operations.


def test_head_health_answers_like_get(client: TestClient) -> None:
    response = client.head("/health")
    assert response.status_code == 200
    assert response.content == b""
    assert client.get("/health").status_code == 200


# 8. Non-finite and out-of-range numbers.


@pytest.mark.parametrize(
    "body",
    [
        '{"query": "knife", "rules": {"boosts": {"brands": {"Opinel": Infinity}}}}',
        '{"query": "knife", "rules": {"boosts": {"brands": {"Opinel": NaN}}}}',
        '{"query": "knife", "rules": {"boosts": {"categories": {"Kitchen": -Infinity}}}}',
        '{"query": "knife", "rules": {"boosts": {"brands": {"Opinel": 1e308}}}}',
    ],
)
def test_non_finite_or_absurd_boosts_are_refused_with_a_422(client: TestClient, body: str) -> None:
    response = client.post("/search", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, (body, response.status_code, response.text[:200])
    assert "rules.boosts" in response.json()["error"]["message"]


@pytest.mark.parametrize("timestamp", ["1" + "0" * 400, "-1" + "0" * 400])
def test_an_integer_timestamp_beyond_any_float_is_a_422(client: TestClient, timestamp: str) -> None:
    body = '{"events": [{"event_id": "e", "item_id": "a-1", "type": "view", "timestamp": TS}]}'.replace("TS", timestamp)
    response = client.post("/events", content=body, headers={**GUARD, "Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert "timestamp" in response.json()["error"]["message"]


# 7. Raw user ids reach no log and no file; the data is owner-only.


def test_user_ids_never_reach_the_log_or_the_data_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import os
    import stat

    previous = os.umask(0o022)  # the usual umask, under which files came out world-readable
    try:
        caplog.set_level(logging.INFO)
        email = "jane.doe+shop@example.com"
        with TestClient(make_app(tmp_path, api_key=KEY)) as client:
            send(client, [event(1, "a-6", user=email, session="sess-jane")])
            assert client.get(f"/users/{email}/recommendations").status_code == 200
            assert client.get(f"/users/{email}/profile", headers=GUARD).status_code == 200
            assert client.get(f"/users/{email}/nothing-here").status_code == 404
            server_records = [record for record in caplog.records if record.name.startswith("aisle")]
            logged = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in server_records)
            assert "/users/~" in logged  # the access log still tells requests apart
    finally:
        os.umask(previous)
    assert "jane.doe" not in logged and "example.com" not in logged
    data_dir = tmp_path / "data"
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    for path in data_dir.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert b"jane.doe" not in path.read_bytes() and b"sess-jane" not in path.read_bytes(), path


def test_an_existing_world_readable_event_database_is_made_owner_only(tmp_path: Path) -> None:
    import os
    import stat

    with TestClient(make_app(tmp_path, api_key=KEY)) as client:
        send(client, [event(1, "a-6", user="u1")])
    database = tmp_path / "data" / "events.sqlite3"
    os.chmod(database, 0o644)
    with TestClient(make_app(tmp_path, publish_first=False, api_key=KEY)):
        assert stat.S_IMODE(database.stat().st_mode) == 0o600


def corrupt_one_file(version: Path) -> None:
    target = version / "items.parquet"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, a flipped byte: only the checksum sees it
    target.write_bytes(bytes(data))


def test_a_start_on_a_corrupt_current_version_serves_the_last_good_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from tests.fakes import HashingEncoder
    from tests.service.harness import publish

    encoder = HashingEncoder()
    good = publish(tmp_path / "index", encoder, "a")
    bad = publish(tmp_path / "index", encoder, "b")
    corrupt_one_file(bad.path)
    caplog.set_level(logging.WARNING)
    with TestClient(make_app(tmp_path, encoder=encoder, publish_first=False, api_key=KEY)) as client:
        health = client.get("/health").json()
        assert health["index_version"] == good.version and health["refused_version"] == bad.version
        assert client.get("/search", params={"q": "knife"}).json()["results"][0]["id"].startswith("a-")
    loud = [r for r in caplog.records if r.levelno == logging.CRITICAL and bad.version in r.getMessage()]
    assert loud and good.version in loud[0].getMessage()


def test_rollback_refuses_a_corrupt_version_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from aisle.cli import main as aisle_main
    from aisle.index.versions import VersionStore
    from tests.fakes import HashingEncoder
    from tests.service.harness import publish

    encoder = HashingEncoder()
    old = publish(tmp_path / "index", encoder, "a")
    new = publish(tmp_path / "index", encoder, "b")
    corrupt_one_file(old.path)
    for args in (["rollback"], ["rollback", old.version]):
        assert aisle_main([*args, "--index", str(tmp_path / "index")]) == 2
        err = capsys.readouterr().err
        assert "sha256" in err and "Traceback" not in err
        assert VersionStore(tmp_path / "index").current_name() == new.version


@pytest.mark.parametrize(("host", "level"), [("0.0.0.0", "CRITICAL"), ("127.0.0.1", "WARNING")])
def test_a_start_without_an_api_key_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, host: str, level: str
) -> None:
    import logging

    caplog.set_level(logging.WARNING)
    with TestClient(make_app(tmp_path, host=host)):
        pass
    warnings = [r for r in caplog.records if "API key" in r.getMessage() or "API KEY" in r.getMessage()]
    assert [r.levelname for r in warnings] == [level]
    caplog.clear()
    with TestClient(make_app(tmp_path / "keyed", api_key=KEY)):
        pass
    assert not [r for r in caplog.records if "API KEY" in r.getMessage().upper()]


# 9. Metric labels come from bounded sets.


def test_made_up_methods_and_paths_collapse_into_one_metric_label(client: TestClient) -> None:
    for number in range(200):
        client.request(f"M{number}X", f"/made/up/{number}")
        client.request(f"Q{number}", "/search")
    exposition = client.get("/metrics").text
    assert "M7X" not in exposition and "/made/up/7" not in exposition
    assert 'method="OTHER"' in exposition
    series = [line for line in exposition.splitlines() if line.startswith("aisle_requests_total{")]
    assert len(series) <= 5, series


# 3. No request is expensive to refuse (the event loop parses and validates bodies).


def test_a_huge_brand_list_is_refused_before_it_is_parsed(client: TestClient) -> None:
    body = '{"query": "knife", "filters": {"brand": [' + ",".join(["1"] * 300_000) + "]}}"
    assert len(body) < 1_000_000
    response = client.post("/search", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_many_values"


def test_a_long_brand_list_within_the_value_bound_is_refused_by_its_cap(client: TestClient) -> None:
    response = client.post("/search", json={"query": "knife", "filters": {"brand": [str(n) for n in range(5000)]}})
    assert response.status_code == 422 and "filters.brand" in response.json()["error"]["message"]
    response = client.post("/search", json={"query": "knife", "filters": {"brand": list(range(5000))}})
    assert response.status_code == 422


def test_an_oversized_batch_is_refused_before_its_events_are_validated(client: TestClient, monkeypatch) -> None:
    from aisle.service.events import schemas

    body = '{"events": [' + ",".join(["{}"] * 200_000) + "]}"
    response = client.post("/events", content=body, headers={**GUARD, "Content-Type": "application/json"})
    assert response.status_code == 413
    # Within the value bound, the batch cap answers before any event is validated.
    validated = []
    original = schemas.parse_timestamp
    monkeypatch.setattr(schemas, "parse_timestamp", lambda value: validated.append(value) or original(value))
    events = [{"event_id": str(n), "item_id": "a-1", "type": "view", "timestamp": 1} for n in range(1001)]
    response = client.post("/events", json={"events": events}, headers=GUARD)
    assert response.status_code == 413 and response.json()["error"]["code"] == "batch_too_large"
    assert validated == []


# 6. Erasure and retention.

ERASED = "erase.me@example.com"


def recommended(client: TestClient, user: str) -> list[dict]:
    response = client.get(f"/users/{user}/recommendations", params={"k": 10})
    assert response.status_code == 200, response.text
    return response.json()["results"]


def sources(client: TestClient, user: str, source: str) -> set[str]:
    return {r["id"] for r in recommended(client, user) if r["source"] == source}


def erased_user_history(client: TestClient) -> None:
    """ERASED bought a-13 and a-15 together and browsed a-20 anonymously in a session later
    linked to them; "keeper" bought a-6; "probe" bought a-13 (so a-15 is bought together)."""
    send(
        client,
        [
            event(1, "a-13", user=ERASED, session="s-erase"),
            event(2, "a-15", user=ERASED),
            {**event(3, "a-20", session="s-erase"), "type": "view"},
            event(4, "a-6", user="keeper"),
            event(5, "a-13", user="probe"),
        ],
    )


def assert_erased(client: TestClient) -> None:
    profile = client.get(f"/users/{ERASED}/profile", headers=GUARD).json()
    assert profile["known"] is False and profile["events"]["total"] == 0
    session = client.get("/users/anyone/profile", params={"session_id": "s-erase"}, headers=GUARD).json()
    assert session["known"] is False
    assert sources(client, "cold-visitor", "popular") == {"a-6", "a-13"}  # a-13 through "probe"; a-15, a-20 gone
    assert "a-15" not in sources(client, "probe", "bought_together")
    assert client.get("/users/keeper/profile", headers=GUARD).json()["events"]["total"] == 1


def stored_rows(data_dir: Path) -> int:
    import sqlite3

    with sqlite3.connect(data_dir / "events.sqlite3") as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


def test_delete_user_erases_events_sessions_profile_and_derived_statistics(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path, api_key=KEY)) as client:
        erased_user_history(client)
        assert client.get(f"/users/{ERASED}/profile", headers=GUARD).json()["events"]["total"] == 3
        assert "a-15" in sources(client, "probe", "bought_together")
        assert sources(client, "cold-visitor", "popular") == {"a-6", "a-13", "a-15", "a-20"}
        assert client.delete(f"/users/{ERASED}").status_code == 401
        response = client.delete(f"/users/{ERASED}", headers=GUARD)
        assert response.status_code == 200, response.text
        assert response.json()["erased_events"] == 3 and response.json()["linked_sessions"] == 1
        assert stored_rows(tmp_path / "data") == 2
        assert_erased(client)
        again = client.delete(f"/users/{ERASED}", headers=GUARD).json()
        assert again["erased_events"] == 0
    # Still gone after a restart, and after a new index version is built and swapped in.
    from tests.fakes import HashingEncoder
    from tests.service.harness import publish

    with TestClient(make_app(tmp_path, publish_first=False, api_key=KEY)) as client:
        assert_erased(client)
        publish(tmp_path / "index", HashingEncoder(), "a")
        assert client.post("/admin/reload", headers=GUARD).json()["swapped"] is True
        assert_erased(client)


def wait_until(check, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_an_erasure_reaches_every_worker_on_the_same_data(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """Two apps over one store stand for two worker processes (or two replicas on PostgreSQL)."""
    shared = {"database_url": request.getfixturevalue("postgres_url")} if backend == "postgres" else {}
    with TestClient(make_app(tmp_path, api_key=KEY, **shared)) as one:
        with TestClient(make_app(tmp_path, publish_first=False, api_key=KEY, **shared)) as other:
            erased_user_history(one)

            def other_knows_the_user() -> None:
                assert other.get(f"/users/{ERASED}/profile", headers=GUARD).json()["known"] is True

            wait_until(other_knows_the_user)
            assert one.delete(f"/users/{ERASED}", headers=GUARD).status_code == 200
            wait_until(lambda: assert_erased(other))


def served_rows_of(data: Path, user: str) -> int:
    """Served responses and exposures stored for ``user`` (``served.sqlite3``)."""
    from aisle.service.events.identity import IdHasher, load_or_create_secret

    key = IdHasher(load_or_create_secret(data)).user(user)
    with closing(sqlite3.connect(data / "served.sqlite3")) as conn:
        served = conn.execute("SELECT COUNT(*) FROM served WHERE user_key = ?", (key,)).fetchone()[0]
        return served + conn.execute("SELECT COUNT(*) FROM exposures WHERE unit_key = ?", (key,)).fetchone()[0]


def test_aisle_forget_erases_a_user_under_a_running_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from aisle.cli import main as aisle_main

    with TestClient(make_app(tmp_path, api_key=KEY)) as client:
        erased_user_history(client)
        shown = client.get(f"/users/{ERASED}/recommendations", params={"k": 3}, headers=GUARD)
        assert shown.status_code == 200, shown.text
        wait_until(lambda: served_rows_of(tmp_path / "data", ERASED) > 0)  # written within 0.25 s
        status = aisle_main(["forget", ERASED, "nobody@example.com", "--data-dir", str(tmp_path / "data")])
        assert status == 0
        out = capsys.readouterr().out
        assert "user 1: erased 3 events and 1 linked sessions" in out and "user 2: erased 0 events" in out
        assert ERASED not in out
        assert served_rows_of(tmp_path / "data", ERASED) == 0
        wait_until(lambda: assert_erased(client))
    assert aisle_main(["forget", ERASED, "--data-dir", str(tmp_path / "nowhere")]) == 2


def test_events_older_than_the_retention_period_are_dropped(tmp_path: Path) -> None:
    with TestClient(make_app(tmp_path, api_key=KEY, events_retention_days=30)) as client:
        old = {**event(1, "a-13", user="returning"), "timestamp": time.time() - 40 * 86400}
        send(client, [old, event(2, "a-6", user="returning")])

        def only_the_recent_event_counts() -> None:
            profile = client.get("/users/returning/profile", headers=GUARD).json()
            assert profile["events"]["total"] == 1 and [item["id"] for item in profile["top_items"]] == ["a-6"]

        wait_until(only_the_recent_event_counts)
        assert stored_rows(tmp_path / "data") == 1
    with TestClient(make_app(tmp_path, publish_first=False, api_key=KEY)) as client:
        assert client.get("/users/returning/profile", headers=GUARD).json()["events"]["total"] == 1
