"""Structured filters over a version's items, turned into the set of rows the ANN search may return.

Besides the first contract's keys (``category`` prefix, ``brand``, ``price_min``/``price_max``,
``in_stock``), any filterable field of the version's schema may be constrained
(``parse_filters``): equals, any of, a range ``{min, max}``, or ``{not: ...}``; keys combine with
AND. Rows without a value never equal a value nor fall in a range, and always pass a ``not``.

A shop's front end sends the same few filters again and again (a category page, "in stock
only"), so the rows of a filter are computed once per index version and kept in a small LRU
cache on its item table; on a million products that saves several milliseconds per query.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from aisle.index.fields import FieldIndex
from aisle.index.items import ItemTable
from aisle.index.selection import RowSelection

#: At most this many values in one any-of or not list.
MAX_FILTER_VALUES = 1000


class FilterError(ValueError):
    """A filter that cannot apply: unknown or non-filterable field, wrong type, empty range."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"filters.{field}: {message}")


@dataclass(frozen=True)
class FieldFilter:
    """A constraint on one field.

    Attributes:
        field: the field's name.
        op: ``in`` (equals any of ``values``), ``not`` (equals none of them) or ``range``.
        values: lookup keys of the values (``FieldColumn.lookup_key``), sorted.
        low: inclusive lower bound of a range (None: open).
        high: inclusive upper bound of a range.
    """

    field: str
    op: Literal["in", "not", "range"]
    values: tuple = ()
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class Filters:
    """Hard constraints a result must satisfy.

    Attributes:
        category: a category path prefix, matched per component and case-insensitively
            (``Home > Kitchen`` matches ``Home > Kitchen > Knives``, not ``Home > Kitchenware``).
        brand: one brand or several (any of them), case-insensitive.
        price_min: inclusive lower bound; products without a price never match a price bound.
        price_max: inclusive upper bound.
        in_stock: True keeps products in stock, False those out of stock.
    """

    category: str | None = None
    brand: str | tuple[str, ...] | None = None
    price_min: float | None = None
    price_max: float | None = None
    in_stock: bool | None = None
    fields: tuple[FieldFilter, ...] = ()

    def is_empty(self) -> bool:
        """True when no field constrains anything (blank category and brands count as unset)."""
        return self.cache_key() == (None, None, None, None, None, ())

    def cache_key(self) -> tuple:
        """A canonical, hashable form: equal keys select equal rows."""
        category = _category_parts(self.category) or None
        brands = [self.brand] if isinstance(self.brand, str) else list(self.brand or ())
        brand_key = tuple(sorted({b.strip().casefold() for b in brands if b.strip()})) or None
        fields = tuple(sorted(self.fields, key=lambda f: (f.field, f.op, repr(f.values), f.low, f.high)))
        return (category, brand_key, self.price_min, self.price_max, self.in_stock, fields)


def select_rows(items: ItemTable, filters: Filters | None) -> RowSelection | None:
    """The rows satisfying every filter (cached per item table), or None when nothing is filtered."""
    if filters is None or filters.is_empty():
        return None
    key = filters.cache_key()
    return items.selections.get_or_compute(key, lambda: _compute_mask(items, key))


def filter_mask(items: ItemTable, filters: Filters | None) -> np.ndarray | None:
    """Rows satisfying every filter as a boolean mask (the caller's own copy), or None.

    ``select_rows`` is the faster form for the ANN search: it hands out the cached selection.
    """
    selection = select_rows(items, filters)
    return None if selection is None else selection.mask.copy()


def _compute_mask(items: ItemTable, key: tuple) -> np.ndarray:
    category, brands, price_min, price_max, in_stock, fields = key
    mask = np.ones(len(items), dtype=bool)
    if category is not None:
        mask &= np.isin(items.category_codes, items.category_prefix_codes(" > ".join(category)))
    if brands is not None:
        codes = [items.brand_code_of[b] for b in brands if b in items.brand_code_of]
        mask &= np.isin(items.brand_codes, np.array(codes, dtype=np.int32))
    # NaN (no price) compares False, so a product without a price never meets a price bound.
    if price_min is not None:
        mask &= items.price >= price_min
    if price_max is not None:
        mask &= items.price <= price_max
    if in_stock is not None:
        mask &= items.in_stock == bool(in_stock)
    for constraint in fields:
        column = items.fields.get(constraint.field)
        assert column is not None, constraint.field  # parse_filters checked it
        if constraint.op == "range":
            mask &= column.range_mask(constraint.low, constraint.high)
        elif constraint.op == "in":
            mask &= column.equals_mask(constraint.values)
        else:
            mask &= ~column.equals_mask(constraint.values)
    return mask


