"""Builds the contract's ranked response from hits."""

from __future__ import annotations

import time
from typing import Any

from fastapi import Request

from service.engine import Engine, Hit


def ranked_response(request: Request, engine: Engine, hits: list[Hit], started: float) -> dict[str, Any]:
    return {
        "request_id": request.state.request_id,
        "index_version": engine.version,
        "took_ms": round((time.perf_counter() - started) * 1000, 3),
        "results": [engine.result(hit) for hit in hits],
    }
