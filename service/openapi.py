"""Completes the generated OpenAPI document: error envelopes and the API key, on every operation.

FastAPI documents a 422 with its own ``HTTPValidationError`` body, which this service never
sends, and knows nothing of the errors raised by middleware (413, 503 time budget) or guards
(401). Rather than relying on every router to declare them, the document is post-processed
here from the routes themselves, so a new router is documented correctly without effort and
schema-driven clients (and the schemathesis suite) see exactly what the service answers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from aisle.service.deps import API_KEY_HEADER, is_write_guarded
from aisle.service.errors import ErrorResponse
from aisle.service.routes import api_routes

_MARK = "x-aisle-error-envelopes"
_SCHEME = "ApiKeyHeader"
_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")

_DESCRIPTIONS = {
    "400": "Malformed request (e.g. a bad Content-Length).",
    "401": "Missing or wrong API key (X-API-Key header).",
    "404": "Unknown item, user or index version.",
    "409": "The new index version is invalid; the previous one keeps serving.",
    "413": "Request body over the size limit.",
    "422": "Invalid parameters or body: the message names each bad field.",
    "503": "Not ready, over its time budget, or storage unavailable; retry after Retry-After seconds.",
}


def _error(status: str) -> dict[str, Any]:
    return {"description": _DESCRIPTIONS[status], "content": {"application/json": {"schema": _ERROR_REF}}}


def _statuses(operation: dict[str, Any], route: Any, path: str) -> list[str]:
    statuses = ["400", "503"]
    if operation.get("requestBody"):
        statuses += ["413", "422"]
    if operation.get("parameters"):
        statuses.append("422")
    if "{" in path:
        statuses.append("404")
    if route is not None and is_write_guarded(route):
        statuses.append("401")
    return statuses


def add_error_envelopes(schema: dict[str, Any], app: FastAPI) -> dict[str, Any]:
    """Adds the envelope responses, the API key scheme and drops FastAPI's unused 422 schemas."""
    by_operation = {(route.path, method.lower()): route for route in api_routes(app) for method in route.methods}
    components = schema.setdefault("components", {})
    definitions = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    component_schemas = components.setdefault("schemas", {})
    component_schemas.update(definitions.pop("$defs", {}))
    component_schemas["ErrorResponse"] = definitions
    components.setdefault("securitySchemes", {})[_SCHEME] = {
        "type": "apiKey",
        "in": "header",
        "name": API_KEY_HEADER,
        "description": "Required on write and admin routes when the service has an API key configured.",
    }
    for path, item in schema.get("paths", {}).items():
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            route = by_operation.get((path, method))
            responses = operation.setdefault("responses", {})
            for status in _statuses(operation, route, path):
                # A route's own declaration wins (e.g. /health's 503 body), except FastAPI's
                # default 422, whose HTTPValidationError body this service never sends.
                if status not in responses or status == "422":
                    responses[status] = _error(status)
            if route is not None and is_write_guarded(route):
                operation["security"] = [{_SCHEME: []}]
    for unused in ("HTTPValidationError", "ValidationError"):
        component_schemas.pop(unused, None)
    schema[_MARK] = True
    return schema


def install_openapi(app: FastAPI) -> None:
    """Wraps ``app.openapi`` so the generated (and cached) document is completed once."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        if not schema.get(_MARK):
            add_error_envelopes(schema, app)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
