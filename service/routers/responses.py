"""Builds the contract's ranked response from hits."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic_core
from fastapi import Request, Response

from aisle.service.engine import Engine, Hit, Listing
from aisle.service.highlight import Matcher, highlight_result


def ranked_body(
    engine: Engine,
    hits: list[Hit],
    request_id: str,
    took_ms: float,
    sources: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
    *,
    extra: dict[str, Any] | None = None,
    matcher: Matcher | None = None,
) -> bytes:
    """The JSON body of a ranked response (``aisle.service.schemas.RankedResponse``).

    Serialized straight from the result dicts: they are built here with the model's fields and
    types and hold no ``None`` (``Engine.result`` leaves blank fields out), so validating them
    against the model again would only repeat work (more than half of the serialisation time);
    ``tests/service`` validates bodies against it. ``labels`` are top-level fields added to the
    body (an experiment's ``experiment`` and ``variant``).
    """
    results = [engine.result(hit) for hit in hits]
    for result, source in zip(results, sources or ()):
        result["source"] = source
    if matcher is not None:
        for result in results:
            result["highlight"] = highlight_result(result, matcher)
    # Inputs are finite (requests, rules and catalogues refuse Infinity and NaN); should a score
    # still overflow, the body stays valid JSON (null) instead of carrying a bare Infinity.
    return pydantic_core.to_json(
        {
            "request_id": request_id,
            "index_version": engine.version,
            "took_ms": took_ms,
            **(extra or {}),
            "results": results,
            **(labels or {}),
        },
        inf_nan_mode="null",
    )


def ranked_response(
    request: Request,
    engine: Engine,
    hits: list[Hit],
    started: float,
    sources: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
    *,
    extra: dict[str, Any] | None = None,
    matcher: Matcher | None = None,
) -> Response:
    """The ranked response, serialized here, in the handler's worker thread.

    ``sources``, when given, is each hit's ``source`` field (recommendations say where a
    result came from); ``extra`` holds further top-level fields (a search's spelling fields);
    with a ``matcher`` every result gets its ``highlight`` (``aisle.service.highlight``).

    A route returning a plain dict has FastAPI validate it against ``response_model`` and render
    it with ``json``, and, for a sync route, in a second hop through the thread pool.
    ``response_model`` still documents the shape.
    """
    took_ms = round((time.perf_counter() - started) * 1000, 3)
    body = ranked_body(engine, hits, request.state.request_id, took_ms, sources, labels, extra=extra, matcher=matcher)
    return Response(body, media_type="application/json")


def listing_response(
    request: Request,
    engine: Engine,
    listing: Listing,
    started: float,
    *,
    facets_asked: bool,
    labels: Mapping[str, str] | None = None,
    extra: dict[str, Any] | None = None,
    matcher: Matcher | None = None,
) -> Response:
    """A search response: the ranked page plus ``total``, ``matched``, when asked ``facets``, the
    spelling fields (``extra``), highlights (with a ``matcher``) and the experiment's ``labels``
    (``aisle.service.schemas.SearchResponse``)."""
    results = [engine.result(hit) for hit in listing.hits]
    if matcher is not None:
        for result in results:
            result["highlight"] = highlight_result(result, matcher)
    body: dict = {
        "request_id": request.state.request_id,
        "index_version": engine.version,
        "took_ms": 0.0,
        "total": listing.total,
        "matched": listing.matched,
        "results": results,
    }
    if facets_asked:
        body["facets"] = listing.facets
    body.update(extra or {})
    body.update(labels or {})
    body["took_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return Response(pydantic_core.to_json(body, inf_nan_mode="null"), media_type="application/json")
