"""``aisle recommend``: recommendations for many users at once, as JSON Lines, for campaigns.

E-mail and push campaigns need a list per customer, computed offline from the same profiles,
rules and defaults the service serves. User ids are stored only as keyed hashes, so the shop
passes the ids it wants lists for (one per line); each output line is
``{"user_id", "index_version", "results": [...]}`` with the results exactly as
``GET /users/{id}/recommendations`` gives them. Lines are written as they are computed (a
campaign tool can start reading at once); written to a file, the file appears complete or not
at all (temporary file, then rename).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from aisle.index.filters import Filters
from aisle.index.storage import atomic_file
from aisle.service.engine import Engine
from aisle.service.personal.collaborative import CollaborativeScorer
from aisle.service.personal.context import user_context
from aisle.service.personal.profiles import ProfileService
from aisle.service.personal.recommend import PageContext, RecommendationSource, recommendation_rules
from aisle.service.ranking.rules import RuleBook

MAX_USER_ID_CHARS = 256


def read_user_ids(lines: Iterable[str], source: str) -> Iterator[str]:
    """User ids, one per line (blank lines skipped).

    Raises:
        ValueError: names the line of an id longer than the API accepts.
    """
    for number, line in enumerate(lines, start=1):
        user_id = line.strip()
        if not user_id:
            continue
        if len(user_id) > MAX_USER_ID_CHARS:
            raise ValueError(f"{source}, line {number}: user id longer than {MAX_USER_ID_CHARS} characters")
        yield user_id


def recommendation_lines(
    engine: Engine,
    profiles: ProfileService,
    rule_book: RuleBook,
    user_ids: Iterable[str],
    k: int,
    filters: Filters | None = None,
    collaborative: CollaborativeScorer | None = None,
) -> Iterator[str]:
    """One JSON line per user: what ``GET /users/{id}/recommendations?k=`` would answer.

    ``collaborative``: the served model's collaborative vectors, as the service uses them.
    """
    config = profiles.config
    for user_id in user_ids:
        view = profiles.view(user_id, None)
        source = RecommendationSource.for_request(profiles, config, view, PageContext())
        source.collaborative = collaborative
        hits, sources = engine.recommend(
            source,
            k,
            filters=filters,
            ctx=user_context(view, engine, config.purchase_window_s),
            rules=recommendation_rules(
                lambda override: rule_book.for_surface("recommendations", override), config, view, engine
            ),
        )
        results = []
        for hit, name in zip(hits, sources):
            result = engine.result(hit)
            result["source"] = name
            results.append(result)
        yield json.dumps({"user_id": user_id, "index_version": engine.version, "results": results}) + "\n"


@contextmanager
def output(path: Path | None) -> Iterator[IO[str]]:
    """stdout, or a temporary file next to ``path`` renamed onto it once everything is written."""
    if path is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    # Shoppers' recommendations are their data: owner-only, like the event database.
    with atomic_file(path, text=True, mode=0o600) as handle:
        yield handle
