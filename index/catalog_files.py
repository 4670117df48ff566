"""Reading the rows of a catalogue file: CSV (or TSV), JSON Lines (or a JSON array), Parquet.

Each reader yields ``(line, record)`` pairs in file order, ``line`` being where the row starts in
a text file (None for Parquet), and knows the file's columns up front when the format has a
header or schema (CSV, Parquet); JSON rows may each carry different keys.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}


#: Key under which a CSV row carries its non-blank cells beyond the header (a bad row).
EXTRA_CELLS = "\x00extra cells"


class CatalogFileError(ValueError):
    """The file cannot be read as a catalogue at all (format, encoding, syntax)."""


@dataclass
class RowSource:
    """A catalogue file's columns (None when rows may differ) and its rows."""

    columns: list[str] | None
    rows: Iterator[tuple[int | None, dict[str, Any]]]


def open_rows(path: Path) -> RowSource:
    """Opens a catalogue file by its suffix.

    Raises:
        CatalogFileError: unsupported suffix or unreadable header; errors met later (bad UTF-8,
            bad JSON on some line) are raised while iterating ``rows``.
    """
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise CatalogFileError(
            f"unsupported catalogue format '{path.suffix}' for {path}: use .csv, .tsv, .jsonl or .parquet"
        )
    if kind in ("csv", "tsv"):
        return _open_csv(path, "\t" if kind == "tsv" else ",")
    if kind == "parquet":
        return _open_parquet(path)
    if kind == "json" and _starts_with_array(path):
        return RowSource(None, _read_json_array(path))
    return RowSource(None, _read_jsonl(path))


def _open_csv(path: Path, delimiter: str) -> RowSource:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle, delimiter=delimiter), None)
    except UnicodeDecodeError as exc:
        raise CatalogFileError(f"catalogue {path} is not UTF-8 text: {exc}") from None
    columns = [name.strip() for name in header] if header else []
    return RowSource(columns, _read_csv(path, delimiter, columns))


def _read_csv(path: Path, delimiter: str, columns: list[str]) -> Iterator[tuple[int | None, dict[str, Any]]]:
    """Rows of a CSV file; a quote left open is an error naming the row and the field.

    ``strict`` makes the reader refuse a quoted value that does not end at a delimiter or a line
    end, and one still open at the end of the file: without it, one stray quote silently made
    the following rows part of a single value.
    """
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=delimiter, strict=True)
        row = 0
        line = 1
        try:
            next(reader, None)  # the header, already read
            line = reader.line_num + 1
            for cells in reader:
                if any(cell.strip() for cell in cells):  # blank lines are not rows
                    row += 1
                    # Short rows leave trailing columns empty; non-blank surplus cells make a bad row.
                    record: dict[str, Any] = dict(zip(columns, cells + [""] * (len(columns) - len(cells))))
                    extra = [cell for cell in cells[len(columns) :] if cell.strip()]
                    if extra:
                        record[EXTRA_CELLS] = extra
                    yield line, record
                line = reader.line_num + 1
        except UnicodeDecodeError as exc:
            raise CatalogFileError(f"catalogue {path} is not UTF-8 text: {exc}") from None
        except csv.Error as exc:
            field = _open_quote_field(path, line, delimiter, columns)
            where = f"row {row + 1} (line {line})" + (f", field '{field}'" if field else "")
            raise CatalogFileError(
                f"catalogue {path}, {where}: unbalanced quote: the quoted value runs on to line "
                f'{reader.line_num} ({exc}); close the quote, or double it ("") inside a quoted value'
            ) from None


def _open_quote_field(path: Path, line: int, delimiter: str, columns: list[str]) -> str | None:
    """The column whose quoted value opens on ``line`` and is not closed on it (None if none)."""
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        text = next(itertools.islice(handle, line - 1, None), "")
    chars = text.rstrip("\r\n")
    field, quoted, opened, at_start, index = 0, False, None, True, 0
    while index < len(chars):
        char = chars[index]
        if quoted:
            if char == '"':
                if chars[index + 1 : index + 2] == '"':  # a doubled quote inside the value
                    index += 1
                else:
                    quoted = False
        elif char == delimiter:
            field, at_start = field + 1, True
            index += 1
            continue
        elif char == '"' and at_start:
            quoted, opened = True, field
        at_start = False
        index += 1
    if not quoted or opened is None:
        return None
    return columns[opened] if opened < len(columns) else f"cell {opened + 1}"


def _read_jsonl(path: Path) -> Iterator[tuple[int | None, dict[str, Any]]]:
    try:
        with path.open(encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CatalogFileError(f"catalogue {path}, line {line_number}: invalid JSON: {exc}") from None
                if not isinstance(record, dict):
                    raise CatalogFileError(f"catalogue {path}, line {line_number}: expected a JSON object per line")
                yield line_number, record
    except UnicodeDecodeError as exc:
        raise CatalogFileError(f"catalogue {path} is not UTF-8 text: {exc}") from None


def _starts_with_array(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"[")


def _read_json_array(path: Path) -> Iterator[tuple[int | None, dict[str, Any]]]:
    try:
        records = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CatalogFileError(f"catalogue {path}: invalid JSON: {exc}") from None
    for record in records:
        if not isinstance(record, dict):
            raise CatalogFileError(f"catalogue {path}: expected an array of JSON objects")
        yield None, record


def _open_parquet(path: Path) -> RowSource:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise CatalogFileError(f"cannot read Parquet file {path}: {exc}") from None
    return RowSource(list(parquet.schema_arrow.names), _read_parquet(parquet))


def _read_parquet(parquet: Any) -> Iterator[tuple[int | None, dict[str, Any]]]:
    for batch in parquet.iter_batches(batch_size=8192):
        for record in batch.to_pylist():
            yield None, record
