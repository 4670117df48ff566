"""``GET /``: the playground page, with the results of ``?q=`` already in the HTML.

The page's scripts render everything from the API; the server also puts the first results of
a shared link (``/?q=espresso``) into the HTML, so that the link shows them before the scripts
run, and to a client without JavaScript. Those results come from the app's own ``POST /search``
called in process, the exact route a shop's front end calls.
"""

from __future__ import annotations

import asyncio
import html
import json
import mimetypes
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse
from starlette.types import ASGIApp, Message

from aisle.service.errors import ApiError
from aisle.service.playground import STATIC_DIR, STATIC_PREFIX
from aisle.service.playground.catalogue import facet_fields, summary_of
from aisle.service.schemas import SearchRequest

router = APIRouter(include_in_schema=False)

_PAGE = STATIC_DIR / "index.html"
_STATIC_ROOT = STATIC_DIR.resolve()
#: Media types set here: the platform's table may lack some, and a module script must be JavaScript.
_MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".html": "text/html"}
_FIRST_RESULTS_MARK = "<!-- first results -->"
_FIRST_RESULTS = 12
#: The page talks to this origin only; product pictures may come from the shop's own servers.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: https: http:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self'; connect-src 'self'; frame-ancestors 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


async def call_json(app: ASGIApp, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    """Calls one JSON route of ``app`` in process (middleware included); returns status and body."""
    payload = json.dumps(body).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 0),
    }
    sent = False
    status = 500
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": payload, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    try:
        return status, json.loads(b"".join(chunks) or b"null")
    except ValueError:
        return status, None


def render_first_results(query: str, status: int, body: Any) -> str:
    """The results of ``query`` as a plain list (the scripts replace it with full cards)."""
    escaped = html.escape(query)
    if status != 200 or not isinstance(body, dict):
        message = body.get("error", {}).get("message", "") if isinstance(body, dict) else ""
        return f'<p class="notice error">Search for “{escaped}” failed: {html.escape(str(message))}</p>'
    results = body.get("results") or []
    if not results:
        return f'<p class="notice">No results for “{escaped}”.</p>'
    rows = []
    for result in results:
        details = " · ".join(
            html.escape(str(result[field])) for field in ("brand", "category") if result.get(field) not in (None, "")
        )
        price = f" · {result['price']:.2f}" if isinstance(result.get("price"), (int, float)) else ""
        link = html.escape(f"/?item={result['id']}", quote=True)
        rows.append(
            f'<li><a href="{link}">{html.escape(str(result.get("title", result["id"])))}</a>'
            f' <span class="muted">{details}{html.escape(price)}</span></li>'
        )
    return f'<ol class="first-results" data-query="{html.escape(query, quote=True)}">{"".join(rows)}</ol>'


async def first_search(request: Request, query: str) -> dict[str, Any]:
    """The body the page's script sends for a plain search link, so that it can reuse the answer.

    It must match ``searchRequest`` in ``static/js/views/search.js`` for a link with only ``q``
    (and ``user``): one search per opened link, not two.
    """
    body: dict[str, Any] = {"query": query[:512], "k": _FIRST_RESULTS, "explain": True}
    user = request.query_params.get("user", "").strip()
    if user:
        body["user_id"] = user[:256]
    fields = SearchRequest.model_fields
    if "offset" in fields:
        body["offset"] = 0
    if "facets" in fields and request.app.state.holder is not None and request.app.state.holder.loaded:
        # Computed once per version, off the event loop (it reads every row's brand and category).
        summary = await asyncio.to_thread(summary_of, request.app.state.holder.engine)
        body["facets"] = facet_fields(summary)
    return body


def embed_answer(answer: Any) -> str:
    """The answer as JSON for a data block: ``<``, ``>`` and ``&`` as escapes, so that no catalogue
    text or query can end the element or open a comment in it."""
    return json.dumps(answer).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@router.get("/", response_class=HTMLResponse)
async def playground(request: Request) -> HTMLResponse:
    """The playground page; ``?q=`` opens that search (see the module docstring)."""
    page = _PAGE.read_text(encoding="utf-8")
    query = request.query_params.get("q", "").strip()
    plain = set(request.query_params) <= {"q", "user"}
    if query and plain:
        body = await first_search(request, query)
        status, answer = await call_json(request.app, "POST", "/search", body)
        first = render_first_results(query, status, answer)
        if status == 200:
            first += (
                f'<script type="application/json" id="first-response" data-query="{html.escape(query, quote=True)}">'
                f"{embed_answer({'request': body, 'response': answer})}</script>"
            )
        page = page.replace(_FIRST_RESULTS_MARK, first, 1)
    return HTMLResponse(page, headers=_SECURITY_HEADERS)


@router.get(STATIC_PREFIX + "/{asset:path}")
async def static_asset(asset: str) -> FileResponse:
    """A file of the playground's ``static/`` folder (a route, not a mount: metrics label it)."""
    path = (STATIC_DIR / asset).resolve()
    if not path.is_relative_to(_STATIC_ROOT) or not path.is_file():
        raise ApiError(404, f"no playground file '{asset}'")
    media = _MEDIA_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return FileResponse(
        path, media_type=media, headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"}
    )
