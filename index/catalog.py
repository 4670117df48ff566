"""Loading a shop's catalogue file (CSV, JSON Lines or Parquet) into validated products.

The file's columns are renamed by the column map (``--map title=productDisplayName`` or the
``columns`` setting), each row is typed and checked (``Product``), unknown columns become
attributes, category paths are normalised to ``A > B > C`` and image paths made absolute
against the catalogue's directory. Row numbers in errors count data rows from 1, the header
excluded, in file order; text formats also give the line the row starts on.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aisle.index.catalog_files import EXTRA_CELLS, CatalogFileError, RowSource, open_rows

#: Fields Aisle understands; any other column is kept as an attribute.
KNOWN_FIELDS = (
    "id",
    "title",
    "description",
    "brand",
    "category",
    "price",
    "in_stock",
    "image",
    "margin",
    "boost",
)
NUMERIC_FIELDS = ("price", "margin", "boost")
#: Fields whose text is embedded; a change in any of them means re-encoding the product.
EMBEDDED_FIELDS = ("title", "brand", "category", "description")
CATEGORY_SEPARATOR = " > "

# Includes the availability words of common shop feeds (e.g. Google Merchant's "in stock").
_TRUE = {"1", "true", "t", "yes", "y", "in stock", "in_stock", "instock", "available"}
_FALSE = {"0", "false", "f", "no", "n", "out of stock", "out_of_stock", "outofstock", "sold out", "unavailable"}


class CatalogError(ValueError):
    """The catalogue cannot be loaded; ``problems`` lists every bad row found."""

    def __init__(self, message: str, problems: list[RowProblem] | None = None) -> None:
        self.problems = problems or []
        lines = [message] + [f"  {problem}" for problem in self.problems[:50]]
        if len(self.problems) > 50:
            lines.append(f"  ... and {len(self.problems) - 50} more")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class RowProblem:
    """One bad row: its 1-based data row number, the field and what is wrong.

    ``line`` is the row's first line in a text file (CSV rows may span lines; the header is
    line 1), so that the row is easy to find in an editor; None for Parquet.
    """

    row: int
    field: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"row {self.row}" if self.line is None else f"row {self.row} (line {self.line})"
        return f"{where}, field '{self.field}': {self.message}"


@dataclass
class Product:
    """One catalogue row, typed and normalised."""

    id: str
    title: str
    description: str = ""
    brand: str = ""
    category: str = ""
    price: float | None = None
    in_stock: bool = True
    image: str = ""
    margin: float | None = None
    boost: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    #: ``image`` as the catalogue gave it (what responses return; ``image`` is the resolved path
    #: the build may read).
    image_source: str = ""

    def embedding_text(self, attributes: Sequence[str] = ()) -> str:
        """The text the encoder sees: title first, since models truncate long inputs.

        Args:
            attributes: attributes the schema embeds (role ``embedded``), appended after the
                category as ``value, value`` (before the description, which may be long).
        """
        parts = [self.title]
        if self.brand:
            parts.append(self.brand)
        if self.category:
            parts.append(self.category)
        values = [str(self.attributes[name]) for name in attributes if self.attributes.get(name) not in (None, "")]
        if values:
            parts.append(", ".join(values))
        if self.description:
            parts.append(self.description)
        return ". ".join(parts)

    def content_hash(self, attributes: Sequence[str] = ()) -> str:
        """sha256 of the embedded fields (and embedded ``attributes``) and the image path: equal
        hash, equal vector."""
        embedded = [getattr(self, name) for name in EMBEDDED_FIELDS] + [self.image]
        if attributes:  # only then: versions built before the role keep their hashes
            embedded.append([self.attributes.get(name) for name in attributes])
        payload = json.dumps(embedded, default=str)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass
class Catalog:
    """Products in file order, plus what was skipped."""

    products: list[Product]
    skipped: list[RowProblem] = field(default_factory=list)
    source: Path | None = None

    def __len__(self) -> int:
        return len(self.products)


_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def template_columns(spec: str) -> list[str] | None:
    """The columns a ``--map`` template combines (``"{a} > {b}"`` → ``["a", "b"]``), or None when
    ``spec`` is a plain column name."""
    if "{" not in spec and "}" not in spec:
        return None
    return [name.strip() for name in _PLACEHOLDER.findall(spec)]


def render_template(spec: str, record: Mapping[str, Any]) -> str:
    """A template filled in from a row's cells (blank cells give empty text)."""
    return _PLACEHOLDER.sub(lambda match: _text(record.get(match.group(1).strip())), spec)


def parse_column_map(pairs: list[str] | None) -> dict[str, str]:
    """Parses ``["title=productDisplayName", ...]`` into ``{"title": "productDisplayName"}``.

    The shop's side may be a template combining columns:
    ``category={masterCategory} > {subCategory}``.

    Raises:
        CatalogError: a pair without ``=``, with an empty side, or naming an unknown Aisle field.
    """
    mapping: dict[str, str] = {}
    for pair in pairs or []:
        aisle_field, sep, shop_column = pair.partition("=")
        if not sep or not aisle_field.strip() or not shop_column.strip():
            raise CatalogError(f"bad --map '{pair}': expected aisle_field=shop_column")
        mapping[aisle_field.strip()] = shop_column.strip()
    check_column_map(mapping)
    return mapping


