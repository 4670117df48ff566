"""ProfileService over a real EventStore: idempotent, replayable, equal to a recomputation.

Hypothesis draws event streams over a few users and sessions (anonymous events, identified
events, session → user links, unknown items, out-of-order timestamps spread over two months);
every property compares the incrementally maintained profiles with ``profile_from_events`` over
the events the store returns for that user or session (the documented definition).

The gap clock is exact in any arrival order; the activity clock follows arrival order (and a
session's anonymous events join its user at login, after the user's own). So the properties
that shuffle arrivals or merge sessions run with the activity clock off, and the shipped
configuration is checked on in-order streams and on replays of the log.
"""

from __future__ import annotations

import math
import random
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aisle.index.profile import DAY_S, EVENT_TYPES, DecayConfig, ProfileEvent, TypeDecay, profile_from_events
from aisle.service.engine import Engine
from aisle.service.events.identity import IdHasher
from aisle.service.events.store import EventStore, StoredEvent
from aisle.service.holder import IndexHolder
from aisle.service.personal.config import PersonalConfig
from aisle.service.personal.profiles import ProfileService
from tests.fakes import HashingEncoder
from tests.service.harness import publish

NOW = 1_700_000_000.0
USERS = ("alice", "bob", "carol")
SESSIONS = ("s1", "s2", "s3", "s4")
ITEMS = tuple(f"a-{i}" for i in range(30)) + ("not-in-the-index",)
HASHER = IdHasher(b"k" * 32)
NO_ACTIVITY = math.inf
CONFIGS = (
    PersonalConfig(decay=DecayConfig(activity_half_life=NO_ACTIVITY)),
    PersonalConfig(
        decay=DecayConfig(view=TypeDecay(1.0, 3600.0), click=TypeDecay(2.0, 600.0), activity_half_life=NO_ACTIVITY)
    ),
    PersonalConfig(decay=DecayConfig(decay=False)),
)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    root = tmp_path_factory.mktemp("profiles") / "index"
    encoder = HashingEncoder()
    publish(root, encoder)
    holder = IndexHolder(root, encoder)
    holder.reload()
    return holder.engine


@st.composite
def event_streams(draw) -> list[StoredEvent]:
    count = draw(st.integers(1, 40))
    events = []
    for number in range(count):
        user = draw(st.sampled_from((None, *USERS)))
        session = draw(st.sampled_from((None, *SESSIONS)) if user else st.sampled_from(SESSIONS))
        events.append(
            StoredEvent(
                event_key=HASHER.event(f"e{number}"),
                user_key=HASHER.user(user) if user else None,
                session_key=HASHER.session(session) if session else None,
                item_id=draw(st.sampled_from(ITEMS)),
                type=draw(st.sampled_from(EVENT_TYPES)),
                timestamp=NOW - draw(st.floats(0, 60 * DAY_S, allow_nan=False)),
                received=NOW,
            )
        )
    return events


