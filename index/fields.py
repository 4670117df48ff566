"""Typed columns of the fields a query may filter, count (facets) or sort by.

The build writes the indexed attributes (``FieldSpec.indexed``) into ``fields.parquet``, one typed
column each (numbers as float64, the rest as text); Aisle's own brand, category, price and stock
come from the item table. At load every such field becomes a ``FieldColumn``: an int32 code per
row (−1 when the row has no value) and the code's label, so that a filter is a vectorised
comparison of codes and a facet one ``np.bincount`` over the codes of the matching rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aisle.index.catalog import Product
from aisle.index.schema import FieldSpec, Kind, Schema, as_number, as_text

#: Facets return at most this many values per field, the most frequent first.
MAX_FACET_VALUES = 100


def write_fields(path: Path, products: Sequence[Product], schema: Schema) -> None:
    """Writes the indexed attributes of ``products`` (row order) as typed Parquet columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns: dict[str, Any] = {}
    for spec in schema.attributes:
        if not spec.indexed:
            continue
        values = [product.attributes.get(spec.name) for product in products]
        if spec.kind == "number":
            columns[spec.name] = pa.array([as_number(v) if v is not None else None for v in values], pa.float64())
        else:
            columns[spec.name] = pa.array([as_text(v) if v is not None else None for v in values], pa.string())
    # A table needs its row count even without columns.
    table = pa.table(columns) if columns else pa.table({"__rows__": pa.nulls(len(products), pa.bool_())})
    pq.write_table(table, path)


