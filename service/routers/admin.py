"""``/admin/*``: operations on the running service."""

from __future__ import annotations

from fastapi import APIRouter, Request

from index.manifest import IndexValidationError
from index.versions import VersionError
from service.deps import WRITE_GUARD
from service.errors import ApiError

router = APIRouter(tags=["admin"], dependencies=WRITE_GUARD)


@router.post("/admin/reload")
def reload_index(request: Request) -> dict:
    """Swaps in the newest published version after validating it; the old one serves meanwhile."""
    holder = request.app.state.holder
    try:
        swapped, version = holder.reload()
    except VersionError as exc:
        raise ApiError(404, str(exc)) from None
    except IndexValidationError as exc:
        raise ApiError(409, f"new index version refused, still serving the previous one: {exc}", "invalid_index") from None
    return {"swapped": swapped, "index_version": version, "request_id": request.state.request_id}
