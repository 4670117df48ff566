"""What the playground's filters and sort can offer: the catalogue's brands and categories with
their counts, and which attributes can be faceted or sorted on. Computed once per index version.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import numpy as np

from aisle.service.engine import Engine

#: Rows sampled to find which attributes look like facets (few distinct values) or sort keys.
_ATTRIBUTE_SAMPLE = 2000
_MAX_FACET_VALUES = 40
_KNOWN_FIELDS = {"id", "title", "description", "brand", "category", "price", "in_stock", "image", "margin", "boost"}


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
