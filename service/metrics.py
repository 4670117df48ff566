"""Prometheus metrics of one app, in the app's own registry, served at ``GET /metrics``.

Each app gets its own ``CollectorRegistry`` (never the process-global default) so that tests can
create many apps in one process. Metric names:

* ``aisle_request_duration_seconds{method,route}``: latency histogram per route template.
* ``aisle_requests_total{method,route,status}``: responses by status code.
* ``aisle_requests_in_flight``: requests being handled now.
* ``aisle_index_info{version}`` (always 1) and ``aisle_index_items``: the version being served,
  read from the index holder at scrape time so they can never be stale.
* ``aisle_query_cache_hits``, ``aisle_query_cache_misses``, ``aisle_query_cache_entries``: the
  query-encoding cache of the version being served (it starts empty at each swap).
* ``aisle_index_swaps_total`` and ``aisle_index_refusals_total``: hot swaps done and refused.
* ``aisle_events_accepted_total``, ``aisle_events_duplicates_total``: events durably stored and
  events re-sent with a known ``event_id`` by this process; ``aisle_events_stored``: events in
  the store (across restarts), read at scrape time.
* ``aisle_storage_errors_total``: requests refused with 503 because a write found the disk full
  or the database locked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

#: Seconds; dense below 50 ms where search latency lives, up to the longest request budget.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: Route label of requests that matched no route (bounded cardinality: never the raw path).
UNMATCHED_ROUTE = "<unmatched>"
#: Method labels kept as they are; any other method (a client may send any token) is "OTHER".
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "OTHER"


class _StateCollector(Collector):
    """Reads the serving version, its size and the stored event count at scrape time."""

    def __init__(self, holder_of: Callable[[], Any], stored_events_of: Callable[[], int | None]) -> None:
        self._holder_of = holder_of
        self._stored_events_of = stored_events_of

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "aisle_index_info", "Index version being served (value is always 1).", labels=["version"]
        )
        items = GaugeMetricFamily("aisle_index_items", "Products in the index version being served.")
        holder = self._holder_of()
        cache = None
        if holder is not None and holder.loaded:
            engine = holder.engine
            info.add_metric([engine.version], 1.0)
            items.add_metric([], float(len(engine.index)))
            cache = engine.query_vectors.stats()
        yield info
        yield items
        if cache is not None:
            for name, help_text in (
                ("hits", "Query encodings answered from the cache since this version was loaded."),
                ("misses", "Query encodings computed since this version was loaded."),
                ("entries", "Query encodings cached for the version being served."),
            ):
                yield GaugeMetricFamily(f"aisle_query_cache_{name}", help_text, value=float(cache[name]))
        try:
            stored = self._stored_events_of()
        except Exception as exc:  # a scrape must not fail because the store is busy or closed
            log.warning("cannot read the stored event count: %s", exc)
            stored = None
        if stored is not None:
            yield GaugeMetricFamily("aisle_events_stored", "Events in the durable event store.", value=float(stored))


class ServiceMetrics:
    """The metrics of one app and the calls that update them."""

    def __init__(
        self,
        holder_of: Callable[[], Any] = lambda: None,
        stored_events_of: Callable[[], int | None] = lambda: None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_latency = Histogram(
            "aisle_request_duration_seconds",
            "Request latency by route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "aisle_requests",
            "Responses by route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.in_flight = Gauge("aisle_requests_in_flight", "Requests being handled.", registry=self.registry)
        self.index_swaps = Counter(
            "aisle_index_swaps", "Index versions swapped in while serving.", registry=self.registry
        )
        self.index_refusals = Counter(
            "aisle_index_refusals", "Index versions refused at reload (invalid or corrupt).", registry=self.registry
        )
        self.events_accepted = Counter("aisle_events_accepted", "Events durably stored.", registry=self.registry)
        self.events_duplicates = Counter(
            "aisle_events_duplicates", "Events re-sent with an event_id already stored.", registry=self.registry
        )
        self.storage_errors = Counter(
            "aisle_storage_errors",
            "Requests refused with 503 because storage was full or locked.",
            registry=self.registry,
        )
        self.registry.register(_StateCollector(holder_of, stored_events_of))

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Records one finished request's latency and status (labels from bounded sets only)."""
        if method not in KNOWN_METHODS:
            method = OTHER_METHOD
        self.request_latency.labels(method, route).observe(seconds)
        self.requests.labels(method, route, str(status)).inc()

    def record_events(self, accepted: int, duplicates: int) -> None:
        """Counts one stored batch; call it after the batch is durable."""
        if accepted:
            self.events_accepted.inc(accepted)
        if duplicates:
            self.events_duplicates.inc(duplicates)

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format."""
        return generate_latest(self.registry)


def metrics_of(request: Request) -> ServiceMetrics:
    """The metrics of the app serving ``request``."""
    return request.app.state.metrics


def record_events(request: Request, accepted: int, duplicates: int) -> None:
    """For the events route: counts a batch once it is durably stored."""
    metrics_of(request).record_events(accepted, duplicates)


router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format.",
            "content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}},
        }
    },
)
def metrics(request: Request) -> Response:
    """Metrics for Prometheus: latency per route, responses by status, index version and size, events."""
    return Response(metrics_of(request).exposition(), media_type=CONTENT_TYPE_LATEST)
