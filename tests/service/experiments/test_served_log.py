"""The served-response log: bounded memory and retention, durability at close, erasure."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from aisle.service.attribution.records import ATTRIBUTION_SCHEMA, Attribution, erase_attributions, insert_attribution
from aisle.service.attribution.served import Served, ServedLog


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


def test_memory_is_bounded_and_old_rows_are_pruned(tmp_path: Path) -> None:
    log = ServedLog(tmp_path / "served.sqlite3", retention_s=3600, max_rows=1000, memory_rows=10)
    now = time.time()
    for number in range(1500):
        log.record(served(number, now - (7200 if number < 100 else (1500 - number) * 0.001)))
    log.flush()  # the first flush also prunes: past the retention, then beyond max_rows
    assert len(log._recent) == 10
    assert log.get("r5") is None  # 2 hours old: past the retention
    assert log.get("r700") is not None  # from the file (the newest 1,000 are kept)
    assert log.get("r300") is None
    assert log.get("r1499").position_of("b") == 2
    assert log.prune(now) == 0
    with sqlite3.connect(tmp_path / "served.sqlite3") as conn:
        assert conn.execute("SELECT count(*) FROM served").fetchone()[0] == 1000
    log.close()


def test_close_writes_what_was_recorded(tmp_path: Path) -> None:
    log = ServedLog(tmp_path / "served.sqlite3", retention_s=3600, max_rows=1000, flush_interval_s=60)
    log.record(served(1, time.time(), experiment="exp"))
    log.record(served(2, time.time(), experiment="exp"))
    log.close()
    reopened = ServedLog(tmp_path / "served.sqlite3", retention_s=3600, max_rows=1000)
    assert reopened.get("r1") is not None
    with sqlite3.connect(tmp_path / "served.sqlite3") as conn:
        assert conn.execute("SELECT impressions FROM exposures WHERE unit_key = 'u'").fetchone()[0] == 2
    reopened.close()


def test_erase_forgets_a_user_everywhere(tmp_path: Path) -> None:
    log = ServedLog(tmp_path / "served.sqlite3", retention_s=3600, max_rows=1000)
    log.record(served(1, time.time(), user_key="gone", experiment="exp"))
    log.record(served(2, time.time(), user_key="kept", experiment="exp"))
    log.flush()
    assert log.erase("gone", ["s-gone"]) == 2
    assert log.get("r1") is None and log.get("r2") is not None
    log.close()
    with sqlite3.connect(tmp_path / "events.sqlite3") as conn:
        conn.executescript(ATTRIBUTION_SCHEMA)
        for key, user, session in (("e1", "gone", None), ("e2", None, "s-gone"), ("e3", "kept", None)):
            insert_attribution(conn, key, user, session, "click", "a", 1.0, Attribution(via="none"))
        assert erase_attributions(conn, "gone", ["s-gone"]) == 2
        assert conn.execute("SELECT event_key FROM attributions").fetchall() == [("e3",)]
