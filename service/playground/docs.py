"""``/docs`` (Swagger UI) and ``/redoc`` from files shipped in the package, not from a CDN.

Swagger UI 5 (``swagger-ui-dist``, Apache-2.0) and ReDoc 2 (``redoc``, MIT) are vendored under
``static/vendor`` with their licences; see ``static/vendor/README.md`` for versions and updating.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse

router = APIRouter(include_in_schema=False)

#: Both pages may load from this origin only. ReDoc's sidebar always shows Redocly's logo from
#: their CDN; the policy stops that request (the logo then hides itself), so the page never
#: waits on or leaks to another host.
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)

_VENDOR = "/playground/static/vendor"
_FAVICON = f"{_VENDOR}/swagger-ui/favicon-32x32.png"


def _openapi_url(request: Request) -> str:
    return request.scope.get("root_path", "") + request.app.openapi_url


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI on this service's OpenAPI document."""
    page = get_swagger_ui_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} - API docs",
        swagger_js_url=f"{_VENDOR}/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{_VENDOR}/swagger-ui/swagger-ui.css",
        swagger_favicon_url=_FAVICON,
        oauth2_redirect_url="/docs/oauth2-redirect",
        # The default validator badge would fetch an image from validator.swagger.io.
        swagger_ui_parameters={"validatorUrl": None},
    )
    page.headers["Content-Security-Policy"] = DOCS_POLICY
    return page


@router.get("/docs/oauth2-redirect")
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc on this service's OpenAPI document (system fonts: Google Fonts would need the network)."""
    page = get_redoc_html(
        openapi_url=_openapi_url(request),
        title=f"{request.app.title} - API reference",
        redoc_js_url=f"{_VENDOR}/redoc/redoc.standalone.js",
        redoc_favicon_url=_FAVICON,
        with_google_fonts=False,
    )
    page.headers["Content-Security-Policy"] = DOCS_POLICY
    return page
