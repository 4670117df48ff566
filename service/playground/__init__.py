"""The web playground at ``/`` and the offline API docs at ``/docs`` and ``/redoc``.

The page is plain HTML, CSS and ES modules shipped in ``static/`` (no build step): it calls the
public HTTP API like a shop's front end would, and reads ``/openapi.json`` to find which
optional endpoints and request fields this service has, so that it shows facets, sort, pages,
typeahead or experiments as soon as the service offers them. A few read-only helpers the public
API has no route for (a product's fields, its picture, the catalogue's brands and categories,
bought-together items, published versions) live under ``/playground/api``, out of the schema.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/playground/static"


def install_playground(app: FastAPI) -> None:
    """Adds the page, its static files, its helpers and the offline docs to ``app``.

    The app must be created with ``docs_url=None, redoc_url=None``: the docs routes here replace
    FastAPI's, whose pages load their scripts from a CDN.
    """
    from aisle.service.playground import api, docs, pages, pictures

    for module in (pages, api, pictures, docs):
        app.include_router(module.router)
