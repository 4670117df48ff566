"""The live catalogue's routes: ``PUT``/``PATCH``/``DELETE /items/{id}``, ``POST /items/batch``, ``GET /items/{id}``.

A write is answered once it is durable in the change log (``aisle.index.changes``); by then this
worker serves it, and every other worker within its poll interval (``aisle.service.live``).
``change_id`` (query parameter, or the ``Idempotency-Key`` header; in a batch, per change)
makes a change idempotent: sent again, it is a duplicate and changes nothing.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, Path, Query, Request
from pydantic import BaseModel, Field

from aisle.index.catalog import CatalogError, Product, product_from_record
from aisle.index.changes import Change, ChangeLogError, ChangeRefused, validate_patch
from aisle.service.deps import WRITE_GUARD, EngineDep, SettingsDep
from aisle.service.errors import ApiError, ErrorResponse
from aisle.service.json_body import FastJsonRoute
from aisle.service.live import LiveCatalog

router = APIRouter(route_class=FastJsonRoute, tags=["catalogue"])

ItemId = Annotated[str, Path(min_length=1, max_length=256, description="The product's id.")]
ChangeId = Annotated[
    str | None,
    Query(min_length=1, max_length=256, description="Idempotency key: the same change sent again is stored once."),
]
IdempotencyKey = Annotated[str | None, Header(min_length=1, max_length=256)]


class ChangeResponse(BaseModel):
    """What a write stored."""

    id: str | None = Field(None, description="The product changed (single-item routes).")
    status: Literal["accepted", "duplicate"] | None = Field(None, description="Single-item routes.")
    accepted: int = Field(description="Changes stored now.")
    duplicates: int = Field(description="Changes whose change_id was already stored (nothing changed).")
    sequence: int = Field(description="The change log position of the last stored change (0: none).")
    visible: bool = Field(description="Whether this worker already serves the change (always within a second).")


class BatchChange(BaseModel):
    """One change of a batch."""

    op: Literal["upsert", "patch", "delete"]
    id: str | None = Field(None, min_length=1, max_length=256, description="The product (upsert: or item.id).")
    item: dict[str, Any] | None = Field(None, description="upsert: the whole product, as a catalogue row.")
    fields: dict[str, Any] | None = Field(None, description="patch: the fields to set.")
    change_id: str | None = Field(None, min_length=1, max_length=256)


class BatchRequest(BaseModel):
    changes: list[BatchChange] = Field(min_length=1)


def _live(request: Request) -> LiveCatalog:
    live = getattr(request.app.state, "live", None)
    if live is None:
        raise ApiError(503, "the live catalogue is not ready yet", headers={"Retry-After": "1"})
    return live


def _problems(exc: CatalogError, prefix: str = "") -> str:
    if not exc.problems:
        return str(exc)
    return "; ".join(f"{prefix}field '{problem.field}': {problem.message}" for problem in exc.problems)


def _product(item_id: str, record: dict[str, Any], prefix: str = "") -> Product:
    given = record.get("id")
    if given is not None and str(given).strip() != item_id:
        raise ApiError(422, f"{prefix}field 'id': '{given}' differs from the product id '{item_id}' of the path")
    try:
        return product_from_record({**record, "id": item_id})
    except CatalogError as exc:
        raise ApiError(422, _problems(exc, prefix)) from None


def _patch(fields: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    try:
        return validate_patch(fields)
    except CatalogError as exc:
        raise ApiError(422, _problems(exc, prefix)) from None


def _store(live: LiveCatalog, changes: list[Change]) -> tuple[int, int, int, bool]:
    try:
        receipt, visible = live.submit(changes)
    except ChangeRefused as exc:
        raise ApiError(exc.status, str(exc), exc.code) from None
    except ChangeLogError as exc:
        raise ApiError(503, str(exc), "change_log_unavailable", headers={"Retry-After": "1"}) from None
    return len(changes) - receipt.duplicates, receipt.duplicates, receipt.last, visible


def _single(item_id: str, stored: tuple[int, int, int, bool]) -> ChangeResponse:
    accepted, duplicates, sequence, visible = stored
    status: Literal["accepted", "duplicate"] = "duplicate" if duplicates else "accepted"
    return ChangeResponse(
        id=item_id, status=status, accepted=accepted, duplicates=duplicates, sequence=sequence, visible=visible
    )


#: What a refused change answers (``ChangeRefused``): nothing of the request was applied.
REFUSALS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "A change patches or deletes an unknown item; nothing was applied."},
    409: {
        "model": ErrorResponse,
        "description": "A change id was used before for another change; nothing was applied.",
    },
}


@router.get("/items/{item_id}")
def get_item(engine: EngineDep, item_id: ItemId) -> dict[str, Any]:
    """The product as served now (its public catalogue fields), with the live changes applied."""
    row = engine.item_row(item_id)
    if row is None:
        raise ApiError(404, f"unknown item id '{item_id}'")
    return {"index_version": engine.version, "item": {**engine.index.items.to_result(row), "id": item_id}}


@router.put(
    "/items/{item_id}",
    response_model=ChangeResponse,
    response_model_exclude_none=True,
    dependencies=WRITE_GUARD,
    responses=REFUSALS,
)
def put_item(
    request: Request,
    item_id: ItemId,
    product: Annotated[dict[str, Any], Body(description="The whole product, as a catalogue row (id optional).")],
    change_id: ChangeId = None,
    idempotency_key: IdempotencyKey = None,
) -> ChangeResponse:
    """Adds or replaces a whole product, validated like a catalogue row; a new text is encoded once."""
    live = _live(request)
    parsed = _product(item_id, product)
    return _single(item_id, _store(live, live.prepare_upserts([parsed], [change_id or idempotency_key])))


@router.patch(
    "/items/{item_id}",
    response_model=ChangeResponse,
    response_model_exclude_none=True,
    dependencies=WRITE_GUARD,
    responses=REFUSALS,
)
def patch_item(
    request: Request,
    item_id: ItemId,
    fields: Annotated[dict[str, Any], Body(description="Fields to set: price, in_stock, boost, margin, attributes...")],
    change_id: ChangeId = None,
    idempotency_key: IdempotencyKey = None,
) -> ChangeResponse:
    """Changes some fields of a product; price, stock, boost, margin and attributes never re-encode."""
    live = _live(request)
    patch = _patch(fields)
    try:
        change = live.prepare_patch(item_id, patch, change_id or idempotency_key)
    except KeyError:
        raise ApiError(404, f"unknown item id '{item_id}'") from None
    return _single(item_id, _store(live, [change]))


@router.delete(
    "/items/{item_id}",
    response_model=ChangeResponse,
    response_model_exclude_none=True,
    dependencies=WRITE_GUARD,
    responses=REFUSALS,
)
def delete_item(
    request: Request, item_id: ItemId, change_id: ChangeId = None, idempotency_key: IdempotencyKey = None
) -> ChangeResponse:
    """Removes a product from every surface (search, similar, recommendations, bought together)."""
    live = _live(request)
    return _single(item_id, _store(live, [Change("delete", item_id, change_id=change_id or idempotency_key)]))


@router.post(
    "/items/batch",
    response_model=ChangeResponse,
    response_model_exclude_none=True,
    dependencies=WRITE_GUARD,
    responses=REFUSALS,
)
def batch(request: Request, settings: SettingsDep, body: BatchRequest) -> ChangeResponse:
    """Applies a list of upserts, patches and deletes in order, all or none."""
    if len(body.changes) > settings.max_events_per_batch:
        raise ApiError(
            413,
            f"changes: at most {settings.max_events_per_batch} per batch, got {len(body.changes)}; split the batch",
            "batch_too_large",
        )
    live = _live(request)
    changes: list[Change | None] = []
    upserts: dict[int, Product] = {}
    for position, entry in enumerate(body.changes, start=1):
        prefix = f"changes[{position}] "
        item_id = entry.id or (str(entry.item.get("id", "")).strip() if entry.item else "")
        if not item_id:
            raise ApiError(422, f"{prefix}field 'id': missing")
        if entry.op == "upsert":
            if entry.item is None:
                raise ApiError(422, f"{prefix}field 'item': an upsert carries the whole product")
            upserts[position] = _product(item_id, entry.item, prefix)
            changes.append(None)
        elif entry.op == "patch":
            if not entry.fields:
                raise ApiError(422, f"{prefix}field 'fields': a patch carries the fields to set")
            changes.append(Change("patch", item_id, fields=_patch(entry.fields, prefix), change_id=entry.change_id))
        else:
            changes.append(Change("delete", item_id, change_id=entry.change_id))
    prepared = live.prepare_batch(changes, upserts, [entry.change_id for entry in body.changes])
    accepted, duplicates, sequence, visible = _store(live, prepared)
    return ChangeResponse(accepted=accepted, duplicates=duplicates, sequence=sequence, visible=visible)
