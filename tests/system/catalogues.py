"""Real product listings (Amazon-Google fixture) as two small catalogues for the system tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path

PRODUCTS_PER_CATALOGUE = 40


def write_catalogues(shared_data: Path, out: Path) -> dict[str, Path]:
    """Catalogues ``a`` and ``b``: ids p-0..p-39, different real products, titles marked [a]/[b]."""
    with (shared_data / "fixture/search/amazon_google/corpus.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    paths = {}
    for number, marker in enumerate(("a", "b")):
        chosen = rows[number * PRODUCTS_PER_CATALOGUE : (number + 1) * PRODUCTS_PER_CATALOGUE]
        path = out / f"catalog-{marker}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for row_number, row in enumerate(chosen):
                handle.write(
                    json.dumps(
                        {
                            "id": f"p-{row_number}",
                            "title": f"{row['title']} [{marker}]",
                            "brand": row["manufacturer"],
                            "price": row["price"] or None,
                        }
                    )
                    + "\n"
                )
        paths[marker] = path
    return paths


def load_queries(shared_data: Path) -> list[str]:
    with (shared_data / "fixture/search/amazon_google/queries.csv").open(newline="", encoding="utf-8") as handle:
        return [row["query"] for row in csv.DictReader(handle)][:50]