@dataclass
class FieldColumn:
    """One field's values as codes.

    Attributes:
        name: the field.
        kind: ``text``, ``number`` or ``bool``.
        codes: int32 code of each row's value, −1 for no value.
        labels: the value of each code, as callers see it (a text's first spelling).
        code_of: the lookup key of a value (``lookup_key``) → its code.
        numbers: float64 value of each row (NaN for none), for number fields.
        prefix: category semantics: a value matches itself and every path below it.
    """

    name: str
    kind: Kind
    codes: np.ndarray
    labels: list[Any]
    code_of: dict[Any, int]
    numbers: np.ndarray | None = None
    prefix: bool = False
    _sort_keys: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.codes)

    @classmethod
    def from_text(cls, name: str, values: Sequence[str | None], prefix: bool = False) -> FieldColumn:
        """Codes of text values, equal up to case (blank and None mean no value)."""
        keys = [value.lower() if value else None for value in values]
        code_of: dict[Any, int] = {}
        labels: list[Any] = []
        codes = np.empty(len(keys), dtype=np.int32)
        for row, (key, value) in enumerate(zip(keys, values)):
            if key is None:
                codes[row] = -1
                continue
            code = code_of.get(key)
            if code is None:
                code = code_of[key] = len(labels)
                labels.append(value)
            codes[row] = code
        return cls(name, "text", codes, labels, code_of, prefix=prefix)

    @classmethod
    def from_numbers(cls, name: str, values: np.ndarray) -> FieldColumn:
        """Codes of float values (NaN means no value); the codes ascend with the values."""
        values = np.asarray(values, dtype=np.float64)
        present = ~np.isnan(values)
        distinct, inverse = np.unique(values[present], return_inverse=True)
        codes = np.full(len(values), -1, dtype=np.int32)
        codes[present] = inverse.astype(np.int32)
        labels = [int(v) if float(v).is_integer() else float(v) for v in distinct.tolist()]
        return cls(name, "number", codes, labels, {float(v): i for i, v in enumerate(distinct.tolist())}, values)

    @classmethod
    def from_bools(cls, name: str, values: Sequence[bool] | np.ndarray) -> FieldColumn:
        codes = np.asarray(values, dtype=bool).astype(np.int32)
        return cls(name, "bool", codes, [False, True], {False: 0, True: 1})

    def patched(self, size: int, rows: Sequence[int], values: Sequence[Any]) -> FieldColumn:
        """A copy grown to ``size`` rows with ``rows`` set to ``values`` (a live catalogue's
        changes; new values get new codes, rows without a value −1)."""
        codes = np.full(size, -1, dtype=np.int32)
        codes[: len(self.codes)] = self.codes[:size]
        numbers = None
        if self.numbers is not None:
            numbers = np.full(size, np.nan)
            numbers[: len(self.numbers)] = self.numbers[:size]
        labels, code_of = list(self.labels), dict(self.code_of)
        for row, value in zip(rows, values):
            key: Any = None
            if value is not None and value != "":
                try:
                    key = self.lookup_key(value)
                except ValueError:
                    key = None
            if key is None or (self.kind == "text" and not key):
                codes[row] = -1
                if numbers is not None:
                    numbers[row] = np.nan
                continue
            code = code_of.get(key)
            if code is None:
                code = code_of[key] = len(labels)
                labels.append(value if self.kind == "text" else key)
            codes[row] = code
            if numbers is not None:
                numbers[row] = key
        return FieldColumn(self.name, self.kind, codes, labels, code_of, numbers, self.prefix)

    def lookup_key(self, value: Any) -> Any:
        """The ``code_of`` key of a filter value (a ``ValueError`` when the type cannot be one)."""
        if self.kind == "number":
            number = as_number(value)
            if number is None:
                raise ValueError(f"'{self.name}' holds numbers, not {value!r}")
            return number
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "1", "yes"):
                return True
            if text in ("false", "0", "no"):
                return False
            raise ValueError(f"'{self.name}' is true or false, not {value!r}")
        if isinstance(value, bool):
            return "true" if value else "false"
        return as_text(value).strip().lower()

    def codes_of(self, values: Sequence[Any]) -> np.ndarray:
        """The codes ``values`` match (a category also matches the paths below it)."""
        if self.prefix:
            wanted: set[int] = set()
            for value in values:
                parts = [part.strip().lower() for part in str(value).split(">") if part.strip()]
                joined = " > ".join(parts)
                wanted.update(
                    code for key, code in self.code_of.items() if key == joined or key.startswith(joined + " > ")
                )
            return np.fromiter(sorted(wanted), dtype=np.int32)
        codes = {self.code_of[key] for key in map(self.lookup_key, values) if key in self.code_of}
        return np.fromiter(sorted(codes), dtype=np.int32)

    def equals_mask(self, values: Sequence[Any]) -> np.ndarray:
        """Rows whose value is any of ``values`` (rows without a value never are)."""
        codes = self.codes_of(values)
        if len(codes) == 0:
            return np.zeros(len(self.codes), dtype=bool)
        if len(codes) == 1:
            return self.codes == codes[0]
        # A lookup table over the codes beats np.isin for few distinct values and many rows.
        table = np.zeros(len(self.labels) + 1, dtype=bool)
        table[codes + 1] = True
        return table[self.codes + 1]

    def range_mask(self, low: float | None, high: float | None) -> np.ndarray:
        """Rows whose number lies within ``[low, high]`` (rows without a number never do)."""
        if self.numbers is None:
            raise ValueError(f"'{self.name}' is not a number field: a range needs numbers")
        mask = ~np.isnan(self.numbers)
        if low is not None:
            mask &= self.numbers >= low
        if high is not None:
            mask &= self.numbers <= high
        return mask

    def counts(self, rows: np.ndarray, limit: int = MAX_FACET_VALUES) -> dict[str, int]:
        """How many of ``rows`` have each value, most frequent first (ties by value), as a JSON
        object (keys are text: numbers and booleans as JSON spells them)."""
        if len(rows) == 0:
            return {}
        counted = np.bincount(self.codes[rows] + 1, minlength=len(self.labels) + 1)[1:]
        present = np.flatnonzero(counted)
        if len(present) > limit:
            present = present[np.argsort(-counted[present], kind="stable")[:limit]]
        order = sorted(present.tolist(), key=lambda code: (-int(counted[code]), _label_key(self.labels[code])))
        return {_facet_key(self.labels[code]): int(counted[code]) for code in order}

    def sort_keys(self) -> np.ndarray:
        """A float64 key per row ordering rows by value (NaN for no value)."""
        if self._sort_keys is None:
            if self.numbers is not None:
                keys = self.numbers
            else:
                ranks = np.empty(len(self.labels), dtype=np.float64)
                order = sorted(range(len(self.labels)), key=lambda code: _label_key(self.labels[code]))
                ranks[order] = np.arange(len(order), dtype=np.float64)
                keys = np.where(self.codes >= 0, ranks[np.maximum(self.codes, 0)] if len(ranks) else 0.0, np.nan)
            self._sort_keys = keys
        return self._sort_keys


