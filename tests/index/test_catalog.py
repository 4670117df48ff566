"""The contract's catalogue file format: CSV, JSON Lines and Parquet, column maps, bad rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from aisle.index.catalog import CatalogError, load_catalog, normalize_category, parse_column_map

ROWS: list[dict[str, Any]] = [
    {
        "id": "p1",
        "title": "Chef's knife 20 cm",
        "description": "Forged  steel\nblade",
        "brand": "Wüsthof",
        "category": "Home>Kitchen >  Knives",
        "price": 89.5,
        "in_stock": True,
        "image": "img/p1.jpg",
        "margin": 0.3,
        "boost": 1.0,
        "colour": "black",
    },
    {
        "id": "p2",
        "title": "Bread knife",
        "description": "",
        "brand": "Victorinox",
        "category": "Home > Kitchen > Knives",
        "price": 35.0,
        "in_stock": False,
        "image": "/srv/images/p2.png",
        "margin": 0.25,
        "boost": 0.0,
        "colour": "red",
    },
    {
        "id": "3",
        "title": "Cutting board",
        "description": "Oak",
        "brand": "",
        "category": "Home > Kitchen",
        "price": 12.0,
        "in_stock": True,
        "image": "",
        "margin": 0.5,
        "boost": 0.0,
        "colour": "",
    },
]


def write_csv(path: Path, rows: list[dict[str, Any]], delimiter: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_csv_jsonl_and_parquet_with_the_same_rows_load_identically(tmp_path: Path) -> None:
    from_csv = load_catalog(write_csv(tmp_path / "c.csv", ROWS))
    from_tsv = load_catalog(write_csv(tmp_path / "c.tsv", ROWS, delimiter="\t"))
    from_jsonl = load_catalog(write_jsonl(tmp_path / "c.jsonl", ROWS))
    from_parquet = load_catalog(write_parquet(tmp_path / "c.parquet", ROWS))
    assert len(from_csv) == 3
    assert from_csv.products == from_tsv.products == from_jsonl.products == from_parquet.products
    first = from_csv.products[0]
    assert first.description == "Forged steel blade"  # whitespace collapsed
    assert (first.price, first.in_stock, first.margin) == (89.5, True, 0.3)
    assert from_csv.products[1].in_stock is False


def test_json_array_file_loads_like_json_lines(tmp_path: Path) -> None:
    array = tmp_path / "c.json"
    array.write_text(json.dumps(ROWS), encoding="utf-8")
    assert load_catalog(array).products == load_catalog(write_jsonl(tmp_path / "c.jsonl", ROWS)).products


def test_unknown_columns_are_kept_as_attributes(tmp_path: Path) -> None:
    products = load_catalog(write_csv(tmp_path / "c.csv", ROWS)).products
    assert products[0].attributes == {"colour": "black"}
    assert products[2].attributes == {}  # blank values are not attributes


def test_column_map_loads_a_shop_export_without_editing_it(tmp_path: Path) -> None:
    shop_rows = [
        {"sku": r["id"], "productDisplayName": r["title"], "cost": r["price"], "colour": r["colour"]} for r in ROWS
    ]
    path = write_csv(tmp_path / "export.csv", shop_rows)
    mapping = parse_column_map(["id=sku", "title=productDisplayName", "price=cost"])
    catalog = load_catalog(path, mapping)
    assert [p.id for p in catalog.products] == ["p1", "p2", "3"]
    assert catalog.products[0].title == "Chef's knife 20 cm"
    assert catalog.products[0].price == 89.5
    assert catalog.products[0].attributes == {"colour": "black"}
    with pytest.raises(CatalogError, match="required column 'title' is missing.*--map title="):
        load_catalog(path, {"id": "sku"})


def test_bad_column_maps_are_refused_with_the_reason(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", ROWS)
    with pytest.raises(CatalogError, match="expected aisle_field=shop_column"):
        parse_column_map(["title"])
    with pytest.raises(CatalogError, match="cannot map a column to 'titel'"):
        parse_column_map(["titel=name"])
    with pytest.raises(CatalogError, match="has no column 'productName'"):
        load_catalog(path, {"title": "productName"})


def test_category_paths_are_normalised() -> None:
    assert normalize_category("Home>Kitchen >  Knives") == "Home > Kitchen > Knives"
    assert normalize_category(" > Garden >") == "Garden"
    assert normalize_category("") == ""


def test_category_given_as_a_list_becomes_a_path(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "c.jsonl", [{"id": "a", "title": "Knife", "category": ["Home", " Kitchen "]}])
    assert load_catalog(path).products[0].category == "Home > Kitchen"


def test_image_paths_are_relative_to_the_catalogue_file(tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    rows = [
        {"id": "a", "title": "A", "image": "img/a.jpg"},
        {"id": "b", "title": "B", "image": "/srv/b.png"},
        {"id": "c", "title": "C", "image": "https://cdn.example.com/c.jpg"},
    ]
    products = load_catalog(write_csv(folder / "c.csv", rows)).products
    assert products[0].image == str((folder / "img" / "a.jpg").resolve())
    assert products[1].image == "/srv/b.png"
    assert products[2].image == "https://cdn.example.com/c.jpg"


def test_prices_and_stock_in_shop_spellings(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "title": "A", "price": "1,299.00", "in_stock": "In stock"},
        {"id": "b", "title": "B", "price": "$5", "in_stock": "out of stock"},
        {"id": "c", "title": "C", "price": "", "in_stock": ""},
        {"id": "d", "title": "D", "price": "1e2", "in_stock": "0"},
    ]
    products = load_catalog(write_csv(tmp_path / "c.csv", rows)).products
    assert [(p.price, p.in_stock) for p in products] == [(1299.0, True), (5.0, False), (None, True), (100.0, False)]


BAD_ROWS = [
    {"id": "a", "title": "Good one", "price": "10"},
    {"id": "a", "title": "Duplicate", "price": "11"},
    {"id": "c", "title": "", "price": "12"},
    {"id": "d", "title": "Priced in words", "price": "abc"},
    {"id": "e", "title": "Also good", "price": "13"},
]


def test_bad_rows_fail_with_one_message_per_row_naming_row_and_field(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "bad.csv", BAD_ROWS)
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    problems = caught.value.problems
    assert [(p.row, p.field) for p in problems] == [(2, "id"), (3, "title"), (4, "price")]
    message = str(caught.value)
    assert "3 bad row(s); fix them or pass --skip-bad-rows" in message
    assert "row 2 (line 3), field 'id': duplicate id 'a' (first seen in row 1)" in message
    assert "row 3 (line 4), field 'title': missing title" in message
    assert "row 4 (line 5), field 'price': not a number: 'abc'" in message


def test_skip_bad_rows_keeps_the_good_ones_and_counts_the_rest(tmp_path: Path) -> None:
    catalog = load_catalog(write_csv(tmp_path / "bad.csv", BAD_ROWS), skip_bad_rows=True)
    assert [p.id for p in catalog.products] == ["a", "e"]
    assert [(p.row, p.field) for p in catalog.skipped] == [(2, "id"), (3, "title"), (4, "price")]


def test_parquet_and_jsonl_bad_rows_name_row_and_field(tmp_path: Path) -> None:
    for path in (write_parquet(tmp_path / "bad.parquet", BAD_ROWS), write_jsonl(tmp_path / "bad.jsonl", BAD_ROWS)):
        with pytest.raises(CatalogError) as caught:
            load_catalog(path)
        assert [(p.row, p.field) for p in caught.value.problems] == [(2, "id"), (3, "title"), (4, "price")]


def test_unreadable_files_fail_with_a_clear_message(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="catalogue file not found"):
        load_catalog(tmp_path / "missing.csv")
    (tmp_path / "c.xlsx").write_bytes(b"PK")
    with pytest.raises(CatalogError, match="unsupported catalogue format '.xlsx'"):
        load_catalog(tmp_path / "c.xlsx")
    (tmp_path / "c.jsonl").write_text('{"id": "a", "title": "A"}\n{"id": "b", "title": \n', encoding="utf-8")
    with pytest.raises(CatalogError, match="line 2: invalid JSON"):
        load_catalog(tmp_path / "c.jsonl")
    (tmp_path / "latin.csv").write_bytes("id,title\n1,Caf\xe9\n".encode("latin-1"))
    with pytest.raises(CatalogError, match="not UTF-8"):
        load_catalog(tmp_path / "latin.csv")
    (tmp_path / "empty.csv").write_text("id,title\n", encoding="utf-8")
    with pytest.raises(CatalogError, match="has no rows"):
        load_catalog(tmp_path / "empty.csv")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(CatalogError, match="cannot read Parquet file"):
        load_catalog(tmp_path / "broken.parquet")


def test_content_hash_changes_only_with_embedded_fields(tmp_path: Path) -> None:
    base = load_catalog(write_csv(tmp_path / "a.csv", ROWS)).products
    repriced = [dict(row, price=row["price"] + 1, in_stock=not row["in_stock"]) for row in ROWS]
    retitled = [dict(ROWS[0], title="Chef's knife 21 cm"), *ROWS[1:]]
    assert [p.content_hash() for p in load_catalog(write_csv(tmp_path / "b.csv", repriced)).products] == [
        p.content_hash() for p in base
    ]
    changed = [p.content_hash() for p in load_catalog(write_csv(tmp_path / "c.csv", retitled)).products]
    assert changed[0] != base[0].content_hash() and changed[1:] == [p.content_hash() for p in base[1:]]
