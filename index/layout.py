"""What an index root and a published version directory hold, file by file.

Layout of an index root (see ``aisle.index.versions``)::

    ROOT/current -> versions/<name>       symlink, swapped atomically by rename
    ROOT/versions/<name>/                 one immutable directory per published version
    ROOT/.staging-<name>/                 a build in progress, or the remains of a crashed one

Layout of a version directory::

    manifest.json        what the version holds: format, version name, creation time, item
                         count, model name and fingerprint, per vector space its dimension,
                         file names and index type with parameters, the source catalogue, and
                         the size and sha256 of every other file. Written last.
    ids.json             the id map: a JSON array whose entry ``r`` is the product id of row ``r``
    items.parquet        product metadata, one row per product, columnar (Parquet), plus the
                         content hash of each product's embedded fields
    vectors.text.npy     float32 matrix ``(count, dim)`` of unit vectors (``.npy``, no pickle)
    index.text.faiss     the FAISS index of those vectors
    lexical/             the BM25 index of the products' text (``aisle.index.lexical``)
    vectors.image.npy    with an image model: the pictures' unit vectors (zero rows for products
    index.image.faiss    without a readable picture) and their FAISS index
    pictures.parquet     when any product has an image: per row the picture's status, dominant
                         colours, near-duplicate signatures and group (``aisle.index.pictures``)

Every file is aligned on the row number: row ``r`` of ``items.parquet``, of the vectors and of
BM25, and FAISS's internal id ``r`` (vectors are added in row order, without an ``IDMap``), all
describe the product ``ids.json[r]``. The id map is therefore the only place where a product id
meets a row number, and loading checks that it agrees with the item table.
"""

from __future__ import annotations

import json
from pathlib import Path

from aisle.index.storage import atomic_write_bytes

MANIFEST_FILE = "manifest.json"
ID_MAP_FILE = "ids.json"
ITEMS_FILE = "items.parquet"
VECTORS_FILE = "vectors.{space}.npy"
FAISS_FILE = "index.{space}.faiss"
LEXICAL_DIR = "lexical"
#: Typed columns of the attributes that can be filtered, counted or sorted (see ``aisle.index.fields``).
FIELDS_FILE = "fields.parquet"
PICTURES_FILE = "pictures.parquet"


def vectors_file(space: str) -> str:
    """File name of a vector space's matrix, e.g. ``vectors.text.npy``."""
    return VECTORS_FILE.format(space=space)


def faiss_file(space: str) -> str:
    """File name of a vector space's FAISS index, e.g. ``index.text.faiss``."""
    return FAISS_FILE.format(space=space)


def write_id_map(path: Path, ids: list[str]) -> None:
    """Writes the row → product id map (crash-safe: temp file, fsync, rename)."""
    atomic_write_bytes(path, json.dumps(ids, ensure_ascii=False).encode("utf-8"))


def read_id_map(path: Path) -> list[str]:
    """Reads the id map, checking that it is a JSON array of strings.

    Raises:
        ValueError: the file is not a JSON array of strings.
    """
    ids = json.loads(path.read_bytes())
    if not isinstance(ids, list) or not all(isinstance(item_id, str) for item_id in ids):
        raise ValueError(f"{path.name} is not a JSON array of product ids")
    return ids
