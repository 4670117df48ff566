"""Bounded start-up and bounded memory: snapshots of the statistics, profiles read on demand.

Every property compares with the reference: a ``ProfileService`` that replays the whole log with
no snapshot and no memory cap. The event log is random (seeded): users, anonymous sessions
linked to users by later events, repeat purchases, items unknown to the index. Both stores.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from aisle.index.profile import EVENT_TYPES
from aisle.service.engine import Engine
from aisle.service.events.store import EventStore, StoredEvent
from aisle.service.holder import IndexHolder
from aisle.service.personal.config import PersonalConfig
from aisle.service.personal.export import recommendation_lines
from aisle.service.personal.profiles import ProfileService
from aisle.service.personal.runtime import store_identity
from aisle.service.personal.snapshot import MANIFEST, ProfileSnapshots
from aisle.service.ranking.rules import RuleBook
from tests.fakes import HashingEncoder
from tests.service.harness import publish
from tests.service.personal.test_profile_service import (
    HASHER,
    ITEMS,
    NOW,
    assert_same_snapshots,
)

USERS = tuple(f"user-{n}" for n in range(12))
SESSIONS = tuple(f"session-{n}" for n in range(8))
SHIPPED = PersonalConfig()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return _engine_of(tmp_path_factory.mktemp("snapshots") / "index", publish_first=True)


def random_log(seed: int, count: int, start: int = 0) -> list[StoredEvent]:
    """``count`` events in time order: repeat purchases, anonymous browsing, logins."""
    rng = random.Random(seed)
    events = []
    for number in range(start, start + count):
        user = rng.choice((None, None, *USERS))
        session = rng.choice((None, *SESSIONS)) if user else rng.choice(SESSIONS)
        kind = rng.choice((*EVENT_TYPES, "purchase", "purchase"))
        events.append(
            StoredEvent(
                event_key=HASHER.event(f"e{number}"),
                user_key=HASHER.user(user) if user else None,
                session_key=HASHER.session(session) if session else None,
                item_id=rng.choice(ITEMS[:12]),  # few items: pairs and repeats accumulate
                type=kind,
                timestamp=NOW - 40 * 86400 + number * 3000.0,
                received=NOW,
            )
        )
    return events


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], EventStore]]:
    """Opens stores of one backend over one shared database (closed afterwards)."""
    opened: list[EventStore] = []
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None

    def opener() -> EventStore:
        if url is not None:
            from aisle.service.events.postgres import PostgresEventStore

            store: EventStore = PostgresEventStore(url, id_check=HASHER.check_value())
        else:
            store = EventStore(tmp_path / "events.sqlite3", id_check=HASHER.check_value())
        opened.append(store)
        return store

    yield opener
    for store in opened:
        store.close()


def serving(
    store: EventStore, engine: Engine, snapshots: ProfileSnapshots | None, config: PersonalConfig = SHIPPED
) -> ProfileService:
    """A ProfileService attached to ``engine`` and subscribed to ``store`` (started)."""
    profiles = ProfileService(HASHER, config, store, clock=lambda: NOW, snapshots=snapshots)
    profiles.attach(engine)
    store.on_commit = profiles.apply
    store.start()
    return profiles


def reference(store: EventStore, engine: Engine) -> ProfileService:
    """The whole log replayed, nothing capped, no snapshot."""
    profiles = ProfileService(HASHER, replace(SHIPPED, max_profiles=10**6), store, clock=lambda: NOW)
    profiles.attach(engine)
    assert profiles.last_attach["restored"] is False
    return profiles


def send(store: EventStore, events: list[StoredEvent], size: int = 37) -> None:
    for start in range(0, len(events), size):
        store.append(events[start : start + size])


def views(profiles: ProfileService) -> dict:
    out = {}
    for user in USERS:
        out[("user", user)] = profiles.view(user, None)
        for session in SESSIONS[:3]:
            out[(user, session)] = profiles.view(user, session)
    for session in SESSIONS:
        out[("session", session)] = profiles.view(None, session)
    return out


def assert_same_statistics(left: ProfileService, right: ProfileService) -> None:
    (_, mine), (_, theirs) = left.popularity(), right.popularity()
    counts, ref, peak = mine.arrays()
    expected, expected_ref, expected_peak = theirs.arrays()
    assert expected.any()
    np.testing.assert_allclose(counts * 2.0 ** ((ref - expected_ref) / mine.half_life), expected, rtol=1e-9)
    assert peak * 2.0 ** ((ref - expected_ref) / mine.half_life) == pytest.approx(expected_peak, rel=1e-9)
    left_repurchase = left._derived.repurchase.arrays()
    right_repurchase = right._derived.repurchase.arrays()
    for a, b in zip(left_repurchase, right_repurchase, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    assert right_repurchase[1].any(), "the log must exercise repeat purchases"
    pairs = {(int(r), int(o)): w for r, o, w in zip(*left.cooccurrence()[1].pair_arrays(), strict=True)}
    expected_pairs = {(int(r), int(o)): w for r, o, w in zip(*right.cooccurrence()[1].pair_arrays(), strict=True)}
    assert pairs.keys() == expected_pairs.keys() and expected_pairs
    for key, weight in expected_pairs.items():
        assert pairs[key] == pytest.approx(weight, rel=1e-9)


def recommendations(profiles: ProfileService, engine: Engine) -> list[dict]:
    lines = recommendation_lines(engine, profiles, RuleBook(), USERS, 8)
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("seed", [1, 2])
def test_a_restart_from_a_snapshot_equals_replaying_the_whole_log(
    open_store, engine: Engine, tmp_path: Path, seed: int
) -> None:
    events = random_log(seed, 400)
    store = open_store()
    snapshots = ProfileSnapshots(tmp_path / "data", store_identity(store))
    snapshots.directory.mkdir()
    live = serving(store, engine, snapshots)
    assert live.last_attach["restored"] is False  # an empty log: nothing to restore from
    send(store, events[:300])
    assert live.snapshot() is not None
    send(store, events[300:])  # the tail a restart replays
    restarted = ProfileService(HASHER, SHIPPED, store, clock=lambda: NOW, snapshots=snapshots)
    restarted.attach(engine)
    assert restarted.last_attach["restored"] is True and restarted.last_attach["replayed"] == 100
    full = reference(store, engine)
    assert full.last_attach["replayed"] == 400
    assert_same_statistics(restarted, full)
    assert_same_statistics(live, full)
    assert_same_snapshots(views(restarted), views(full))
    assert recommendations(restarted, engine) == recommendations(full, engine)


def test_profiles_beyond_the_cap_are_read_back_and_recommend_the_same(open_store, engine: Engine) -> None:
    store = open_store()
    tight = replace(SHIPPED, max_profiles=2, max_sessions=2)
    capped = serving(store, engine, None, tight)
    events = random_log(5, 400)
    send(store, events)
    counts = capped.counts()
    assert counts["users"] <= 2 and counts["sessions"] <= 2 and counts["memories"] <= 2
    full = reference(store, engine)
    assert_same_statistics(capped, full)
    # Each read evicts the previous requester: every profile is read back from the log.
    assert_same_snapshots(views(capped), views(full))
    assert recommendations(capped, engine) == recommendations(full, engine)
    assert capped.counts()["users"] <= 2
    # Profiles read back keep following new events, whether they stay in memory or not.
    roomy = ProfileService(HASHER, SHIPPED, store, clock=lambda: NOW, refresh_s=0)
    roomy.attach(engine)
    views(roomy)  # every profile in memory now
    send(store, random_log(6, 120, start=400))
    capped.refresh()
    expected = views(reference(store, engine))
    assert_same_snapshots(views(capped), expected)
    assert_same_snapshots(views(roomy), expected)


def test_an_erased_user_does_not_come_back_from_a_snapshot(open_store, engine: Engine, tmp_path: Path) -> None:
    events = random_log(3, 300)
    erased = next(e.user_key for e in events if e.user_key and e.type == "purchase")
    store = open_store()
    snapshots = ProfileSnapshots(tmp_path / "data", store_identity(store))
    snapshots.directory.mkdir()
    live = serving(store, engine, snapshots)
    send(store, events)
    with np.load(live.snapshot(), allow_pickle=False) as stored:
        assert erased in stored["actors"].tolist()  # the erased user's last events were on disk
    assert store.erase_user(erased).events > 0
    restarted = ProfileService(HASHER, SHIPPED, store, clock=lambda: NOW, snapshots=snapshots)
    restarted.attach(engine)
    assert restarted.last_attach["restored"] is False  # the erasure counter moved past the snapshot's
    name = next(user for user in USERS if HASHER.user(user) == erased)
    assert restarted.view(name, None) is None
    assert_same_statistics(restarted, reference(store, engine))
    # The rebuild wrote a snapshot without the erased user's events and removed the earlier file,
    # which held their last events: the next start uses the new one.
    files = list(snapshots.directory.glob("profiles-*.npz"))
    assert [f.name for f in files] == [json.loads(snapshots.manifest_path.read_text())["file"]]
    with np.load(files[0], allow_pickle=False) as stored:
        assert erased not in stored["actors"].tolist() and len(stored["actors"])
    again = ProfileService(HASHER, SHIPPED, store, clock=lambda: NOW, snapshots=snapshots)
    again.attach(engine)
    assert again.last_attach["restored"] is True and again.view(name, None) is None
    assert_same_statistics(again, reference(store, engine))


def test_a_damaged_snapshot_falls_back_to_the_whole_log(engine: Engine, tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.sqlite3", id_check=HASHER.check_value())
    try:
        snapshots = ProfileSnapshots(tmp_path, store_identity(store))
        live = serving(store, engine, snapshots)
        send(store, random_log(4, 200))
        written = live.snapshot()
        assert written is not None
        full = reference(store, engine)
        data = written.read_bytes()
        for damage in ("truncated", "flipped", "missing"):
            if damage == "truncated":
                written.write_bytes(data[: len(data) // 2])
            elif damage == "flipped":
                written.write_bytes(data[:-9] + bytes([data[-9] ^ 0xFF]) + data[-8:])
            else:
                written.unlink()
            restarted = ProfileService(HASHER, SHIPPED, store, clock=lambda: NOW, snapshots=snapshots)
            restarted.attach(engine)
            assert restarted.last_attach["restored"] is False, damage
            assert_same_statistics(restarted, full)
            written = Path(snapshots.directory / json.loads((tmp_path / MANIFEST).read_text())["file"])
            data = written.read_bytes()  # the fallback wrote a good one again
    finally:
        store.close()


SNAPSHOT_LOOP = """
import sys, time
from pathlib import Path
from aisle.service.engine import Engine
from aisle.service.events.store import EventStore
from aisle.service.holder import IndexHolder
from aisle.service.personal.profiles import ProfileService
from aisle.service.personal.runtime import store_identity
from aisle.service.personal.snapshot import ProfileSnapshots
from tests.fakes import HashingEncoder
from tests.service.personal.test_profile_service import HASHER, NOW
from tests.service.personal.test_snapshots import SHIPPED