def _label_key(label: Any) -> tuple:
    return (0, float(label), "") if isinstance(label, (int, float)) else (1, 0.0, str(label).lower())


def _facet_key(label: Any) -> str:
    if isinstance(label, bool):
        return "true" if label else "false"
    return str(label)


class FieldIndex:
    """The ``FieldColumn`` of every filterable, facetable or sortable field of a version."""

    def __init__(self, schema: Schema, columns: dict[str, FieldColumn]) -> None:
        self.schema = schema
        self.columns = columns
        self._value_tokens: dict[str, list[tuple[str, int, int]]] | None = None

    def values_named_by(self, tokens: Sequence[str], tokenize: Callable[[str], list[str]]) -> dict[str, np.ndarray]:
        """The values of searchable, facetable text attributes that a query names in full.

        A value matches when every one of its tokens is among ``tokens`` (the query's): the query
        "men's running shoes" names ``gender`` "Men" and ``subCategory`` "Shoes". Found through a
        token → values index built on first use, so the cost follows the query's tokens.

        Returns:
            field → the codes of the named values.
        """
        if self._value_tokens is None:
            index: dict[str, list[tuple[str, int, int]]] = {}
            for spec in self.schema.fields:
                column = self.columns.get(spec.name)
                # Attributes only: brand already weighs in BM25, and on the Amazon-Google dev queries
                # (manufacturers often blank) favouring a named brand lowered MRR@10.
                named = spec.searchable and spec.facetable and not spec.builtin
                if not named or column is None or column.kind != "text":
                    continue
                for code, label in enumerate(column.labels):
                    distinct = list(dict.fromkeys(tokenize(str(label))))
                    for token in distinct:
                        index.setdefault(token, []).append((spec.name, code, len(distinct)))
            self._value_tokens = index
        hits: dict[tuple[str, int], int] = {}
        needed: dict[tuple[str, int], int] = {}
        for token in dict.fromkeys(tokens):
            for name, code, count in self._value_tokens.get(token, ()):
                hits[(name, code)] = hits.get((name, code), 0) + 1
                needed[(name, code)] = count
        complete: dict[str, list[int]] = {}
        for key, count in hits.items():
            if count == needed[key]:
                complete.setdefault(key[0], []).append(key[1])
        return {name: np.array(sorted(codes), dtype=np.int32) for name, codes in complete.items()}

    def __contains__(self, name: str) -> bool:
        return name in self.columns

    def get(self, name: str) -> FieldColumn | None:
        return self.columns.get(name)

    @classmethod
    def build(cls, schema: Schema, builtin: dict[str, FieldColumn], attributes: dict[str, list[Any]]) -> FieldIndex:
        """Columns for the schema's indexed fields from Aisle's own columns and the attribute values."""
        columns: dict[str, FieldColumn] = {}
        for spec in schema.fields:
            if not spec.indexed:
                continue
            if spec.builtin:
                if spec.name in builtin:
                    columns[spec.name] = builtin[spec.name]
                continue
            values = attributes.get(spec.name)
            if values is None:
                continue
            columns[spec.name] = _attribute_column(spec, values)
        return cls(schema, columns)

    @staticmethod
    def read_attributes(path: Path) -> dict[str, list[Any]]:
        """The attribute columns of a ``fields.parquet``, by name."""
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return {name: table.column(name) for name in table.column_names if name != "__rows__"}


def _attribute_column(spec: FieldSpec, values: Any) -> FieldColumn:
    if spec.kind == "number":
        return FieldColumn.from_numbers(spec.name, values.to_numpy(zero_copy_only=False).astype(np.float64))
    texts = values.to_pylist() if hasattr(values, "to_pylist") else list(values)
    column = FieldColumn.from_text(spec.name, texts)
    if spec.kind == "bool":
        column.kind = "bool"
        column.code_of = {key == "true": code for key, code in column.code_of.items()}
        column.labels = [str(label).lower() == "true" for label in column.labels]
    return column