def parse_filters(raw: Mapping[str, Any] | None, fields: FieldIndex) -> Filters | None:
    """The ``filters`` of a request, checked against the version's schema.

    Each key is a filterable field (or ``price_min``/``price_max``); its value is a value
    (equals), a list (any of), ``{"min": x, "max": y}`` (either bound optional) or
    ``{"not": value or list}``. A ``category`` value matches the paths below it too.

    Raises:
        FilterError: naming the field: unknown or not filterable, a value of the wrong type, an
            empty list, an empty or non-numeric range.
    """
    if not raw:
        return None
    category: str | None = None
    brand: str | tuple[str, ...] | None = None
    price_min = price_max = None
    in_stock: bool | None = None
    constraints: list[FieldFilter] = []
    for name, value in raw.items():
        if value is None:
            continue
        if name in ("price_min", "price_max"):
            number = _bound(name, value)
            if number < 0:
                raise FilterError(name, f"must be 0 or more, not {number:g}")
            price_min, price_max = (number, price_max) if name == "price_min" else (price_min, number)
            continue
        column = fields.get(name)
        spec = fields.schema.get(name)
        if spec is None:
            raise FilterError(name, f"unknown field; filterable fields are {', '.join(_filterable(fields))}")
        if column is None or not spec.filterable:
            raise FilterError(
                name,
                f"'{name}' is not filterable (configure it in the fields: setting); "
                f"filterable fields are {', '.join(_filterable(fields))}",
            )
        if name == "category" and isinstance(value, str):
            category = value
        elif name == "brand" and isinstance(value, str):
            brand = value
        elif name == "brand" and isinstance(value, list) and all(isinstance(v, str) for v in value):
            brand = tuple(_checked_list(name, value))
        elif name == "in_stock" and isinstance(value, bool):
            in_stock = value
        else:
            constraints.append(_field_filter(name, value, column))
    if price_min is not None and price_max is not None and price_min > price_max:
        raise FilterError("price_min", f"price_min ({price_min:g}) is above price_max ({price_max:g})")
    return Filters(category, brand, price_min, price_max, in_stock, tuple(constraints))


def _filterable(fields: FieldIndex) -> list[str]:
    return [spec.name for spec in fields.schema.fields if spec.filterable and spec.name in fields]


def _bound(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise FilterError(name, f"expected a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise FilterError(name, f"expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise FilterError(name, f"expected a finite number, got {value!r}")
    return number


def _checked_list(name: str, values: list) -> list:
    if not values:
        raise FilterError(name, "an empty list matches nothing; leave the filter out instead")
    if len(values) > MAX_FILTER_VALUES:
        raise FilterError(name, f"at most {MAX_FILTER_VALUES} values, got {len(values)}")
    for value in values:
        if not isinstance(value, (str, int, float, bool)):
            raise FilterError(name, f"values are text, numbers or booleans, not {value!r}")
    return values


def _field_filter(name: str, value: Any, column: Any) -> FieldFilter:
    if isinstance(value, Mapping):
        keys = set(value)
        if keys == {"not"}:
            negated = value["not"]
            values = negated if isinstance(negated, list) else [negated]
            return FieldFilter(name, "not", _keys(name, column, _checked_list(name, values)))
        if keys and keys <= {"min", "max"}:
            if column.numbers is None:
                raise FilterError(name, f"'{name}' is not a number field: a range needs numbers")
            low = None if value.get("min") is None else _bound(name, value["min"])
            high = None if value.get("max") is None else _bound(name, value["max"])
            if low is None and high is None:
                raise FilterError(name, "a range needs min, max or both")
            if low is not None and high is not None and low > high:
                raise FilterError(name, f"min ({low:g}) is above max ({high:g})")
            return FieldFilter(name, "range", low=low, high=high)
        raise FilterError(name, f"expected a value, a list, {{min, max}} or {{not}}, got keys {sorted(keys)}")
    values = value if isinstance(value, list) else [value]
    return FieldFilter(name, "in", _keys(name, column, _checked_list(name, values)))


def _keys(name: str, column: Any, values: list) -> tuple:
    try:
        if column.prefix:  # category paths: matched component-wise in FieldColumn.codes_of
            return tuple(sorted({str(v) for v in values}))
        return tuple(sorted({column.lookup_key(v) for v in values}, key=repr))
    except ValueError as exc:
        raise FilterError(name, str(exc)) from None


def _category_parts(category: str | None) -> tuple[str, ...]:
    if not category:
        return ()
    return tuple(part.strip().casefold() for part in category.split(">") if part.strip())
