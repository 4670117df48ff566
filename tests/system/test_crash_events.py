"""Crash safety of event intake: SIGKILL at random moments, ≥ 10 times, while a client streams.

A client thread sends batches of events with unique ids without pause and, like a real
tracker, re-sends a batch until it is acknowledged (so a batch committed just before a kill
comes back as duplicates). The main thread kills the server with SIGKILL at a random moment
after each start (no shutdown code runs), and restarts it. At the end the server is stopped
with SIGTERM while the client is still sending (graceful: drain, close the store, exit 0).
Then the event store is read directly: every acknowledged event is there exactly once, and
nothing is there that was never sent.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from pathlib import Path

import httpx

from aisle.index.build import BuildOptions, build_version
from aisle.index.catalog import load_catalog
from aisle.service.events import EventStore, IdHasher, load_or_create_secret
from aisle.service.events.store import EVENTS_FILE
from tests.system.catalogues import PRODUCTS_PER_CATALOGUE, write_catalogues
from tests.system.server import ServerProcess

KILLS = 10
BATCH = 25
TYPES = ("view", "click", "add_to_cart", "purchase")


class EventStreamer:
    """Streams batches of new events; re-sends a batch until the server acknowledges it."""

    def __init__(self, url: str, seed: int) -> None:
        self.url = url
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.sent_ids: set[str] = set()
        self.acknowledged: list[str] = []
        self.batches_acknowledged = 0
        self.duplicates_reported = 0
        self.failed_attempts = 0
        self.wrong_counts: list[str] = []
        self._next = 0

    def _new_batch(self) -> list[dict]:
        batch = []
        for _ in range(BATCH):
            self._next += 1
            batch.append(
                {
                    "event_id": f"evt-{self._next}",
                    "user_id": f"user-{self.rng.randrange(40)}",
                    "item_id": f"p-{self.rng.randrange(PRODUCTS_PER_CATALOGUE)}",
                    "type": self.rng.choice(TYPES),
                    "timestamp": time.time() - self.rng.uniform(0, 86400),
                }
            )
        return batch

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10.0) as client:
            batch = self._new_batch()
            while not self.stop.is_set():
                self.sent_ids.update(event["event_id"] for event in batch)
                try:
                    response = client.post("/events", json={"events": batch})
                except httpx.HTTPError:
                    self.failed_attempts += 1
                    time.sleep(0.02)  # the server is down: retry the same batch
                    continue
                if response.status_code != 200:
                    self.failed_attempts += 1
                    time.sleep(0.02)
                    continue
                body = response.json()
                if body["accepted"] + body["duplicates"] != len(batch):
                    self.wrong_counts.append(json.dumps(body))
                self.duplicates_reported += body["duplicates"]
                self.acknowledged += [event["event_id"] for event in batch]
                self.batches_acknowledged += 1
                batch = self._new_batch()


def test_sigkill_loses_no_acknowledged_event(tmp_path: Path, real_encoder, shared_data: Path) -> None:
    catalog = load_catalog(write_catalogues(shared_data, tmp_path)["a"])
    build_version(catalog, tmp_path / "index", real_encoder, BuildOptions(show_progress=False))
    data_dir = tmp_path / "data"
    server = ServerProcess(tmp_path / "index", data_dir, tmp_path / "server.log", watch_interval_s=0, log_level="INFO")
    streamer = EventStreamer(server.url, seed=7)
    rng = random.Random(11)
    thread = threading.Thread(target=streamer.run)
    kills = 0
    exit_status = None
    try:
        server.start()
        thread.start()
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.1, 0.9))  # a random moment in the stream
            server.kill()  # SIGKILL: no shutdown, no flush
            kills += 1
            server.start()
        time.sleep(0.5)
        exit_status = server.stop()  # SIGTERM while the client is still sending
    finally:
        streamer.stop.set()
        thread.join(timeout=30)
        server.kill()

    hasher = IdHasher(load_or_create_secret(data_dir))
    store = EventStore(data_dir / EVENTS_FILE, id_check=hasher.check_value())
    try:
        stored = [event.event_key for event in store.iter_events()]
    finally:
        store.close()
    stored_set = set(stored)
    acknowledged_keys = {hasher.event(event_id): event_id for event_id in streamer.acknowledged}
    lost = [event_id for key, event_id in acknowledged_keys.items() if key not in stored_set]
    duplicated = len(stored) - len(stored_set)
    never_sent = stored_set - {hasher.event(event_id) for event_id in streamer.sent_ids}
    print(
        json.dumps(
            {
                "kills": kills,
                "events_acknowledged": len(streamer.acknowledged),
                "batches_acknowledged": streamer.batches_acknowledged,
                "events_stored": len(stored),
                "lost": len(lost),
                "duplicated": duplicated,
                "never_sent_but_stored": len(never_sent),
                "duplicates_reported_on_resend": streamer.duplicates_reported,
                "failed_attempts_while_down": streamer.failed_attempts,
                "sigterm_exit_status": exit_status,
            }
        )
    )
    assert kills >= 10
    assert streamer.batches_acknowledged >= kills  # the stream really ran across the restarts
    assert len(set(streamer.acknowledged)) == len(streamer.acknowledged)
    assert lost == [] and duplicated == 0 and never_sent == set()
    assert streamer.wrong_counts == []
    # uvicorn drains, runs the lifespan shutdown, then re-raises SIGTERM: status 0 or -SIGTERM.
    assert exit_status in (0, -signal.SIGTERM), server.log_tail()
    assert server.log_path.read_text().count("shut down cleanly: stores closed") == 1, server.log_tail()
