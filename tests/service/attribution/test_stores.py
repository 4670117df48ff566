"""Attribution's stores, run against both backends: embedded SQLite files and a real PostgreSQL.

The served-response log (bounded memory, retention, durability at close, erasure), the
attributions written with their events, the clicks found again for a later purchase, and the
reports that join them: one contract whichever backend holds them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from aisle.service.attribution.analytics import search_analytics
from aisle.service.attribution.resolve import ClickFinder, attribute
from aisle.service.attribution.served import Served, ServedLog
from aisle.service.events.store import EventStore, StoredEvent
from aisle.service.experiments.config import ExperimentConfig
from aisle.service.experiments.report import experiment_report

WINDOW_S = 7 * 86400.0


@dataclass
class Stores:
    """One backend's stores; ``served_log`` opens another log over the same store (a restart, a replica)."""

    backend: str
    tmp_path: Path
    url: str | None
    opened: list

    def served_log(self, **options) -> ServedLog:
        options = {"retention_s": 3600, "max_rows": 1000, **options}
        if self.url is not None:
            from aisle.service.attribution.postgres import PostgresServedLog

            log: ServedLog = PostgresServedLog(self.url, **options)
        else:
            log = ServedLog(self.tmp_path / "served.sqlite3", **options)
        self.opened.append(log)
        return log

    def events(self) -> EventStore:
        if self.url is not None:
            from aisle.service.events.postgres import PostgresEventStore

            store: EventStore = PostgresEventStore(self.url, id_check="check")
        else:
            store = EventStore(self.tmp_path / "events.sqlite3", id_check="check")
        store.start()
        self.opened.append(store)
        return store

    def clicks(self) -> ClickFinder:
        if self.url is not None:
            from aisle.service.attribution.postgres import PostgresClickFinder

            return PostgresClickFinder(self.url)
        return ClickFinder(self.tmp_path / "events.sqlite3")


@pytest.fixture(params=["sqlite", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    opened: list = []
    yield Stores(request.param, tmp_path, url, opened)
    for store in reversed(opened):
        try:
            store.close()
        except Exception:  # closed by the test already
            pass


def served(number: int, ts: float, user_key: str | None = "u", experiment: str | None = None) -> Served:
    return Served(
        f"r{number}",
        ts,
        "search",
        ("a", "b"),
        "q",
        user_key,
        "s",
        experiment,
        "v" if experiment else None,
        user_key if experiment else None,
    )


def count_served(log: ServedLog) -> int:
    return int(log.query("SELECT count(*) FROM {served}", {})[0][0])


def test_memory_is_bounded_and_old_rows_are_pruned(stores: Stores) -> None:
    log = stores.served_log(memory_rows=10)
    now = time.time()
    for number in range(1500):
        log.record(served(number, now - (7200 if number < 100 else (1500 - number) * 0.001)))
    log.flush()  # the first flush also prunes: past the retention, then beyond max_rows
    assert len(log._recent) == 10
    assert log.get("r5") is None  # 2 hours old: past the retention
    assert log.get("r700") is not None  # from the store (the newest 1,000 are kept)
    assert log.get("r300") is None
    assert log.get("r1499").position_of("b") == 2
    assert log.prune(now) == 0
    assert count_served(log) == 1000


def test_close_writes_what_was_recorded(stores: Stores) -> None:
    log = stores.served_log(flush_interval_s=60)
    log.record(served(1, time.time(), experiment="exp"))
    log.record(served(2, time.time(), experiment="exp"))
    log.close()
    reopened = stores.served_log()
    assert reopened.get("r1") is not None and reopened.get("r1").items == ("a", "b")
    impressions = reopened.query("SELECT impressions FROM {exposures} WHERE unit_key = :unit", {"unit": "u"})
    assert [int(row[0]) for row in impressions] == [2]


def test_erase_forgets_a_user_everywhere(stores: Stores) -> None:
    log = stores.served_log()
    log.record(served(1, time.time(), user_key="gone", experiment="exp"))
    log.record(served(2, time.time(), user_key="kept", experiment="exp"))
    log.flush()
    assert log.erase("gone", ["s-gone"]) == 2
    assert log.get("r1") is None and log.get("r2") is not None
    store = stores.events()
    now = time.time()
    clicked = [
        StoredEvent("e1", "gone", None, "a", "click", now, now),
        StoredEvent("e2", None, "s-gone", "a", "click", now, now),
        StoredEvent("e3", "kept", None, "a", "click", now, now),
    ]
    store.append(attribute(clicked, [("r2", None, None)] * 3, log, stores.clicks(), WINDOW_S))
    # e2's session becomes the user's: the user's own event links it.
    store.append([StoredEvent("e4", "gone", "s-gone", "b", "view", now, now)])
    store.erase_user("gone")
    assert log.query("SELECT event_key FROM {attributions} ORDER BY event_key", {}) == [("e3",)]


def test_attributions_are_stored_with_their_events_and_reported(stores: Stores) -> None:
    """A click names its response; a purchase days later is attributed to that click (window)."""
    experiment = ExperimentConfig.model_validate(
        {
            "name": "exp",
            "surfaces": ["search"],
            "variants": [{"name": "v", "share": 0.5, "control": True}, {"name": "w", "share": 0.5}],
        }
    )
    log = stores.served_log()
    store = stores.events()
    now = time.time()
    log.record(replace(served(1, now - 60, experiment="exp"), query="espresso machine"))
    log.record(replace(served(2, now - 50, user_key="other"), items=(), query="nothing here"))
    log.flush()
    click = StoredEvent("c1", "u", "s", "b", "click", now - 30, now)
    store.append(attribute([click], [("r1", None, None)], log, stores.clicks(), WINDOW_S))
    purchase = StoredEvent("p1", "u", None, "b", "purchase", now, now)
    [stored] = attribute([purchase], [(None, None, 25.0)], log, stores.clicks(), WINDOW_S)
    assert stored.attribution.via == "window" and stored.attribution.request_id == "r1"
    assert stored.attribution.position == 2 and stored.attribution.experiment == "exp"
    store.append([stored])

    analytics = search_analytics(log)
    assert analytics["searches"] == 2
    assert analytics["top_queries"][0]["query"] == "espresso machine" and analytics["top_queries"][0]["clicks"] == 1
    assert analytics["no_result_queries"] == [{"query": "nothing here", "searches": 1}]
    assert {row["position"]: row["clicks"] for row in analytics["ctr_by_position"]} == {1: 0, 2: 1}

    report = experiment_report(experiment, log, now=now + 1)
    [control] = [variant for variant in report["variants"] if variant["name"] == "v"]
    assert (control["visitors"], control["impressions"], control["clicks"]) == (1, 1, 1)
    assert (control["purchases"], control["revenue"]) == (1, 25.0)
    looks = log.query("SELECT count(*) FROM {looks}", {})[0][0]
    assert int(looks) == 2  # conversion and revenue for the one treatment variant
