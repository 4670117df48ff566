"""A build run as its own process, for the crash test to kill: ``python -m tests.index.crash_worker ROOT N``.

Builds ``N`` synthetic products with the fast test encoder and an HNSW index, so that writing the
version takes long enough to be interrupted.
"""

from __future__ import annotations

import sys
from pathlib import Path

from aisle.index.build import BuildOptions, build_version
from aisle.index.catalog import Catalog, Product
from tests.index.conftest import TextSeedEncoder


def main(root: str, count: int) -> None:
    products = [Product(id=f"item-{i}", title=f"product number {i}", price=float(i % 500)) for i in range(count)]
    build_version(
        Catalog(products), Path(root), TextSeedEncoder(64), BuildOptions(index_type="hnsw", show_progress=False)
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
