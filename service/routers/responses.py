"""Builds the contract's ranked response from hits."""

from __future__ import annotations

import time
from collections.abc import Sequence

from fastapi import Request, Response

from service.engine import Engine, Hit
from service.schemas import RankedResponse


def ranked_response(
    request: Request, engine: Engine, hits: list[Hit], started: float, sources: Sequence[str] | None = None
) -> Response:
    """The ranked response, validated and serialized here, in the handler's worker thread.

    ``sources``, when given, is each hit's ``source`` field (recommendations say where a
    result came from).

    A route returning a plain dict has FastAPI validate it against ``response_model`` again and
    render it with ``json`` (90 µs against 30 for 10 results), and, for a sync route, in a second
    hop through the thread pool. ``response_model`` still documents the shape.
    """
    results = [engine.result(hit) for hit in hits]
    for result, source in zip(results, sources or ()):
        result["source"] = source
    body = RankedResponse.model_validate({
        "request_id": request.state.request_id,
        "index_version": engine.version,
        "took_ms": round((time.perf_counter() - started) * 1000, 3),
        "results": results,
    })
    return Response(body.model_dump_json(exclude_none=True), media_type="application/json")
