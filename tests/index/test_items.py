"""``ItemTable``: the item rows a response shows, read back from the items file."""

from __future__ import annotations

from pathlib import Path

from aisle.index.catalog import Product
from aisle.index.items import ItemTable, write_items
from aisle.index.schema import infer_schema


def test_results_leave_blanks_out_and_return_only_public_fields(tmp_path: Path) -> None:
    products = [
        Product("p-1", "Oak desk", description="", brand="Acme", price=None, attributes={}),
        Product(
            "p-2",
            "Pine desk",
            category="Office > Desks",
            price=120.5,
            in_stock=False,
            margin=0.3,
            attributes={"colour": "pine", "legs": 4, "title": "not the title"},
        ),
    ]
    write_items(tmp_path / "items.parquet", products, ["h1", "h2"])
    items = ItemTable.read(tmp_path / "items.parquet")

    assert items.to_result(0) == {"id": "p-1", "title": "Oak desk", "brand": "Acme", "in_stock": True}
    assert items.to_result(1) == {
        "id": "p-2",
        "title": "Pine desk",
        "category": "Office > Desks",
        "price": 120.5,
        "in_stock": False,
    }
    # Attributes configured public are returned (never over Aisle's own fields); margin never.
    items.configure(infer_schema([p.attributes for p in products], {"colour": ["public"], "legs": ["public"]}), {})
    assert items.to_result(1) == {
        "id": "p-2",
        "title": "Pine desk",
        "category": "Office > Desks",
        "price": 120.5,
        "in_stock": False,
        "colour": "pine",
        "legs": 4,
    }
