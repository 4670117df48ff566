"""Real product texts and real queries from the shared evaluation data (never copied here).

Base products come from every real product listing under ``../shared/data/dev``: the
Amazon-Google corpus and its second shop's listings, Amazon Industrial & Scientific items, Amazon
ESCI products and Myntra fashion products. Queries are the WANDS furniture search queries.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SHARED_DATA_ENV = "AISLE_SHARED_DATA"
REPO_ROOT = Path(__file__).resolve().parent.parent


class MissingDataError(FileNotFoundError):
    """The shared evaluation data is absent; the message says where it was looked for."""


def shared_data_dir() -> Path:
    """``$AISLE_SHARED_DATA`` or ``<repo>/../shared/data``.

    Raises:
        MissingDataError: the directory does not exist.
    """
    path = Path(os.environ.get(SHARED_DATA_ENV) or REPO_ROOT.parent / "shared" / "data")
    if not path.is_dir():
        raise MissingDataError(f"shared evaluation data not found at {path}; set {SHARED_DATA_ENV} to its location")
    return path


@dataclass(frozen=True)
class BaseProduct:
    """One real product listing, the seed of the synthetic variants."""

    source: str
    title: str
    brand: str
    category: str
    price: float | None

    def embedding_text(self) -> str:
        """The text encoded for this product, in the order ``aisle.index.catalog.Product`` uses."""
        return ". ".join(part for part in (self.title, self.brand, self.category) if part)


def _read_csv(path: Path, delimiter: str = ",") -> Iterator[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        yield from csv.DictReader(handle, delimiter=delimiter)


def _price(text: str | None) -> float | None:
    try:
        value = float(text) if text else None
    except ValueError:
        return None
    return value if value is not None and value > 0 else None


def _amazon_google(root: Path) -> Iterator[BaseProduct]:
    folder = root / "dev" / "search" / "amazon_google"
    for name, title_column in (("corpus.csv", "title"), ("queries.csv", "query")):
        for row in _read_csv(folder / name):
            yield BaseProduct(
                "amazon_google",
                row[title_column].strip(),
                (row.get("manufacturer") or "").strip(),
                "Software & Electronics",
                _price(row.get("price")),
            )


def _scientific(root: Path) -> Iterator[BaseProduct]:
    path = root / "dev" / "recsys" / "amazon_scientific_unisrec" / "Scientific.text"
    for row in _read_csv(path, delimiter="\t"):
        # UniSRec joins "title. category path. brand." into one field.
        parts = [p.strip() for p in row["text:token_seq"].split(". ") if p.strip()]
        title = parts[0] if parts else ""
        brand = parts[-1].rstrip(".") if len(parts) >= 3 else ""
        category = parts[1] if len(parts) >= 3 else "Industrial & Scientific"
        yield BaseProduct("amazon_scientific", title, brand, category, None)


def _esci(root: Path) -> Iterator[BaseProduct]:
    for row in _read_csv(root / "dev" / "search" / "esci_fragments" / "products.csv"):
        yield BaseProduct("esci", row["product_title"].strip(), (row["product_brand"] or "").strip(), "Amazon", None)


def _fashion(root: Path) -> Iterator[BaseProduct]:
    for row in _read_csv(root / "dev" / "images" / "fashion" / "styles.csv"):
        name = row["productDisplayName"].strip()
        category = " > ".join(row[c] for c in ("masterCategory", "subCategory", "articleType") if row[c])
        yield BaseProduct("fashion", name, name.split(" ")[0] if name else "", category, None)


def load_base_products(limit: int | None = None) -> list[BaseProduct]:
    """Every real product listing with a title, de-duplicated by embedding text, in file order.

    Args:
        limit: keep only the first ``limit`` products, interleaving the sources so that a small
            sample still covers all of them.
    """
    root = shared_data_dir()
    sources = [list(loader(root)) for loader in (_amazon_google, _scientific, _esci, _fashion)]
    seen: set[str] = set()
    products: list[BaseProduct] = []
    # Round-robin over the sources: a prefix of the result is a fair sample of all four.
    for position in range(max(len(s) for s in sources)):
        for source in sources:
            if position < len(source) and source[position].title:
                product = source[position]
                if product.embedding_text() not in seen:
                    seen.add(product.embedding_text())
                    products.append(product)
    return products[:limit] if limit else products


def load_queries() -> list[str]:
    """The 480 real WANDS search queries (furniture and home goods), in file order."""
    path = shared_data_dir() / "dev" / "search" / "wands" / "query.csv"
    if not path.is_file():
        raise MissingDataError(f"WANDS queries not found at {path}")
    return [row["query"].strip() for row in _read_csv(path, delimiter="\t") if row["query"].strip()]
