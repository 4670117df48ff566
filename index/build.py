"""The offline rebuild: catalogue → vectors (re-using unchanged ones) → index → published version."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from embed.base import Encoder
from index.ann import AnnIndex, AnnParams, choose_index_type
from index.catalog import Catalog
from index.items import ITEMS_FILE, ItemTable, write_items
from index.lexical import LexicalIndex
from index.manifest import IndexValidationError, read_manifest, write_manifest
from index.versions import VersionStore

log = logging.getLogger(__name__)

VECTORS_FILE = "vectors.{space}.npy"
FAISS_FILE = "index.{space}.faiss"
LEXICAL_DIR = "lexical"


@dataclass(frozen=True)
class BuildOptions:
    """How to build a version.

    Attributes:
        index_type: ``None`` picks by catalogue size (see ``index.ann``), else ``flat``,
            ``hnsw`` or ``hnsw-sq8``.
        hnsw_m, ef_construction, ef_search: HNSW parameters.
        keep_versions: how many published versions to keep on disk.
        batch_size: encoder batch size.
        show_progress: draw a progress bar while encoding.
        reuse_vectors: re-use the current version's vectors for unchanged products.
    """

    index_type: str | None = None
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 128
    keep_versions: int = 5
    batch_size: int = 64
    show_progress: bool = True
    reuse_vectors: bool = True


@dataclass
class BuildReport:
    version: str
    path: Path
    items: int
    encoded: int
    reused: int
    skipped: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)


def build_version(
    catalog: Catalog,
    out: str | Path,
    encoder: Encoder,
    options: BuildOptions = BuildOptions(),
) -> BuildReport:
    """Builds a new immutable version from ``catalog`` under ``out`` and makes it current."""
    started = time.perf_counter()
    store = VersionStore(out)
    products = catalog.products
    if not products:
        raise ValueError("the catalogue has no valid products; nothing to index")
    hashes = [p.content_hash() for p in products]
    timings: dict[str, float] = {}

    tick = time.perf_counter()
    previous = _previous_vectors(store, encoder.fingerprint) if options.reuse_vectors else {}
    vectors = np.empty((len(products), encoder.dim), dtype=np.float32)
    missing = [row for row, h in enumerate(hashes) if h not in previous]
    for row, h in enumerate(hashes):
        if h in previous:
            vectors[row] = previous[h]
    if missing:
        vectors[missing] = encoder.encode_documents(
            [products[row].embedding_text() for row in missing],
            batch_size=options.batch_size, show_progress=options.show_progress,
        )
    timings["encode"] = time.perf_counter() - tick

    params = AnnParams(
        type=options.index_type or choose_index_type(len(products)),  # type: ignore[arg-type]
        hnsw_m=options.hnsw_m, ef_construction=options.ef_construction, ef_search=options.ef_search,
    )
    name, staging = store.stage()
    try:
        tick = time.perf_counter()
        np.save(staging / VECTORS_FILE.format(space="text"), vectors, allow_pickle=False)
        AnnIndex.build(vectors, params).save(staging / FAISS_FILE.format(space="text"))
        timings["index"] = time.perf_counter() - tick
        tick = time.perf_counter()
        write_items(staging / ITEMS_FILE, products, hashes)
        LexicalIndex.build([p.embedding_text() for p in products]).save(staging / LEXICAL_DIR)
        timings["metadata"] = time.perf_counter() - tick
        write_manifest(staging, {
            "version": name,
            "count": len(products),
            "model": {"name": encoder.name, "fingerprint": encoder.fingerprint},
            "spaces": {
                "text": {
                    "dim": encoder.dim,
                    "vectors": VECTORS_FILE.format(space="text"),
                    "faiss": FAISS_FILE.format(space="text"),
                    "index": params.to_dict(),
                    "fingerprint": encoder.fingerprint,
                },
            },
            "items": ITEMS_FILE,
            "lexical": LEXICAL_DIR,
            "source": {
                "catalog": str(catalog.source) if catalog.source else None,
                "skipped_rows": len(catalog.skipped),
            },
        })
        path = store.publish(name, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    store.prune(options.keep_versions)
    return BuildReport(
        version=name, path=path, items=len(products), encoded=len(missing),
        reused=len(products) - len(missing), skipped=len(catalog.skipped),
        seconds=time.perf_counter() - started, timings=timings,
    )


def _previous_vectors(store: VersionStore, fingerprint: str) -> dict[str, np.ndarray]:
    """content hash → vector from the current version, when it was built with the same model."""
    try:
        path = store.current_path()
        manifest = read_manifest(path)
    except (IndexValidationError, RuntimeError):
        return {}
    space = manifest.get("spaces", {}).get("text", {})
    if space.get("fingerprint") != fingerprint:
        log.info("current version used another model; every product is re-encoded")
        return {}
    try:
        vectors = np.load(path / space["vectors"], mmap_mode="r", allow_pickle=False)
        hashes = ItemTable.read(path / manifest["items"]).content_hashes
    except (OSError, ValueError, KeyError) as exc:
        log.warning("cannot re-use vectors of %s (%s); re-encoding everything", path.name, exc)
        return {}
    if len(hashes) != len(vectors):
        return {}
    return {h: vectors[row] for row, h in enumerate(hashes)}


