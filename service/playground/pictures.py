"""``GET /playground/images/{item_id}``: a product's picture, found through the serving index.

The request names an item, never a file: the path comes from the index version (the catalogue's
``image``), and the file is sent only when its first bytes are those of a picture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, RedirectResponse, Response

from aisle.service.deps import EngineDep
from aisle.service.engine import Engine
from aisle.service.errors import ApiError
from aisle.service.playground.api import row_or_404

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
    image = engine.index.items.image(row_or_404(engine, item_id))
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