class Harness:
    """A store in a temporary directory with a ProfileService subscribed to it."""

    def __init__(self, directory: Path, engine: Engine, config: PersonalConfig) -> None:
        self.store = EventStore(directory / "events.sqlite3", id_check=HASHER.check_value())
        self.profiles = ProfileService(HASHER, config, self.store, clock=lambda: NOW)
        self.profiles.attach(engine)
        self.store.on_commit = self.profiles.apply
        self.store.start()

    def send(self, events: list[StoredEvent], batches: int = 3) -> tuple[int, int]:
        accepted = duplicates = 0
        size = max(1, len(events) // batches)
        for start in range(0, len(events), size):
            result = self.store.append(events[start : start + size])
            accepted += len(result.accepted)
            duplicates += result.duplicates
        return accepted, duplicates


@contextmanager
def harnesses(engine: Engine, config: PersonalConfig, count: int = 1) -> Iterator[list[Harness]]:
    """``count`` independent stores with their profiles, closed and deleted afterwards."""
    with ExitStack() as stack:
        opened = []
        for _ in range(count):
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            harness = Harness(directory, engine, config)
            stack.callback(harness.store.close)
            opened.append(harness)
        yield opened


def recomputed(events: list[StoredEvent], engine: Engine, config: PersonalConfig):
    rows = [(engine.item_row(e.item_id), e) for e in events]
    profile_events = [ProfileEvent(row, e.type, e.timestamp) for row, e in rows if row is not None]
    return profile_from_events(profile_events, engine.index.text.vectors, config.decay)


def assert_close(view, expected) -> None:
    actual = view.text if view is not None else None
    if expected.vector is None:
        assert actual is None or actual.vector is None
        return
    assert actual is not None and actual.vector is not None
    np.testing.assert_allclose(actual.vector, expected.vector, atol=5e-3)  # float16 sums
    assert actual.mass == pytest.approx(expected.mass, rel=1e-5)


def snapshot(profiles: ProfileService) -> dict:
    """Every user's and session's profile vector, mass, counts and item weights."""
    out = {}
    for user in USERS:
        out[("user", user)] = profiles.view(user, None)
    for session in SESSIONS:
        out[("session", session)] = profiles.view(None, session)
    for user in USERS:
        for session in SESSIONS:
            out[(user, session)] = profiles.view(user, session)
    return out


def assert_same_snapshots(left: dict, right: dict) -> None:
    assert left.keys() == right.keys()
    for key in left:
        a, b = left[key], right[key]
        assert (a is None) == (b is None), key
        if a is None:
            continue
        assert a.counts == b.counts, key
        assert a.linked_sessions == b.linked_sessions, key
        assert (a.text.vector is None) == (b.text.vector is None), key
        if a.text.vector is not None:
            np.testing.assert_allclose(a.text.vector, b.text.vector, atol=5e-3)
        assert a.text.mass == pytest.approx(b.text.mass, rel=1e-5)
        assert a.item_weights.keys() == b.item_weights.keys(), key
        for item in a.item_weights:
            assert a.item_weights[item] == pytest.approx(b.item_weights[item], rel=1e-6, abs=1e-300)


@settings(max_examples=25, deadline=None)
@given(events=event_streams(), config_index=st.integers(0, len(CONFIGS) - 1))
def test_incremental_profiles_equal_recomputation_from_the_store(engine, events, config_index) -> None:
    config = CONFIGS[config_index]
    with harnesses(engine, config) as (harness,):
        check_against_recomputation(harness, engine, config, events)


def check_against_recomputation(harness: Harness, engine: Engine, config: PersonalConfig, events) -> None:
    harness.send(events)
    for user in USERS:
        key = HASHER.user(user)
        assert_close(harness.profiles.view(user, None), recomputed(harness.store.events_of_user(key), engine, config))
    for session in SESSIONS:
        key = HASHER.session(session)
        expected = recomputed(harness.store.events_of_session(key), engine, config)
        assert_close(harness.profiles.view(None, session), expected)
    # A restart rebuilds the same state from the log alone.
    rebuilt = ProfileService(HASHER, config, harness.store, clock=lambda: NOW)
    rebuilt.attach(engine)
    assert_same_snapshots(snapshot(rebuilt), snapshot(harness.profiles))


@settings(max_examples=15, deadline=None)
@given(events=event_streams())
def test_shipped_clocks_equal_recomputation_in_order_and_replay_the_same(engine, events) -> None:
    config = PersonalConfig()
    own = [
        StoredEvent(e.event_key, e.user_key, None, e.item_id, e.type, e.timestamp, e.received)
        for e in events
        if e.user_key is not None
    ]
    with harnesses(engine, config) as (harness,):
        harness.send(own or events)
        for user in USERS:
            expected = recomputed(harness.store.events_of_user(HASHER.user(user)), engine, config)
            assert_close(harness.profiles.view(user, None), expected)
    with harnesses(engine, config) as (harness,):
        harness.send(events)
        rebuilt = ProfileService(HASHER, config, harness.store, clock=lambda: NOW)
        rebuilt.attach(engine)
        assert_same_snapshots(snapshot(rebuilt), snapshot(harness.profiles))


@settings(max_examples=20, deadline=None)
@given(events=event_streams(), seed=st.integers(0, 2**32 - 1))
def test_resending_events_changes_nothing(engine, events, seed) -> None:
    with harnesses(engine, CONFIGS[0]) as (harness,):
        check_resending(harness, events, seed)


def check_resending(harness: Harness, events, seed) -> None:
    accepted, duplicates = harness.send(events)
    assert (accepted, duplicates) == (len(events), 0)
    before = snapshot(harness.profiles)
    resent = random.Random(seed).sample(events, len(events))
    accepted, duplicates = harness.send(resent, batches=2)
    assert (accepted, duplicates) == (0, len(events))
    assert harness.store.count() == len(events)
    assert_same_snapshots(snapshot(harness.profiles), before)


@settings(max_examples=20, deadline=None)
@given(events=event_streams(), seed=st.integers(0, 2**32 - 1), config_index=st.integers(0, len(CONFIGS) - 1))
def test_any_arrival_order_gives_the_same_profiles_on_the_gap_clock(engine, events, seed, config_index) -> None:
    with harnesses(engine, CONFIGS[config_index], 2) as (first, second):
        check_orders(first, second, events, seed)


def check_orders(first: Harness, second: Harness, events, seed) -> None:
    first.send(events)
    second.send(random.Random(seed).sample(events, len(events)), batches=5)
    assert_same_snapshots(snapshot(first.profiles), snapshot(second.profiles))


def test_session_history_joins_the_user_at_login(engine) -> None:
    with harnesses(engine, CONFIGS[0]) as (harness,):
        check_login_merge(harness, engine)


def check_login_merge(harness: Harness, engine: Engine) -> None:

    def event(number: int, item: str, user: str | None, session: str | None) -> StoredEvent:
        return StoredEvent(
            HASHER.event(f"x{number}"),
            HASHER.user(user) if user else None,
            HASHER.session(session) if session else None,
            item,
            "view",
            NOW - 100 + number,
            NOW,
        )

    harness.send([event(0, "a-6", None, "s1"), event(1, "a-7", None, "s1")], batches=1)
    anonymous = harness.profiles.view(None, "s1")
    assert anonymous is not None and anonymous.counts == {"view": 2}
    assert harness.profiles.view("alice", None) is None
    # Before any event links them, a request with both ids sees the session's history too.
    assert harness.profiles.view("alice", "s1").counts == {"view": 2}
    harness.send([event(2, "a-8", "alice", "s1")], batches=1)
    alice = harness.profiles.view("alice", None)
    assert alice.counts == {"view": 3} and alice.linked_sessions == 1
    harness.send([event(3, "a-0", None, "s1")], batches=1)  # later anonymous events follow
    assert harness.profiles.view("alice", None).counts == {"view": 4}
    # Bob on another session sees none of it.
    harness.send([event(4, "a-1", "bob", "s2")], batches=1)
    assert harness.profiles.view("bob", None).counts == {"view": 1}
    key = HASHER.user("alice")
    expected = recomputed(harness.store.events_of_user(key), engine, CONFIGS[0])
    assert_close(harness.profiles.view("alice", None), expected)
