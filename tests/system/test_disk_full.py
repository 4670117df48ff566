"""Disk full while ingesting: 503 with Retry-After, nothing acknowledged lost, search keeps working.

Two ways to run out of space, both real SQLite "database or disk is full" failures:

* the data directory on a tiny tmpfs that really fills up (needs ``mount``: root or
  CAP_SYS_ADMIN; skipped, saying so, where it is not allowed);
* the event database's size quota (``events_max_db_mb``), which SQLite enforces as a full disk,
  so the same path runs on any CI runner.

Each test ingests until refused, checks the refusal, reads the store to prove every acknowledged
event is there exactly once, checks searches still answer, then frees space and re-sends the
refused batch, which is accepted in full (nothing of it had been stored).
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aisle.service.events import EventStore, IdHasher, load_or_create_secret
from aisle.service.events.store import EVENTS_FILE
from tests.fakes import HashingEncoder
from tests.service.harness import make_app

BATCH = 50
MAX_BATCHES = 400  # bound: far more than a full disk lets through


def batches(prefix: str) -> Iterator[list[dict]]:
    counter = itertools.count()
    while True:
        yield [
            {
                "event_id": f"{prefix}-{n}-{'x' * 40}",
                "user_id": f"user-{n % 37}",
                "session_id": f"s-{n % 11}",
                "item_id": f"a-{n % 30}",
                "type": ("view", "click", "add_to_cart", "purchase")[n % 4],
            }
            for n in (next(counter) for _ in range(BATCH))
        ]


def stored_event_keys(data_dir: Path) -> list[str]:
    hasher = IdHasher(load_or_create_secret(data_dir))
    store = EventStore(data_dir / EVENTS_FILE, id_check=hasher.check_value())
    try:
        return [event.event_key for event in store.iter_events()]
    finally:
        store.close()


def ingest_until_refused(client: TestClient, prefix: str) -> tuple[list[str], list[dict], object]:
    """Posts batches until one is refused; returns acknowledged ids, the refused batch, its response."""
    acknowledged: list[str] = []
    for batch in itertools.islice(batches(prefix), MAX_BATCHES):
        response = client.post("/events", json={"events": batch})
        if response.status_code != 200:
            return acknowledged, batch, response
        body = response.json()
        assert body["accepted"] == len(batch) and body["duplicates"] == 0
        acknowledged += [event["event_id"] for event in batch]
    raise AssertionError(f"{MAX_BATCHES} batches were accepted: the disk never filled up")


def check_full_disk_behaviour(client: TestClient, data_dir: Path, free_space) -> dict:
    acknowledged, refused_batch, refused = ingest_until_refused(client, "ev")
    assert acknowledged, "the very first batch was refused: nothing was tested"
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "storage_unavailable"
    assert "full" in refused.json()["error"]["message"]  # the real SQLite error, not another failure
    assert int(refused.headers["retry-after"]) > 0
    # Reads keep working while writes are refused.
    assert client.post("/search", json={"query": "chef knife"}).status_code == 200
    assert client.get("/items/a-1/similar").status_code == 200
    assert client.get("/health").json()["status"] == "ok"
    again = client.post("/events", json={"events": refused_batch})
    assert again.status_code == 503  # still full: still refused, still nothing half-stored

    hasher = IdHasher(load_or_create_secret(data_dir))
    keys = stored_event_keys(data_dir)
    assert len(keys) == len(set(keys))
    assert set(keys) == {hasher.event(event_id) for event_id in acknowledged}  # all there, none extra

    free_space()
    recovered = client.post("/events", json={"events": refused_batch})
    assert recovered.status_code == 200, recovered.text
    assert recovered.json()["accepted"] == len(refused_batch)  # none of it had been stored before
    return {"acknowledged_before_full": len(acknowledged), "refused_status": refused.status_code}


def test_disk_full_on_a_real_tmpfs(tmp_path: Path) -> None:
    if shutil.which("mount") is None:
        pytest.skip("no mount command: cannot create a small tmpfs here")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        data_dir = disk / "data"
        with TestClient(make_app(tmp_path, encoder=HashingEncoder(), data_dir=data_dir)) as client:
            filler = disk / "filler"
            free = shutil.disk_usage(disk).free
            filler.write_bytes(b"\0" * max(0, free - 256 * 1024))  # leave 256 KiB for the events
            figures = check_full_disk_behaviour(client, data_dir, free_space=filler.unlink)
        print(f"tmpfs disk full: {figures}")
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_disk_full_by_the_database_quota(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    app = make_app(tmp_path, encoder=HashingEncoder(), data_dir=data_dir, events_max_db_mb=0.25)
    with TestClient(app) as client:

        def raise_quota() -> None:
            client.app.state.personal.store._conn.execute("PRAGMA max_page_count=100000")

        figures = check_full_disk_behaviour(client, data_dir, free_space=raise_quota)
    print(f"quota disk full: {figures}")
