"""Product metadata of a version: a Parquet table whose row r is row r of every index.

See ``aisle.index.layout`` for how the files of a version line up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from aisle.index.catalog import CATEGORY_SEPARATOR, Product
from aisle.index.fields import FieldColumn, FieldIndex
from aisle.index.layout import ITEMS_FILE
from aisle.index.schema import Schema, as_number
from aisle.index.selection import SelectionCache

__all__ = ["ITEMS_FILE", "ItemTable", "read_content_hashes", "write_items"]
_COLUMNS = ("id", "title", "description", "brand", "category", "price", "in_stock", "image", "margin", "boost")


def write_items(path: Path, products: list[Product], content_hashes: list[str]) -> None:
    """Writes the products, in row order, with the content hash of each one's embedded fields."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            **{name: [getattr(p, name) for p in products] for name in _COLUMNS},
            # As the catalogue gave it, for responses: a path on this server is not for callers.
            "image_source": [p.image_source for p in products],
            "attributes": [json.dumps(p.attributes, sort_keys=True) for p in products],
            "content_hash": content_hashes,
        },
        schema=pa.schema(
            [
                ("id", pa.string()),
                ("title", pa.string()),
                ("description", pa.string()),
                ("brand", pa.string()),
                ("category", pa.string()),
                ("price", pa.float64()),
                ("in_stock", pa.bool_()),
                ("image", pa.string()),
                ("margin", pa.float64()),
                ("boost", pa.float64()),
                ("attributes", pa.string()),
                ("content_hash", pa.string()),
                ("image_source", pa.string()),
            ]
        ),
    )
    pq.write_table(table, path)


def read_content_hashes(path: Path) -> list[str]:
    """Only the content-hash column of an items file: all a rebuild needs from the last version."""
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=["content_hash"]).column("content_hash").to_pylist()