def check_column_map(column_map: Mapping[str, str]) -> None:
    """Refuses a map onto a field Aisle does not know (most likely a typo).

    Raises:
        CatalogError: naming the unknown field and the known ones.
    """
    for aisle_field, spec in column_map.items():
        columns = template_columns(spec)
        stray_brace = "{" in _PLACEHOLDER.sub("", spec) or "}" in _PLACEHOLDER.sub("", spec)
        if columns is not None and (not columns or not all(columns) or stray_brace):
            raise CatalogError(
                f"bad --map template '{aisle_field}={spec}': name each column in braces, "
                "e.g. category={masterCategory} > {subCategory}"
            )
        if aisle_field not in KNOWN_FIELDS:
            raise CatalogError(
                f"cannot map a column to '{aisle_field}': Aisle's fields are {', '.join(KNOWN_FIELDS)} "
                "(other columns are kept as attributes without mapping)"
            )


def load_catalog(
    path: str | Path,
    column_map: Mapping[str, str] | None = None,
    *,
    skip_bad_rows: bool = False,
) -> Catalog:
    """Reads, maps and validates a catalogue file.

    Args:
        path: a ``.csv``/``.tsv``, ``.jsonl``/``.ndjson``/``.json`` or ``.parquet`` file.
        column_map: Aisle field → the shop's column name, e.g. ``{"title": "productDisplayName"}``.
        skip_bad_rows: skip invalid rows (reported in ``Catalog.skipped``) instead of failing.

    Raises:
        CatalogError: unreadable file, missing required column, or bad rows (without
            ``skip_bad_rows``), with one line per bad row naming row number and field.
    """
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"catalogue file not found: {path}")
    column_map = dict(column_map or {})
    check_column_map(column_map)
    try:
        source = open_rows(path)
        if source.columns is not None:
            _check_columns(path, set(source.columns), column_map)
        products, problems, seen_columns = _validate_rows(source, column_map, path.parent)
    except CatalogFileError as exc:
        raise CatalogError(str(exc)) from None
    if not products and not problems:
        raise CatalogError(f"catalogue {path} has no rows")
    if source.columns is None:  # JSON: a column counts as present when any row has it
        _check_columns(path, seen_columns, column_map)
    if problems and not skip_bad_rows:
        bad_rows = len({problem.row for problem in problems})
        raise CatalogError(f"catalogue {path}: {bad_rows} bad row(s); fix them or pass --skip-bad-rows", problems)
    # One entry per skipped row, naming its first problem.
    first_per_row: dict[int, RowProblem] = {}
    for problem in problems:
        first_per_row.setdefault(problem.row, problem)
    return Catalog(products, list(first_per_row.values()), path)


def product_from_record(record: Mapping[str, Any], *, row: int = 1, base_dir: Path | None = None) -> Product:
    """One catalogue row given as a mapping of Aisle field names (an API's product), validated.

    The same typing and checks as a row of a catalogue file, so a product sent to
    ``PUT /items/{id}`` is refused for exactly what would fail a build.

    Args:
        record: Aisle field name → value; unknown keys become attributes.
        row: the row number to name in problems (a batch's position).
        base_dir: directory relative image paths are resolved against; None keeps them as given.

    Raises:
        CatalogError: with one ``RowProblem`` per bad field.
    """
    product, problems = _to_product(dict(record), row, base_dir)
    if problems or product is None:
        raise CatalogError(f"product {row}: {len(problems)} bad field(s)", problems)
    return product


def _validate_rows(
    source: RowSource, column_map: Mapping[str, str], base_dir: Path
) -> tuple[list[Product], list[RowProblem], set[str]]:
    """Every valid product, every problem, and the (shop) column names seen in any row."""
    templates = {aisle: spec for aisle, spec in column_map.items() if template_columns(spec) is not None}
    mapped_from = {shop: aisle for aisle, shop in column_map.items() if aisle not in templates}
    products: list[Product] = []
    problems: list[RowProblem] = []
    seen_ids: dict[str, int] = {}
    seen_columns: set[str] = set()
    for row_number, (line, raw) in enumerate(source.rows, start=1):
        extra_cells = raw.pop(EXTRA_CELLS, None)
        if extra_cells:
            cells = ", ".join(repr(str(cell)[:40]) for cell in extra_cells[:3])
            problems.append(
                RowProblem(
                    row_number,
                    "(extra cells)",
                    f"{len(extra_cells)} cell(s) beyond the header's columns: {cells}",
                    line,
                )
            )
            continue
        seen_columns.update(raw)
        # A mapped column wins over an unmapped one already carrying the Aisle field's name.
        record = {key: value for key, value in raw.items() if key not in mapped_from and key not in column_map}
        record.update({mapped_from[key]: value for key, value in raw.items() if key in mapped_from})
        record.update({aisle: render_template(spec, raw) for aisle, spec in templates.items()})
        product, row_problems = _to_product(record, row_number, base_dir)
        if product is not None and product.id in seen_ids:
            row_problems.append(
                RowProblem(row_number, "id", f"duplicate id '{product.id}' (first seen in row {seen_ids[product.id]})")
            )
        if row_problems:
            problems.extend(RowProblem(p.row, p.field, p.message, line) for p in row_problems)
            continue
        assert product is not None
        seen_ids[product.id] = row_number
        products.append(product)
    return products, problems, seen_columns


