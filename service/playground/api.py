"""Read-only helpers of the playground that the public API has no route for.

They live under ``/playground/`` and out of the OpenAPI document: the page needs a product's
fields for its product page, the catalogue's brands and categories for its filters, the
bought-together items of a product and the published index versions, and pictures stored as
files on the server. A picture is found by item id in the serving index, never by a path from
the request, and is sent only when the file really is a picture.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, RedirectResponse, Response

from aisle.service.deps import WRITE_GUARD, EngineDep
from aisle.service.engine import Engine
from aisle.service.errors import ApiError
from aisle.service.personal.deps import PersonalizationDep

router = APIRouter(prefix="/playground", include_in_schema=False)

ItemId = Annotated[str, PathParam(min_length=1, max_length=256)]

#: Picture formats served, by file signature (the extension alone could lie).
_SIGNATURES = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp"}
#: Rows sampled to find which attributes look like facets (few distinct values) or sort keys.
_ATTRIBUTE_SAMPLE = 2000
_MAX_FACET_VALUES = 40
_KNOWN_FIELDS = {"id", "title", "description", "brand", "category", "price", "in_stock", "image", "margin", "boost"}


def _row(engine: Engine, item_id: str) -> int:
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


def _is_number(value: Any) -> bool:
    """A number, or text that reads as one (CSV attributes arrive as text)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


@router.get("/api/items/{item_id}")
def item(engine: EngineDep, item_id: ItemId) -> dict[str, Any]:
    """One product's fields, for the product page."""
    return {"index_version": engine.version, "item": item_fields(engine, _row(engine, item_id))}


@router.get("/api/items/{item_id}/bought-together")
def bought_together(
    engine: EngineDep,
    personal: PersonalizationDep,
    item_id: ItemId,
    k: Annotated[int, Query(ge=1, le=50)] = 8,
) -> dict[str, Any]:
    """Products that shoppers' events put next to this one (the recommendations' co-occurrence)."""
    _row(engine, item_id)
    results: list[dict[str, Any]] = []
    found = personal.profiles.cooccurrence()
    if found is not None:
        source, pairs = found
        source_row = source.item_row(item_id)
        neighbours = pairs.neighbours(source_row) if source_row is not None else {}
        strongest = max(neighbours.values(), default=1.0)
        for other, weight in sorted(neighbours.items(), key=lambda kv: (-kv[1], kv[0])):
            row = engine.item_row(source.index.items.ids[other])
            if row is None:
                continue
            results.append({**item_fields(engine, row), "weight": round(weight / strongest, 4)})
            if len(results) == k:
                break
    return {"index_version": engine.version, "results": results}


class _SummaryCache:
    """The catalogue summary of the last version asked for (computed once per version)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version: str | None = None
        self._summary: dict[str, Any] = {}

    def get(self, engine: Engine) -> dict[str, Any]:
        with self._lock:
            if self._version != engine.version:
                self._summary = catalogue_summary(engine)
                self._version = engine.version
            return self._summary


_summaries = _SummaryCache()


def summary_of(engine: Engine) -> dict[str, Any]:
    """The catalogue summary of ``engine``'s version (computed once per version)."""
    return _summaries.get(engine)


def facet_fields(summary: dict[str, Any]) -> list[str]:
    """The fields the page asks facets for: category, brand, then the facetable attributes.

    Mirrors ``facetFields`` in ``static/js/views/search.js`` (the first search of a shared link
    is run here and reused by the page).
    """
    attributes = [name for name, role in summary.get("attributes", {}).items() if role.get("facetable")]
    return ["category", "brand", *attributes]


def _named_counts(codes: np.ndarray, label_of_row: Any) -> list[dict[str, Any]]:
    """Counts per code, each named as written in the code's first row, largest first."""
    values, first_rows, counts = np.unique(codes, return_index=True, return_counts=True)
    named = [(label_of_row(int(row)), int(count)) for row, count in zip(first_rows, counts)]
    return [{"name": name, "count": count} for name, count in sorted(named, key=lambda nc: (-nc[1], nc[0])) if name]


def _attribute_roles(engine: Engine) -> dict[str, dict[str, Any]]:
    """Which attributes can be faceted and sorted on: the version's schema when it has one (a
    build with field roles), else guessed from a sample (few distinct values, or numbers)."""
    items = engine.index.items
    schema = getattr(items, "schema", None)
    if schema is not None:
        return {
            spec.name: {"facetable": bool(spec.facetable), "sortable": bool(spec.sortable)}
            for spec in schema.fields
            if not spec.builtin and (spec.facetable or spec.sortable)
        }
    rows = np.unique(np.linspace(0, len(items) - 1, num=min(len(items), _ATTRIBUTE_SAMPLE)).astype(np.int64))
    seen: dict[str, Counter[str]] = {}
    numeric: dict[str, bool] = {}
    for row in rows.tolist():
        for name, value in items.to_result(row).items():
            if name in _KNOWN_FIELDS or isinstance(value, (dict, list)):
                continue
            seen.setdefault(name, Counter())[str(value)] += 1
            numeric[name] = numeric.get(name, True) and _is_number(value)
    roles = {}
    for name, values in seen.items():
        present = sum(values.values())
        if present < 0.2 * len(rows):
            continue
        roles[name] = {
            "facetable": not numeric[name] and len(values) <= _MAX_FACET_VALUES,
            "sortable": numeric[name],
        }
    return roles


def catalogue_summary(engine: Engine) -> dict[str, Any]:
    """Brands and category paths with their product counts, and the attributes' likely roles."""
    items = engine.index.items
    return {
        "index_version": engine.version,
        "items": len(items),
        "categories": _named_counts(items.category_codes, items.category),
        "brands": _named_counts(items.brand_codes, items.brand),
        "attributes": _attribute_roles(engine),
    }


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


def _picture_type(path: Path) -> str | None:
    """The picture's media type from its first bytes, or None if it is not a picture we serve."""
    if path.suffix.lower() not in _SUFFIXES or not path.is_file():
        return None
    with path.open("rb") as handle:
        head = handle.read(12)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return next((media for signature, media in _SIGNATURES if head.startswith(signature)), None)


def picture_path(engine: Engine, image: str) -> Path:
    """Where a catalogue's picture is on this server.

    A version may keep the picture as the catalogue gave it (a path relative to the catalogue
    file): it is then found next to the catalogue the manifest names as the version's source.
    """
    path = Path(image).expanduser()
    if path.is_absolute():
        return path
    source = (engine.index.manifest.get("source") or {}).get("catalog")
    return (Path(source).expanduser().parent if source else Path()) / path


@router.get("/images/{item_id}")
def picture(engine: EngineDep, item_id: ItemId) -> Response:
    """The product's picture: its URL (redirect) or its file, found through the serving index only."""
    image = engine.index.items.image(_row(engine, item_id))
    if image.startswith(("https://", "http://")):
        return RedirectResponse(image, status_code=307)
    path = picture_path(engine, image) if image else None
    media = _picture_type(path) if path is not None else None
    if path is None or media is None:
        raise ApiError(404, f"item '{item_id}' has no picture file")
    return FileResponse(
        path,
        media_type=media,
        headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
    )
