"""The event store contract, run against both backends: embedded SQLite and a real PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from aisle.service.events.store import EventStore, EventStoreError, StoredEvent

CHECK = "id-check-value"


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., EventStore]:
    """Opens (and later closes) stores of one backend over one shared database."""
    opened: list[EventStore] = []
    if request.param == "postgres":
        from aisle.service.events.postgres import PostgresEventStore

        url = request.getfixturevalue("postgres_url")

        def factory(id_check: str = CHECK) -> EventStore:
            return PostgresEventStore(url, id_check=id_check)
    else:

        def factory(id_check: str = CHECK) -> EventStore:
            return EventStore(tmp_path / "events.sqlite3", id_check=id_check)

    def opener(id_check: str = CHECK, *, start: bool = True) -> EventStore:
        store = factory(id_check)
        opened.append(store)
        if start:
            store.start()
        return store

    yield opener
    for store in opened:
        store.close()


def event(
    key: str, user: str | None = "u1", session: str | None = None, item: str = "i1", ts: float = 1.0
) -> StoredEvent:
    return StoredEvent(key, user, session, item, "view", ts, ts + 0.5)


def test_appends_count_duplicates_and_keep_commit_order(open_store) -> None:
    store = open_store()
    first = store.append([event("e1"), event("e2"), event("e1")])
    assert [e.event_key for e in first.accepted] == ["e1", "e2"] and first.duplicates == 1
    again = store.append([event("e2"), event("e3")])
    assert [e.event_key for e in again.accepted] == ["e3"] and again.duplicates == 1
    seqs = [e.seq for e in first.accepted + again.accepted]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    assert [e.event_key for e in store.iter_events()] == ["e1", "e2", "e3"]
    assert [e.event_key for e in store.iter_events(after_seq=seqs[0])] == ["e2", "e3"]
    assert store.count() == 3 and store.last_seq() == seqs[-1]


def test_iter_events_reads_past_one_chunk(open_store) -> None:
    store = open_store()
    store.append([event(f"e{i}", ts=float(i)) for i in range(25)])
    assert [e.event_key for e in store.iter_events(chunk=7)] == [f"e{i}" for i in range(25)]


def test_a_user_owns_the_anonymous_events_of_linked_sessions(open_store) -> None:
    store = open_store()
    store.append(
        [
            event("anon", user=None, session="s1", item="a"),
            event("login", user="u1", session="s1", item="b"),
            event("other", user=None, session="s2", item="c"),
            event("own", user="u1", item="d"),
        ]
    )
    assert sorted(e.item_id for e in store.events_of_user("u1")) == ["a", "b", "d"]
    assert [e.item_id for e in store.events_of_session("s1")] == ["a", "b"]


def test_acknowledged_events_survive_reopening(open_store) -> None:
    store = open_store()
    store.append([event("e1"), event("e2")])
    store.close()
    assert [e.event_key for e in open_store().iter_events()] == ["e1", "e2"]


def test_a_store_written_with_another_secret_is_refused(open_store) -> None:
    open_store().append([event("e1")])
    with pytest.raises(EventStoreError, match="another id secret"):
        open_store("some-other-secret", start=False)


def test_two_writers_commit_in_sequence_order(open_store) -> None:
    """Two stores on one database (two workers, or two replicas): every event stored once, and
    a reader that follows ``seq`` never skips one committed after it looked."""
    writers = [open_store(), open_store()]
    reader = open_store()
    seen: list[str] = []
    stop = threading.Event()

    def follow() -> None:
        last = 0
        while not stop.is_set():
            for stored in reader.iter_events(after_seq=last):
                seen.append(stored.event_key)
                last = stored.seq

    def write(store: EventStore, prefix: str) -> None:
        for batch in range(30):
            store.append([event(f"{prefix}-{batch}-{i}", ts=float(i)) for i in range(5)])

    follower = threading.Thread(target=follow)
    follower.start()
    threads = [threading.Thread(target=write, args=(store, name)) for store, name in zip(writers, "ab", strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    follower.join()
    everything = [e.event_key for e in reader.iter_events()]
    assert len(everything) == len(set(everything)) == 300
    tail = [e.event_key for e in reader.iter_events(after_seq=0)][len(seen) :]
    assert seen + tail == everything  # the follower saw a prefix of the commit order, nothing skipped


def test_erasing_a_user_takes_their_linked_sessions_but_not_other_users(open_store) -> None:
    store = open_store()
    other = open_store()  # a second process on the same data
    store.append(
        [
            event("anon", user=None, session="s1", item="a"),
            event("login", user="u1", session="s1", item="b"),
            event("shared", user="u2", session="s1", item="c"),  # someone else on the same device
            event("own", user="u1", item="d"),
            event("unrelated", user=None, session="s2", item="e"),
        ]
    )
    before = other.erasures()
    erasure = store.erase_user("u1")
    assert (erasure.events, erasure.sessions) == (3, 1)
    assert sorted(e.event_key for e in other.iter_events()) == ["shared", "unrelated"]
    assert other.erasures() == before + 1
    assert store.erase_user("u1").events == 0
    store.append([event("own", user="u1", item="d")])  # re-sent after the erasure: stored again
    assert [e.event_key for e in store.events_of_user("u1")] == ["own"]


def test_purging_drops_events_that_happened_before_the_cutoff(open_store) -> None:
    store = open_store()
    store.append([event(f"e{i}", ts=float(i)) for i in range(10)])
    assert store.purge_older_than(4.0) == 4
    assert [e.event_key for e in store.iter_events()] == [f"e{i}" for i in range(4, 10)]
    assert store.erasures() >= 1