def _check_columns(path: Path, columns: set[str], column_map: Mapping[str, str]) -> None:
    for aisle_field, shop_column in column_map.items():
        for used in template_columns(shop_column) or []:
            if used not in columns:
                raise CatalogError(
                    f"--map {aisle_field}={shop_column}: catalogue {path} has no column '{used}'; "
                    f"its columns are: {', '.join(sorted(columns))}"
                )
        if template_columns(shop_column) is not None:
            continue
        if shop_column not in columns:
            raise CatalogError(
                f"--map {aisle_field}={shop_column}: catalogue {path} has no column '{shop_column}'; "
                f"its columns are: {', '.join(sorted(columns))}"
            )
    for required in ("id", "title"):
        if required not in column_map and required not in columns:
            raise CatalogError(
                f"catalogue {path}: required column '{required}' is missing; its columns are: "
                f"{', '.join(sorted(columns))}. Map yours with --map {required}=<column>"
            )


def _is_blank(value: Any) -> bool:
    return (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, str) and not value.strip())
    )


def _to_product(record: dict[str, Any], row: int, base_dir: Path | None) -> tuple[Product | None, list[RowProblem]]:
    problems: list[RowProblem] = []
    raw_id = record.get("id")
    product_id = "" if _is_blank(raw_id) else _as_id(raw_id)
    if not product_id:
        problems.append(RowProblem(row, "id", "missing id"))
    title = "" if _is_blank(record.get("title")) else str(record["title"]).strip()
    if not title:
        problems.append(RowProblem(row, "title", "missing title"))
    numbers: dict[str, float | None] = {}
    for name in NUMERIC_FIELDS:
        try:
            numbers[name] = _as_number(record.get(name))
        except ValueError:
            problems.append(RowProblem(row, name, f"not a number: {record.get(name)!r}"))
    try:
        in_stock = _as_bool(record.get("in_stock"))
    except ValueError:
        problems.append(RowProblem(row, "in_stock", f"not a boolean: {record.get('in_stock')!r}"))
        in_stock = True
    if problems:
        return (Product(product_id, title) if product_id else None), problems
    attributes = {
        key: _plain(value) for key, value in record.items() if key not in KNOWN_FIELDS and not _is_blank(value)
    }
    return Product(
        id=product_id,
        title=title,
        description=_text(record.get("description")),
        brand=_text(record.get("brand")),
        category=normalize_category(_category_text(record.get("category"))),
        price=numbers["price"],
        in_stock=in_stock,
        image=_image_path(_text(record.get("image")), base_dir),
        image_source=_text(record.get("image")),
        margin=numbers["margin"],
        boost=numbers["boost"],
        attributes=attributes,
    ), []


def _as_id(value: Any) -> str:
    # Parquet/JSON integers and floats like 12.0 become "12", as a CSV would spell them.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def _text(value: Any) -> str:
    return "" if _is_blank(value) else " ".join(str(value).split())


def _category_text(value: Any) -> str:
    # Parquet and JSON exports often carry the path as a list: ["Home", "Kitchen", "Knives"].
    if isinstance(value, (list, tuple)):
        return ">".join(_text(part) for part in value if not _is_blank(part))
    return _text(value)


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)):
        return value
    return json.loads(json.dumps(value, default=str))


_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
# Thousands separators such as 1,299.00 (never a decimal comma).
_GROUPED = re.compile(r"\d{1,3}(,\d{3})+(\.\d+)?")


def _as_number(value: Any) -> float | None:
    if _is_blank(value):
        return None
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        text = str(value).strip().lstrip("$€£")
        if _GROUPED.fullmatch(text):
            text = text.replace(",", "")
        if not _NUMBER.fullmatch(text):
            raise ValueError(value)
        number = float(text)
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def _as_bool(value: Any) -> bool:
    if _is_blank(value):
        return True  # unknown stock is treated as available
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(value)


def normalize_category(path: str) -> str:
    """``"Home>Kitchen >  Knives"`` → ``"Home > Kitchen > Knives"``."""
    if not path:
        return ""
    return CATEGORY_SEPARATOR.join(part.strip() for part in path.split(">") if part.strip())


def _image_path(value: str, base_dir: Path | None) -> str:
    """An image file path made absolute against the catalogue's directory; URLs stay as they are."""
    if not value or "://" in value or base_dir is None:
        return value
    image = Path(value).expanduser()
    return str(image if image.is_absolute() else (base_dir / image).resolve())
