"""Read-only helpers of the playground that the public API has no route for.

They live under ``/playground/api/`` and out of the OpenAPI document: a product's fields for the
product page, the catalogue's brands and categories for the filters (``catalogue``), the
bought-together items of a product and the published index versions.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam

from aisle.service.deps import WRITE_GUARD, EngineDep
from aisle.service.engine import Engine
from aisle.service.errors import ApiError
from aisle.service.json_body import FastJsonRoute
from aisle.service.personal.deps import PersonalizationDep
from aisle.service.playground.catalogue import summary_of

router = APIRouter(route_class=FastJsonRoute, prefix="/playground", include_in_schema=False)

ItemId = Annotated[str, PathParam(min_length=1, max_length=256)]


def row_or_404(engine: Engine, item_id: str) -> int:
    """The item's row in ``engine``'s version; 404 naming the version when it has no such item."""
    row = engine.item_row(item_id)
    if row is None:
        raise ApiError(404, f"unknown item id '{item_id}' in index version {engine.version}")
    return row


#: Catalogue fields that stay private (shared/CONTRACT.md, "Catalogue fields").
_PRIVATE_FIELDS = ("margin", "boost")


def item_fields(engine: Engine, row: int) -> dict[str, Any]:
    """A product's public fields as the ranked responses show them, without a score."""
    fields = {"id": engine.index.items.ids[row], **engine.index.items.to_result(row)}
    for name in _PRIVATE_FIELDS:
        fields.pop(name, None)
    return fields


@router.get("/api/items/{item_id}")
def item(engine: EngineDep, item_id: ItemId) -> dict[str, Any]:
    """One product's fields, for the product page."""
    return {"index_version": engine.version, "item": item_fields(engine, row_or_404(engine, item_id))}


@router.get("/api/items/{item_id}/bought-together")
def bought_together(
    engine: EngineDep,
    personal: PersonalizationDep,
    item_id: ItemId,
    k: Annotated[int, Query(ge=1, le=50)] = 8,
) -> dict[str, Any]:
    """Products that shoppers' events put next to this one (the recommendations' co-occurrence)."""
    row_or_404(engine, item_id)
    results: list[dict[str, Any]] = []
    found = personal.profiles.cooccurrence()
    if found is not None:
        source, pairs = found  # the version whose rows the pairs use
        source_row = source.items.row_of.get(item_id)
        neighbours = pairs.neighbours(source_row) if source_row is not None else {}
        strongest = max(neighbours.values(), default=1.0)
        for other, weight in sorted(neighbours.items(), key=lambda kv: (-kv[1], kv[0])):
            row = engine.item_row(source.items.ids[other])
            if row is None:
                continue
            results.append({**item_fields(engine, row), "weight": round(weight / strongest, 4)})
            if len(results) == k:
                break
    return {"index_version": engine.version, "results": results}


@router.get("/api/catalogue")
def catalogue(engine: EngineDep) -> dict[str, Any]:
    """What the filters can offer before the service has facets: counts over the whole catalogue."""
    return summary_of(engine)


@router.get("/api/versions", dependencies=WRITE_GUARD)
def versions(request: Request) -> dict[str, Any]:
    """The published index versions, newest first, and which one is serving (API key when set)."""
    holder = request.app.state.holder
    refusal = holder.last_refusal
    listed = sorted(holder.store.list(), key=lambda info: info.name, reverse=True)
    return {
        "serving": holder.engine.version if holder.loaded else None,
        "refused": refusal.path.name if refusal is not None else None,
        "versions": [
            {
                "name": info.name,
                "created": info.created,
                "items": info.items,
                "model": info.model,
                "current": info.current,
            }
            for info in listed
        ],
    }