class ItemTable:
    """Column arrays for fast filtering plus row → response dict.

    Only public fields reach a response (``to_result``): Aisle's own fields the schema leaves
    public and the attributes configured public; ``margin``, ``boost`` and other attributes stay
    in the table for ranking and filtering only.
    """

    def __init__(self, columns: dict[str, list[Any]], schema: Schema | None = None) -> None:
        self.ids: list[str] = columns["id"]
        self.row_of: dict[str, int] = {item_id: row for row, item_id in enumerate(self.ids)}
        self._columns = columns
        self._attributes: list[str] = columns["attributes"]
        self.titles: list[str] = columns["title"]
        self.content_hashes: list[str] = columns["content_hash"]
        self.price = np.array([np.nan if p is None else p for p in columns["price"]], dtype=np.float64)
        self.in_stock = np.array(columns["in_stock"], dtype=bool)
        self.margin = np.array([0.0 if m is None else m for m in columns["margin"]], dtype=np.float32)
        self.boost = np.array([0.0 if b is None else b for b in columns["boost"]], dtype=np.float32)
        self.brand_codes, self.brand_names = _factorize([b.casefold() for b in columns["brand"]])
        self.brand_code_of = {name: code for code, name in enumerate(self.brand_names)}
        self.category_codes, self.category_names = _factorize([c.casefold() for c in columns["category"]])
        #: Rows of recently used filters (see ``aisle.index.filters.select_rows``).
        self.selections = SelectionCache()
        #: Rows deleted through the live catalogue (``aisle.index.live``): a mask, None when none is.
        self.removed: np.ndarray | None = None
        #: Near-duplicate picture group of every row (``aisle.index.pictures``), None when the
        #: version has no pictures: the reranker never shows two rows of one group.
        self.picture_groups: np.ndarray | None = None
        #: Rows whose group has another member (set with ``set_picture_groups``).
        self.picture_shared: np.ndarray | None = None
        self.configure(schema or Schema.from_manifest(None), {})

    def configure(self, schema: Schema, attributes: dict[str, Any]) -> None:
        """Applies a version's schema: which fields are public, and the columns of indexed fields.

        Args:
            schema: the version's schema.
            attributes: the indexed attributes' values by field (``FieldIndex.read_attributes``).
        """
        self.schema = schema
        public = set(schema.names("public"))
        # ``image`` is answered as the catalogue gave it (versions built before that kept only
        # the resolved path, which ``image()`` still gives the playground).
        shown = {**self._columns, "image": self._columns.get("image_source", self._columns["image"])}
        self._result_columns = [(name, shown[name]) for name in _COLUMNS if name in public]
        self._public_attributes = frozenset(schema.public_attributes())
        # CSV cells are text: a number field is returned as a number, as JSON catalogues give it.
        self._public_numbers = frozenset(
            spec.name for spec in schema.attributes if spec.public and spec.kind == "number"
        )
        self.fields = FieldIndex.build(schema, self._builtin_columns(schema), attributes)

    def _builtin_columns(self, schema: Schema) -> dict[str, FieldColumn]:
        wanted = {spec.name for spec in schema.fields if spec.builtin and spec.indexed}
        makers = {
            "brand": lambda: FieldColumn.from_text("brand", self._columns["brand"]),
            "category": lambda: FieldColumn.from_text("category", self._columns["category"], prefix=True),
            "price": lambda: FieldColumn.from_numbers("price", self.price),
            "in_stock": lambda: FieldColumn.from_bools("in_stock", self.in_stock),
            "margin": lambda: FieldColumn.from_numbers("margin", self._optional_numbers("margin")),
            "boost": lambda: FieldColumn.from_numbers("boost", self._optional_numbers("boost")),
            "title": lambda: FieldColumn.from_text("title", self.titles),
        }
        return {name: make() for name, make in makers.items() if name in wanted}

    def _optional_numbers(self, name: str) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in self._columns[name]], dtype=np.float64)

    @classmethod
    def read(cls, path: Path) -> ItemTable:
        """Reads an items file written by ``write_items``."""
        import pyarrow.parquet as pq

        return cls(pq.read_table(path).to_pydict())

    def __len__(self) -> int:
        return len(self.ids)

    def set_picture_groups(self, groups: np.ndarray) -> None:
        """Records each row's near-duplicate picture group (a row number, see ``aisle.index.pictures``)."""
        self.picture_groups = groups
        self.picture_shared = np.bincount(groups, minlength=len(groups))[groups] > 1

    def brand(self, row: int) -> str:
        return self._columns["brand"][row]

    def category(self, row: int) -> str:
        return self._columns["category"][row]

    def product(self, row: int) -> Product:
        """Row ``row`` as the catalogue product it was built from (a live change starts from it)."""
        values = {name: self._columns[name][row] for name in _COLUMNS}
        return Product(**values, attributes=json.loads(self._attributes[row]))

    def image(self, row: int) -> str:
        """The row's image as stored: an absolute file path, a URL, or empty."""
        return self._columns["image"][row] or ""

    def to_result(self, row: int) -> dict[str, Any]:
        """The public catalogue fields of a row, as returned in responses (blank fields left out)."""
        # Runs for every result of every response: columns are bound in ``configure`` and rows
        # without public attributes skip the JSON parser.
        result = {
            name: value for name, column in self._result_columns if (value := column[row]) is not None and value != ""
        }
        if self._public_attributes:
            attributes = self._attributes[row]
            if attributes != "{}":
                for key, value in json.loads(attributes).items():
                    if key in self._public_attributes:
                        if key in self._public_numbers and isinstance(value, str):
                            value = _number(value)
                        result.setdefault(key, value)
        return result

    def category_prefix_codes(self, prefix: str) -> np.ndarray:
        """Codes of every category equal to ``prefix`` or below it (component-wise)."""
        wanted = [part.strip().casefold() for part in prefix.split(">") if part.strip()]
        joined = CATEGORY_SEPARATOR.join(wanted)
        return np.array(
            [
                code
                for code, name in enumerate(self.category_names)
                if name == joined or name.startswith(joined + CATEGORY_SEPARATOR)
            ],
            dtype=np.int32,
        )


def _number(text: str) -> int | float | str:
    number = as_number(text)
    if number is None:
        return text
    return int(number) if number.is_integer() and "." not in text else number


def _factorize(values: list[str]) -> tuple[np.ndarray, list[str]]:
    names: dict[str, int] = {}
    codes = np.fromiter((names.setdefault(v, len(names)) for v in values), dtype=np.int32, count=len(values))
    return codes, list(names)
