"""The change log's contract, run against both backends: embedded SQLite and a real PostgreSQL.

Every process opening the log over one index root (SQLite) or one database (PostgreSQL) is a
worker or a replica: what one commits, the others read in the same order; nothing acknowledged
is lost by closing and reopening; a refused submission stores nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from aisle.index.catalog import Product
from aisle.index.changes import (
    Change,
    ChangeLog,
    ChangeLogError,
    ChangeRefused,
    Existence,
    existing_change_log,
    fold_log,
    open_change_log,
)

EVERYTHING = Existence(0, lambda item_id: item_id.startswith("p-"))


@pytest.fixture(params=["sqlite", "postgres"])
def open_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., ChangeLog]]:
    """Opens (and later closes) logs of one backend over one shared store, as workers or replicas do."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    opened: list[ChangeLog] = []

    def opener(*, writer: bool = True) -> ChangeLog:
        log = open_change_log(tmp_path / "index", url, writer=writer)
        opened.append(log)
        if writer:
            log.start()
        return log

    opener.url = url  # type: ignore[attr-defined]
    opener.root = tmp_path / "index"  # type: ignore[attr-defined]
    yield opener
    for log in opened:
        log.close()


def test_submissions_are_idempotent_atomic_and_read_in_order_by_another_process(open_log) -> None:
    first, second = open_log(), open_log()
    vector = np.arange(4, dtype=np.float32) / 10
    new = Product(id="n-1", title="newcomer", price=3.5)
    receipt = first.submit(
        [
            Change("upsert", "n-1", product=new, change_id="a", content_hash="h", vector=vector, model="m"),
            Change("patch", "p-1", fields={"price": 9.0}, change_id="b"),
        ],
        EVERYTHING,
    )
    assert receipt.duplicates == 0 and receipt.sequences == sorted(receipt.sequences) and receipt.last > 0
    again = second.submit([Change("patch", "p-1", fields={"price": 9.0}, change_id="b")], EVERYTHING)
    assert again.duplicates == 1 and again.sequences == [0]
    with pytest.raises(ChangeRefused) as conflict:
        second.submit([Change("patch", "p-1", fields={"price": 1.0}, change_id="b")], EVERYTHING)
    assert conflict.value.status == 409
    second.submit([Change("delete", "p-2")], EVERYTHING)
    with pytest.raises(ChangeRefused, match="unknown item id 'p-2'") as gone:  # deleted by the other process
        first.submit([Change("patch", "p-3", fields={"price": 2.0}), Change("patch", "p-2", fields={})], EVERYTHING)
    assert gone.value.status == 404
    for reader in (first, second):
        changes = reader.read_after(0)
        assert [(c.op, c.item_id) for c in changes] == [("upsert", "n-1"), ("patch", "p-1"), ("delete", "p-2")]
        assert [c.seq for c in changes] == sorted(c.seq for c in changes) and reader.last_seq() == changes[-1].seq
        assert reader.count() == 3  # the refused submission stored nothing, not even its first change
        assert changes[0].product == new and changes[1].fields == {"price": 9.0}
        np.testing.assert_array_equal(changes[0].vector, vector)
        assert reader.read_after(changes[0].seq, up_to=changes[1].seq) == [changes[1]]


def test_what_was_acknowledged_survives_a_reopen_and_is_folded(open_log) -> None:
    log = open_log()
    log.submit([Change("patch", "p-0", fields={"price": 42.0}), Change("delete", "p-1")], EVERYTHING)
    log.close()
    reader = existing_change_log(open_log.root, open_log.url)
    assert reader is not None and reader.count() == 2
    reader.close()
    products = [Product(id=f"p-{n}", title=f"thing {n}", price=1.0) for n in range(3)]
    folded = fold_log(open_log.root, products, "model", database_url=open_log.url)
    assert folded.changes == 2 and [(p.id, p.price) for p in folded.products] == [("p-0", 42.0), ("p-2", 1.0)]


def test_concurrent_writers_commit_in_sequence_order(open_log) -> None:
    """Followers read above the last seq they saw: a smaller seq committing later would be skipped."""
    writers = [open_log() for _ in range(3)]
    follower = open_log(writer=False)
    seen: list[int] = []
    stop = threading.Event()

    def follow() -> None:
        last = 0
        while not stop.is_set() or follower.last_seq() > last:
            for change in follower.read_after(last):
                seen.append(change.seq)
                last = change.seq

    def write(log: ChangeLog, number: int) -> None:
        for n in range(40):
            log.submit([Change("patch", f"p-{number}", fields={"price": float(n)})], EVERYTHING)

    reader = threading.Thread(target=follow)
    reader.start()
    threads = [threading.Thread(target=write, args=(log, n)) for n, log in enumerate(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    reader.join(30)
    stored = [change.seq for change in follower.read_after(0)]
    assert len(stored) == 120 and seen == stored  # the follower missed none and saw them in order


def test_a_read_only_log_refuses_writes(open_log) -> None:
    open_log()  # creates the store
    reader = open_log(writer=False)
    with pytest.raises(ChangeLogError, match="reading only"):
        reader.start()
