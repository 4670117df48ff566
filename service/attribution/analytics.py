"""Search analytics from the served-response log and the attributed clicks.

Over the retained window (``served_retention_days``) or the last ``days``: the top queries
with their searches, zero-result searches, clicks and CTR; the queries that found nothing; and
CTR by position (clicks at position p / searches that showed a p-th result), which shows how
much of a click is the position rather than the product. Queries are stored case-folded with
whitespace collapsed, so ``Espresso  Machine`` and ``espresso machine`` are one query.
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from aisle.service.experiments.stats import share_estimate

#: Positions reported in ``ctr_by_position``.
MAX_POSITION = 20


def search_analytics(served_path: Path, events_path: Path, *, days: float | None = None, limit: int = 20) -> dict:
    """Top queries, queries without results, CTR by query and by position."""
    since = time.time() - days * 86400 if days is not None else 0.0
    empty: dict[str, Any] = {"searches": 0, "top_queries": [], "no_result_queries": [], "ctr_by_position": []}
    if not served_path.exists():
        return {"since": since, **empty}
    with closing(sqlite3.connect(served_path.resolve().as_uri() + "?mode=ro", uri=True)) as conn:
        conn.execute("PRAGMA busy_timeout=5000")
        if events_path.exists():
            conn.execute("ATTACH DATABASE ? AS ev", (events_path.resolve().as_uri() + "?mode=ro",))
            clicks_sql = (
                "(SELECT count(*) FROM ev.attributions a WHERE a.request_id = s.request_id AND a.type = 'click')"
            )
            position_clicks = conn.execute(
                "SELECT a.position, count(*) FROM ev.attributions a JOIN served s ON s.request_id = a.request_id"
                " WHERE a.type = 'click' AND a.via = 'request' AND s.surface = 'search' AND s.ts >= ?"
                " AND a.position BETWEEN 1 AND ? GROUP BY a.position",
                (since, MAX_POSITION),
            ).fetchall()
        else:
            clicks_sql, position_clicks = "0", []
        searches = conn.execute(
            "SELECT count(*) FROM served WHERE surface = 'search' AND ts >= ?", (since,)
        ).fetchone()[0]
        top = conn.execute(
            f"SELECT s.query, count(*), sum(s.results = 0), sum({clicks_sql}), sum({clicks_sql} > 0)"
            " FROM served s WHERE s.surface = 'search' AND s.ts >= ? AND s.query IS NOT NULL"
            " GROUP BY s.query ORDER BY count(*) DESC, s.query LIMIT ?",
            (since, limit),
        ).fetchall()
        no_result = conn.execute(
            "SELECT query, count(*) FROM served WHERE surface = 'search' AND ts >= ? AND results = 0"
            " AND query IS NOT NULL GROUP BY query ORDER BY count(*) DESC, query LIMIT ?",
            (since, limit),
        ).fetchall()
        shown = dict(
            conn.execute(
                "SELECT p, (SELECT count(*) FROM served WHERE surface = 'search' AND ts >= ? AND results >= p)"
                " FROM (WITH RECURSIVE n(p) AS (SELECT 1 UNION ALL SELECT p + 1 FROM n WHERE p < ?) SELECT p FROM n)",
                (since, MAX_POSITION),
            ).fetchall()
        )
    clicks_at = dict(position_clicks)
    return {
        "since": since,
        "searches": searches,
        "top_queries": [
            {
                "query": query,
                "searches": count,
                "no_result": int(zero or 0),
                "clicks": int(clicks or 0),
                # Share of searches with a click (each search is one trial), with its interval.
                "ctr": share_estimate(int(clicked or 0), count).as_dict(),
            }
            for query, count, zero, clicks, clicked in top
        ],
        "no_result_queries": [{"query": query, "searches": count} for query, count in no_result],
        "ctr_by_position": [
            {
                "position": position,
                "impressions": shown[position],
                "clicks": int(clicks_at.get(position, 0)),
                "ctr": share_estimate(min(int(clicks_at.get(position, 0)), shown[position]), shown[position]).as_dict(),
            }
            for position in sorted(shown)
            if shown[position] > 0
        ],
    }