root = Path(sys.argv[1])
holder = IndexHolder(root / "index", HashingEncoder())
holder.reload()
store = EventStore(root / "events.sqlite3", id_check=HASHER.check_value())
profiles = ProfileService(HASHER, SHIPPED, store, clock=lambda: NOW, snapshots=ProfileSnapshots(root, store_identity(store)))
profiles.attach(holder.engine)
print("ready", flush=True)
while True:
    profiles.snapshot()
"""


def test_kill_9_while_snapshotting_leaves_a_start_that_is_right(engine: Engine, tmp_path: Path) -> None:
    publish(tmp_path / "index", HashingEncoder())
    store = EventStore(tmp_path / "events.sqlite3", id_check=HASHER.check_value())
    try:
        store.start()
        send(store, random_log(7, 300))
        repo = Path(__file__).resolve().parents[3]
        for delay in (0.05, 0.2, 0.5):
            child = subprocess.Popen(
                [sys.executable, "-c", SNAPSHOT_LOOP, str(tmp_path)],
                cwd=repo,
                stdout=subprocess.PIPE,
            )
            assert child.stdout is not None and child.stdout.readline().strip() == b"ready"
            time.sleep(delay)
            child.send_signal(signal.SIGKILL)  # anywhere: mid-write, mid-rename, between files
            child.wait(timeout=30)
            child.stdout.close()
            holder_engine = _engine_of(tmp_path / "index")
            restarted = ProfileService(
                HASHER,
                SHIPPED,
                store,
                clock=lambda: NOW,
                snapshots=ProfileSnapshots(tmp_path, store_identity(store)),
            )
            restarted.attach(holder_engine)
            assert_same_statistics(restarted, reference(store, holder_engine))
            assert_same_snapshots(views(restarted), views(reference(store, holder_engine)))
    finally:
        store.close()


def _engine_of(root: Path, publish_first: bool = False) -> Engine:
    if publish_first:
        publish(root, HashingEncoder())
    holder = IndexHolder(root, HashingEncoder())
    holder.reload()
    return holder.engine


def test_the_service_snapshots_at_shutdown_and_restarts_from_it(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from tests.service.harness import make_app

    bought = [
        {"event_id": f"b{n}", "user_id": USERS[n % 3], "item_id": f"a-{n % 7}", "type": "purchase"} for n in range(12)
    ]
    with TestClient(make_app(tmp_path)) as client:
        assert client.post("/events", json={"events": bought}).json()["accepted"] == 12
    manifest = json.loads((tmp_path / "data" / MANIFEST).read_text())
    assert manifest["floor"] == 12  # written at shutdown, after the last event
    with TestClient(make_app(tmp_path, publish_first=False)) as client:
        personal = client.app.state.personal
        profiles = personal.profiles
        assert profiles.last_attach == {**profiles.last_attach, "restored": True, "replayed": 0}
        assert profiles.counts()["users"] == 0  # no profile is built before it is asked for
        engine = client.app.state.holder.engine
        full = ProfileService(personal.hasher, personal.config, personal.store)
        full.attach(engine)
        assert full.last_attach["replayed"] == 12
        served = recommendation_lines(engine, profiles, RuleBook(), USERS[:4], 5)
        assert list(served) == list(recommendation_lines(engine, full, RuleBook(), USERS[:4], 5))
        assert profiles.view(USERS[1], None).counts == {"purchase": 4}
