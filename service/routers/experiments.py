"""``GET /experiments``, ``GET /experiments/{name}`` and ``GET /analytics/search`` (API key)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from aisle.service.attribution.analytics import search_analytics
from aisle.service.deps import WRITE_GUARD
from aisle.service.errors import ApiError
from aisle.service.events.store import EventStoreUnavailable
from aisle.service.experiments.deps import ExperimentsDep
from aisle.service.experiments.report import experiment_report
from aisle.service.json_body import FastJsonRoute

router = APIRouter(route_class=FastJsonRoute, tags=["experiments"], dependencies=WRITE_GUARD)


@contextmanager
def _reading() -> Iterator[None]:
    """A database that cannot be read (PostgreSQL down) answers 503, like the event intake."""
    try:
        yield
    except EventStoreUnavailable as exc:
        raise ApiError(503, f"{exc}; retry later", "storage_unavailable", headers={"Retry-After": "1"}) from None


@router.get("/experiments")
def list_experiments(request: Request, experiments: ExperimentsDep) -> dict:
    """The configured experiments with their status, surfaces and variants."""
    import time

    now = time.time()
    return {
        "experiments": [
            {
                "name": config.name,
                "running": config.running(now),
                "surfaces": list(config.surfaces),
                "variants": [{"name": v.name, "share": v.share, "control": v.control} for v in config.variants],
            }
            for config in experiments.configs
        ],
        "request_id": request.state.request_id,
    }


@router.get("/experiments/{name}")
def experiment(
    request: Request,
    experiments: ExperimentsDep,
    name: Annotated[str, Path(min_length=1, max_length=64)],
) -> dict:
    """Per variant: visitors, impressions, clicks, add-to-carts, purchases, revenue; CTR,
    add-to-cart rate, conversion and revenue per visitor with 95 % intervals; lift over control
    with fixed-horizon and sequential p-values; the sample-ratio check; segments."""
    config = experiments.config(name)
    if config is None:
        known = [experiment.name for experiment in experiments.configs]
        raise ApiError(404, f"unknown experiment '{name}'; configured: {known}")
    experiments.served.flush()  # this worker's latest responses count too
    with _reading():
        report = experiment_report(config, experiments.served)
    report["request_id"] = request.state.request_id
    return report


@router.get("/analytics/search")
def analytics_search(
    request: Request,
    experiments: ExperimentsDep,
    days: Annotated[
        float | None, Query(gt=0, le=3650, description="Only the last DAYS (default: all retained).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> dict:
    """Top queries, queries with no result, CTR by query and by position."""
    experiments.served.flush()
    with _reading():
        body = search_analytics(experiments.served, days=days, limit=limit)
    body["request_id"] = request.state.request_id
    return body
