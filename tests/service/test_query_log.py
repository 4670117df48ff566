"""The query log: bounded counts of normalised texts, shared by workers through one file or by
replicas through PostgreSQL (the same tests against both, on a real server)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aisle.service.query_log import LOG_FILE, CountStore, FileCounts, QueryLog


@pytest.fixture(params=["file", "postgres"])
def counts(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], CountStore]]:
    """Opens count stores of one backend over one shared place (a data directory, a database)."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    opened: list[CountStore] = []

    def opener() -> CountStore:
        if url is None:
            return FileCounts(tmp_path)
        from aisle.service.query_log_postgres import PostgresCounts

        opened.append(PostgresCounts(url))
        return opened[-1]

    yield opener
    for store in opened:
        store.close()  # a second close (QueryLog.close closed it) is harmless


def test_counts_are_bounded_and_shown_from_the_minimum_count(counts) -> None:
    log = QueryLog(counts(), capacity=3, min_count=2, flush_interval_s=0)
    for text, times in (("red shoes", 5), ("Red  Shoes", 1), ("red shirt", 2), ("rare one", 1), ("ruby", 3), ("x", 1)):
        for _ in range(times):
            log.record(text)
    log.flush()
    assert len(log) == 3
    assert log.completions("r", 5) == [("red shoes", 6), ("ruby", 3), ("red shirt", 2)]
    assert log.completions("red sh", 5) == [("red shoes", 6), ("red shirt", 2)]
    assert log.completions("", 5) == [] and log.completions("q", 5) == []


def test_personal_looking_and_long_texts_are_never_counted(counts) -> None:
    log = QueryLog(counts(), min_count=1, flush_interval_s=0)
    for text in ("jane@example.com", "call 06123456789", "x" * 81, "   "):
        log.record(text)
    log.flush()
    assert len(log) == 0


def test_processes_sharing_a_store_add_up_their_counts(counts) -> None:
    first, second = (QueryLog(counts(), min_count=1, flush_interval_s=0) for _ in range(2))
    first.record("desk lamp")
    second.record("desk lamp")
    second.record("desk chair")
    first.flush()
    second.flush()
    first.flush()
    assert first.completions("desk", 5) == second.completions("desk", 5) == [("desk lamp", 2), ("desk chair", 1)]


def test_an_unreadable_file_starts_a_new_log(tmp_path: Path) -> None:
    (tmp_path / LOG_FILE).write_text("{not json")
    log = QueryLog(FileCounts(tmp_path), min_count=1, flush_interval_s=0)
    log.record("sofa")
    log.flush()
    assert log.completions("so", 5) == [("sofa", 1)]


def test_background_flushes_stop_on_close(counts) -> None:
    log = QueryLog(counts(), min_count=1, flush_interval_s=0.01)
    log.start()
    log.record("bed frame")
    log.close()
    assert QueryLog(counts(), min_count=1).completions("bed", 1) == [("bed frame", 1)]
