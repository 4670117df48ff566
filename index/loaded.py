"""A published version loaded for queries, validated before use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aisle.index.ann import INDEX_TYPES, AnnIndex, AnnParams
from aisle.index.fields import FieldIndex
from aisle.index.items import ItemTable
from aisle.index.layout import read_id_map
from aisle.index.lexical import LexicalIndex
from aisle.index.manifest import IndexValidationError, read_manifest, require_listed, verify_files
from aisle.index.pictures import read_picture_groups
from aisle.index.schema import Schema


@dataclass
class VectorSpace:
    """One modality's vectors and ANN index.

    ``present`` marks the rows that have a vector: every row in the text space; in the image
    space only products whose picture was read (the others hold zero rows).
    """

    name: str
    vectors: np.ndarray
    ann: AnnIndex
    fingerprint: str
    present: np.ndarray | None = None
    model: str = ""


class LoadedIndex:
    """Everything a query needs from one immutable version: items, vectors, ANN and BM25."""

    def __init__(
        self,
        path: Path,
        manifest: dict[str, Any],
        items: ItemTable,
        spaces: dict[str, VectorSpace],
        lexical: LexicalIndex,
    ) -> None:
        self.path = path
        self.manifest = manifest
        self.items = items
        self.spaces = spaces
        self.lexical = lexical

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def text(self) -> VectorSpace:
        return self.spaces["text"]

    @property
    def image(self) -> VectorSpace | None:
        """The image space (a version built with an image model), else None."""
        return self.spaces.get("image")

    def __len__(self) -> int:
        return len(self.items)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        expected_fingerprint: str | None = None,
        verify_checksums: bool = True,
        ef_search: int | None = None,
        nprobe: int | None = None,
    ) -> LoadedIndex:
        """Loads and validates a version directory.

        Args:
            path: the version directory (or a ``current`` symlink to one).
            expected_fingerprint: the text encoder's fingerprint the caller will query with;
                a version built with another model is refused.
            verify_checksums: check every file's sha256 (sizes are always checked).
            ef_search: HNSW beam width to search with instead of the one the version was built
                with (a serving-time trade of latency for recall, no rebuild needed).
            nprobe: the same for the IVF cells scanned per query.

        Raises:
            IndexValidationError: with a message naming the version and what is wrong.
        """
        path = Path(path).resolve()
        if not path.is_dir():
            raise IndexValidationError(f"index version not found: {path}")
        manifest = read_manifest(path)
        verify_files(path, manifest, checksums=verify_checksums)
        try:
            count = int(manifest["count"])
            items = ItemTable.read(require_listed(path, manifest, manifest["items"]))
            if len(items) != count:
                raise IndexValidationError(f"{path}: {len(items)} items but the manifest says {count}")
            attributes = {}
            if "fields" in manifest:  # versions built before schemas have Aisle's fields only
                attributes = FieldIndex.read_attributes(require_listed(path, manifest, manifest["fields"]))
                if any(len(column) != count for column in attributes.values()):
                    raise IndexValidationError(f"{path}: the fields file does not have {count} rows")
            items.configure(Schema.from_manifest(manifest.get("schema")), attributes)
            _check_id_map(path, manifest, items)
            spaces = {
                name: _load_space(path, manifest, name, entry, count, ef_search, nprobe)
                for name, entry in manifest["spaces"].items()
            }
            lexical = LexicalIndex.load(require_listed(path, manifest, manifest["lexical"]), count)
            pictures = manifest.get("pictures")
            if isinstance(pictures, dict):
                items.set_picture_groups(read_picture_groups(require_listed(path, manifest, pictures["file"]), count))
        except IndexValidationError:
            raise
        except (KeyError, TypeError, ValueError, OSError, RuntimeError) as exc:
            raise IndexValidationError(f"{path}: cannot load version ({type(exc).__name__}: {exc})") from None
        if "text" not in spaces:
            raise IndexValidationError(f"{path}: no text vector space")
        if expected_fingerprint is not None and spaces["text"].fingerprint != expected_fingerprint:
            raise IndexValidationError(
                f"{path}: built with model {spaces['text'].fingerprint}, but this service encodes "
                f"queries with {expected_fingerprint}; rebuild the index or configure that model"
            )
        return cls(path, manifest, items, spaces, lexical)


def _check_id_map(path: Path, manifest: dict[str, Any], items: ItemTable) -> None:
    # Versions written before the id map existed rely on the item table's order alone.
    if "ids" not in manifest:
        return
    ids = read_id_map(require_listed(path, manifest, manifest["ids"]))
    if ids != items.ids:
        raise IndexValidationError(f"{path}: the id map does not match the item table's ids")
    if len(items.row_of) != len(ids):
        raise IndexValidationError(f"{path}: the id map repeats a product id")


def _load_space(
    path: Path,
    manifest: dict[str, Any],
    name: str,
    entry: dict[str, Any],
    count: int,
    ef_search: int | None = None,
    nprobe: int | None = None,
) -> VectorSpace:
    vectors = np.load(require_listed(path, manifest, entry["vectors"]), mmap_mode="r", allow_pickle=False)
    dim = int(entry["dim"])
    if vectors.dtype != np.float32 or vectors.ndim != 2 or vectors.shape[1] != dim:
        raise IndexValidationError(
            f"{path}: {name} vectors are {vectors.dtype} {vectors.shape}, the manifest says float32 (*, {dim})"
        )
    if vectors.shape[0] != count:
        raise IndexValidationError(f"{path}: {vectors.shape[0]} {name} vectors for {count} items")
    params = AnnParams(**entry["index"])
    if params.type not in INDEX_TYPES:
        raise IndexValidationError(f"{path}: unknown index type {params.type!r} in the manifest")
    ann = AnnIndex.load(require_listed(path, manifest, entry["faiss"]), vectors, params)
    if ann.faiss_index.d != dim or len(ann) != count:
        raise IndexValidationError(
            f"{path}: {name} FAISS index has dim {ann.faiss_index.d} and {len(ann)} rows, expected {dim} and {count}"
        )
    ann = ann.with_search_params(ef_search, nprobe)
    # A plain ndarray view of the memory map: slicing an np.memmap builds a memmap object per
    # call, a measurable cost when every request gathers a few hundred candidate rows.
    matrix = np.asarray(vectors)
    present = None if name == "text" else np.einsum("ij,ij->i", matrix, matrix) > 0
    return VectorSpace(name, matrix, ann, str(entry["fingerprint"]), present, str(entry.get("model", "")))
