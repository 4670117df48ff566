"""Search analytics from the served-response log and the attributed clicks.

Over the retained window (``served_retention_days``) or the last ``days``: the top queries
with their searches, zero-result searches, clicks and CTR; the queries that found nothing; and
CTR by position (clicks at position p / searches that showed a p-th result), which shows how
much of a click is the position rather than the product. Queries are stored case-folded with
whitespace collapsed, so ``Espresso  Machine`` and ``espresso machine`` are one query.
"""

from __future__ import annotations

import time
from typing import Any

from aisle.service.attribution.served import ServedLog
from aisle.service.experiments.stats import share_estimate

#: Positions reported in ``ctr_by_position``.
MAX_POSITION = 20

# One SQL text for both backends (ServedLog.query names the tables): no boolean sums, no ATTACH.
_POSITION_CLICKS = (
    "SELECT a.position, count(*) FROM {attributions} a JOIN {served} s ON s.request_id = a.request_id"
    " WHERE a.type = 'click' AND a.via = 'request' AND s.surface = 'search' AND s.ts >= :since"
    " AND a.position BETWEEN 1 AND :positions GROUP BY a.position"
)
_SEARCHES = "SELECT count(*) FROM {served} WHERE surface = 'search' AND ts >= :since"
_TOP = (
    "SELECT s.query, count(*), sum(CASE WHEN s.results = 0 THEN 1 ELSE 0 END), coalesce(sum(c.clicks), 0),"
    " sum(CASE WHEN c.clicks > 0 THEN 1 ELSE 0 END)"
    " FROM {served} s LEFT JOIN (SELECT request_id, count(*) AS clicks FROM {attributions}"
    " WHERE type = 'click' AND request_id IS NOT NULL GROUP BY request_id) c ON c.request_id = s.request_id"
    " WHERE s.surface = 'search' AND s.ts >= :since AND s.query IS NOT NULL"
    " GROUP BY s.query ORDER BY count(*) DESC, s.query LIMIT :limit"
)
_NO_RESULT = (
    "SELECT query, count(*) FROM {served} WHERE surface = 'search' AND ts >= :since AND results = 0"
    " AND query IS NOT NULL GROUP BY query ORDER BY count(*) DESC, query LIMIT :limit"
)
_SHOWN = (
    "WITH RECURSIVE n(p) AS (SELECT 1 UNION ALL SELECT p + 1 FROM n WHERE p < :positions)"
    " SELECT p, (SELECT count(*) FROM {served} WHERE surface = 'search' AND ts >= :since AND results >= p) FROM n"
)


def search_analytics(served: ServedLog, *, days: float | None = None, limit: int = 20) -> dict:
    """Top queries, queries without results, CTR by query and by position (every replica's, on PostgreSQL)."""
    since = time.time() - days * 86400 if days is not None else 0.0
    params: dict[str, Any] = {"since": since, "limit": limit, "positions": MAX_POSITION}
    position_clicks = served.query(_POSITION_CLICKS, params)
    searches = int(served.query(_SEARCHES, params)[0][0])
    top = served.query(_TOP, params)
    no_result = served.query(_NO_RESULT, params)
    shown = {int(p): int(count) for p, count in served.query(_SHOWN, params)}
    clicks_at = {int(position): int(count) for position, count in position_clicks}
    return {
        "since": since,
        "searches": searches,
        "top_queries": [
            {
                "query": query,
                "searches": int(count),
                "no_result": int(zero or 0),
                "clicks": int(clicks or 0),
                # Share of searches with a click (each search is one trial), with its interval.
                "ctr": share_estimate(int(clicked or 0), int(count)).as_dict(),
            }
            for query, count, zero, clicks, clicked in top
        ],
        "no_result_queries": [{"query": query, "searches": int(count)} for query, count in no_result],
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
