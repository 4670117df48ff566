"""The offline rebuild: catalogue → vectors (re-using unchanged ones) → indexes → published version.

A build writes every file of the new version (see ``aisle.index.layout``) into a staging directory,
checksums them into ``manifest.json``, fsyncs, renames the directory into ``versions/`` and only
then swaps the ``current`` pointer (``aisle.index.versions``): a crash at any point leaves the previous
version current and intact. Builds of one index root are serialised by a lock file. What a
rebuild re-uses from the current version is described in ``aisle.index.reuse``.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import shutil
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from aisle.embed.base import Encoder, ImageEncoder
from aisle.index.ann import INDEX_TYPES, AnnIndex, AnnParams
from aisle.index.ann_build import choose_index_type, resolved_params
from aisle.index.catalog import Catalog, Product
from aisle.index.fields import write_fields
from aisle.index.items import write_items
from aisle.index.layout import (  # noqa: F401  (FAISS_FILE, VECTORS_FILE: re-exported for callers)
    FAISS_FILE,
    FIELDS_FILE,
    ID_MAP_FILE,
    ITEMS_FILE,
    LEXICAL_DIR,
    PICTURES_FILE,
    VECTORS_FILE,
    faiss_file,
    vectors_file,
    write_id_map,
)
from aisle.index.lexical import LexicalIndex
from aisle.index.manifest import write_manifest
from aisle.index.pictures import (
    PictureOptions,
    PictureResults,
    PreviousPictures,
    analyse_pictures,
    with_colour_attribute,
    write_pictures,
)
from aisle.index.reuse import PreviousVersion
from aisle.index.schema import Schema, infer_schema, lexical_document
from aisle.index.versions import VersionError, VersionStore

log = logging.getLogger(__name__)


class ParallelBuild(Protocol):
    """Runs a build's heavy steps elsewhere with the same result (``aisle.index.distributed``)."""

    def encode_documents(self, texts: list[str], *, batch_size: int, show_progress: bool) -> np.ndarray: ...

    def fill_ivf(self, empty_index: Any, vectors: np.ndarray) -> Any: ...

    def describe(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class BuildOptions:
    """How to build a version.

    Attributes:
        index_type: ``None`` picks by catalogue size and memory budget (see ``aisle.index.ann``),
            else ``flat``, ``hnsw``, ``hnsw-sq8``, ``ivf`` or ``ivf-pq``.
        memory_budget_mb: the most memory the vector index may take when the type is chosen
            automatically; above it large catalogues get ``hnsw-sq8``. ``None``: no limit.
        hnsw_m, ef_construction, ef_search: HNSW parameters (see ``aisle.index.ann.AnnParams``).
        ivf_lists, nprobe: IVF parameters (``ivf_lists`` 0: about 4·√count cells).
        keep_versions: how many published versions to keep on disk (at least 1).
        batch_size: encoder batch size.
        show_progress: draw a progress bar while encoding.
        reuse_vectors: re-use the current version's vectors for unchanged products, and its vector
            and FAISS files when no embedded field changed at all.
        fields: the config file's ``fields:`` mapping, field → roles, over the inferred schema
            (see ``aisle.index.schema``).
        pictures: how product pictures are read (files, and URLs only when allowed).
        parallel: encode and fill inverted files on a cluster (``aisle build --ray``) instead of
            in this process; the vectors and the index's contents are the same.
    """

    index_type: str | None = None
    memory_budget_mb: float | None = None
    hnsw_m: int = AnnParams.hnsw_m
    ef_construction: int = AnnParams.ef_construction
    ef_search: int = AnnParams.ef_search
    ivf_lists: int = AnnParams.ivf_lists
    nprobe: int = AnnParams.nprobe
    keep_versions: int = 5
    batch_size: int = 64
    show_progress: bool = True
    reuse_vectors: bool = True
    fields: Mapping[str, Any] = field(default_factory=dict)
    pictures: PictureOptions = field(default_factory=PictureOptions)
    parallel: ParallelBuild | None = None

    def validate(self) -> None:
        """Raises ``ValueError`` naming the first bad option."""
        if self.index_type is not None and self.index_type not in INDEX_TYPES:
            raise ValueError(f"unknown index type '{self.index_type}'; choose one of {', '.join(INDEX_TYPES)}")
        if self.keep_versions < 1:
            raise ValueError(f"keep_versions must be at least 1, not {self.keep_versions}")
        if self.memory_budget_mb is not None and self.memory_budget_mb <= 0:
            raise ValueError(f"memory_budget_mb must be positive, not {self.memory_budget_mb}")
        for name in ("hnsw_m", "ef_construction", "ef_search", "nprobe", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.ivf_lists < 0:
            raise ValueError(f"ivf_lists must be 0 (automatic) or more, not {self.ivf_lists}")


@dataclass
class BuildReport:
    """What a build did: the version, how many products were encoded or re-used, and timings."""

    version: str
    path: Path
    items: int
    encoded: int
    reused: int
    skipped: int
    seconds: float
    index_type: str = "flat"
    reused_files: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    #: Products per picture status (``aisle.index.pictures.STATUSES``); empty without pictures.
    pictures: dict[str, int] = field(default_factory=dict)
    #: One line saying how many pictures were read and why the others were not.
    pictures_summary: str = ""
    #: Pictures taken from the current version (unchanged files) instead of being read again.
    pictures_reused: int = 0


class _Timer:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        tick = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - tick, 4)


def build_version(
    catalog: Catalog,
    out: str | Path,
    encoder: Encoder,
    options: BuildOptions = BuildOptions(),
    image_encoder: ImageEncoder | None = None,
    *,
    live_sequence: int = 0,
    known_vectors: Mapping[str, np.ndarray] | None = None,
) -> BuildReport:
    """Builds a new immutable version from ``catalog`` under ``out`` and makes it current.

    Products with an ``image`` get their picture read once (``aisle.index.pictures``): colours
    (the ``image_colour`` attribute) and near-duplicate groups always, and with
    ``image_encoder`` a second vector space, ``image``, searched by text through the same model.

    Args:
        catalog: the products, with the live catalogue's changes already folded in
            (``aisle.index.changes.fold_log``).
        out: the index root.
        encoder: the text encoder.
        options: how to build.
        image_encoder: the image model of an ``image`` space (None: none).
        live_sequence: the newest change-log ``seq`` the catalogue includes; servers apply the
            changes above it on top of the new version.
        known_vectors: content hash → vector already encoded by ``encoder`` (the change log's),
            used for products the previous version does not have.

    Raises:
        ValueError: no valid product, bad options (``SchemaError``: a bad ``fields`` entry), or an
            image model without a single readable picture (a build that silently ignored the
            model would look like it worked).
        BuildLockedError: another build of the same index root is running.
        OSError: the index root cannot be written.
    """
    started = time.perf_counter()
    options.validate()
    products = catalog.products
    if not products:
        raise ValueError("the catalogue has no valid products; nothing to index")
    timer = _Timer()
    store = VersionStore(out)
    with store.build_lock():
        # Pictures first: a bad image model fails before minutes of text encoding, and
        # ``image_colour`` is an attribute like any other for every later step.
        pictures = None
        if image_encoder is not None or any(product.image for product in products):
            with timer.stage("pictures"):
                pictures = analyse_pictures(
                    products,
                    options.pictures,
                    image_encoder,
                    show_progress=options.show_progress,
                    previous=_previous_pictures(store, image_encoder) if options.reuse_vectors else None,
                    base_dir=catalog.source.parent if catalog.source is not None else None,
                )
            _check_pictures(pictures, image_encoder)
            products = with_colour_attribute(products, pictures)
        with timer.stage("schema"):  # after the pictures: image_colour is an attribute too
            schema = infer_schema([product.attributes for product in products], options.fields)
        embedded = schema.names("embedded")
        with timer.stage("hash"):
            hashes = [product.content_hash(embedded) for product in products]
        with timer.stage("read_previous"):
            previous = PreviousVersion.open(store, encoder.fingerprint, encoder.dim) if options.reuse_vectors else None
        with timer.stage("encode"):
            vectors, encoded = _vectors(catalog, hashes, previous, encoder, options, known_vectors or {}, embedded)
        params = resolved_params(
            AnnParams(
                type=options.index_type
                or choose_index_type(  # type: ignore[arg-type]
                    len(products), encoder.dim, options.memory_budget_mb, options.hnsw_m
                ),
                hnsw_m=options.hnsw_m,
                ef_construction=options.ef_construction,
                ef_search=options.ef_search,
                ivf_lists=options.ivf_lists,
                nprobe=options.nprobe,
            ),
            len(products),
        )
        name, staging = store.stage()
        try:
            reused_files, checksums = _write_vectors_and_index(
                staging, vectors, params, hashes, previous, timer, options
            )
            with timer.stage("items"):
                write_items(staging / ITEMS_FILE, products, hashes)
                write_id_map(staging / ID_MAP_FILE, [product.id for product in products])
                write_fields(staging / FIELDS_FILE, products, schema)
            image_space = None
            if pictures is not None:
                with timer.stage("pictures_index"):
                    write_pictures(staging / PICTURES_FILE, pictures)
                    if image_encoder is not None and pictures.vectors is not None:
                        image_space = _write_image_space(staging, pictures.vectors, image_encoder, options)
            with timer.stage("lexical"):
                documents = lexical_documents(products, schema)
                documents_digest = _digest(documents)
                reused_lexical = _write_lexical(staging, documents, documents_digest, previous)
            if reused_lexical:
                checksums.update(reused_lexical)
                reused_files.append(LEXICAL_DIR)
            with timer.stage("manifest"):
                manifest = _manifest_fields(name, catalog, encoder, params, encoded)
                manifest.update(schema=schema.to_manifest(), fields=FIELDS_FILE, lexical_documents=documents_digest)
                manifest["live_sequence"] = live_sequence
                if pictures is not None:
                    manifest["pictures"] = {
                        "file": PICTURES_FILE,
                        "counts": pictures.counts(),
                        "groups": int(len(np.unique(pictures.groups[pictures.ok]))),
                    }
                if image_space is not None:
                    manifest["spaces"]["image"] = image_space
                if options.parallel is not None:
                    manifest["build"] = options.parallel.describe()
                write_manifest(staging, manifest, checksums)
            with timer.stage("publish"):
                path = store.publish(name, staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        with timer.stage("prune"):
            store.prune(options.keep_versions)
    return BuildReport(
        version=name,
        path=path,
        items=len(products),
        encoded=encoded,
        reused=len(products) - encoded,
        skipped=len(catalog.skipped),
        seconds=time.perf_counter() - started,
        index_type=params.type,
        reused_files=sorted(reused_files),
        timings=timer.timings,
        pictures=pictures.counts() if pictures is not None else {},
        pictures_summary=pictures.summary() if pictures is not None else "",
        pictures_reused=pictures.reused if pictures is not None else 0,
    )


def _previous_pictures(store: VersionStore, image_encoder: ImageEncoder | None) -> PreviousPictures | None:
    try:
        current = store.current_path().resolve()
    except (VersionError, OSError):
        return None
    return PreviousPictures.open(current, image_encoder.fingerprint if image_encoder is not None else None)


def _check_pictures(pictures: PictureResults, image_encoder: ImageEncoder | None) -> None:
    """An image model with nothing to encode is a mistake to report, not a text-only build."""
    if image_encoder is None or pictures.ok.any():
        return
    if all(status == "none" for status in pictures.status):
        raise ValueError(
            f"an image model ({image_encoder.name}) is configured but no product has an image; "
            "map the catalogue's image column with --map image=COLUMN"
        )
    raise ValueError(
        f"an image model ({image_encoder.name}) is configured but no picture could be read: {pictures.summary()}"
    )


def _write_image_space(staging: Path, vectors: np.ndarray, encoder: ImageEncoder, options: BuildOptions) -> dict:
    """Writes the image vectors and their FAISS index; returns the manifest's space entry."""
    if not np.isfinite(vectors).all():
        raise ValueError(f"the image model {encoder.name} produced non-finite vectors")
    params = resolved_params(
        AnnParams(
            type=options.index_type
            or choose_index_type(len(vectors), encoder.dim, options.memory_budget_mb, options.hnsw_m),  # type: ignore[arg-type]
            hnsw_m=options.hnsw_m,
            ef_construction=options.ef_construction,
            ef_search=options.ef_search,
            ivf_lists=options.ivf_lists,
            nprobe=options.nprobe,
        ),
        len(vectors),
    )
    np.save(staging / vectors_file("image"), vectors, allow_pickle=False)
    AnnIndex.build(vectors, params, options.show_progress).save(staging / faiss_file("image"))
    return {
        "dim": encoder.dim,
        "vectors": vectors_file("image"),
        "faiss": faiss_file("image"),
        "index": params.to_dict(),
        "fingerprint": encoder.fingerprint,
        "model": encoder.name,
    }


def _vectors(
    catalog: Catalog,
    hashes: list[str],
    previous: PreviousVersion | None,
    encoder: Encoder,
    options: BuildOptions,
    known_vectors: Mapping[str, np.ndarray],
    embedded: list[str],
) -> tuple[np.ndarray, int]:
    """The vector of every product, in row order, and how many had to be encoded."""
    vectors = np.empty((len(hashes), encoder.dim), dtype=np.float32)
    known = previous.rows_by_hash() if previous is not None else {}
    new_rows = [row for row, content_hash in enumerate(hashes) if content_hash not in known]
    logged = [row for row in new_rows if _usable_vector(known_vectors.get(hashes[row]), encoder.dim)]
    for row in logged:
        vectors[row] = known_vectors[hashes[row]]
    if logged:
        taken = set(logged)
        new_rows = [row for row in new_rows if row not in taken]
    if known:
        old_rows = [row for row, content_hash in enumerate(hashes) if content_hash in known]
        if old_rows:
            assert previous is not None
            vectors[old_rows] = previous.vectors[[known[hashes[row]] for row in old_rows]]
    if new_rows:
        log.info("encoding %d of %d products", len(new_rows), len(hashes))
        encode = options.parallel.encode_documents if options.parallel is not None else encoder.encode_documents
        vectors[new_rows] = encode(
            [catalog.products[row].embedding_text(embedded) for row in new_rows],
            batch_size=options.batch_size,
            show_progress=options.show_progress,
        )
    if not np.isfinite(vectors).all():  # a broken model must not publish an unusable index
        raise ValueError(f"the encoder {encoder.name} produced non-finite vectors")
    return vectors, len(new_rows)


def _usable_vector(vector: np.ndarray | None, dim: int) -> bool:
    """Whether a logged vector can stand for a product's: the right size and finite."""
    return vector is not None and vector.shape == (dim,) and bool(np.isfinite(vector).all())


def _write_vectors_and_index(
    staging: Path,
    vectors: np.ndarray,
    params: AnnParams,
    hashes: list[str],
    previous: PreviousVersion | None,
    timer: _Timer,
    options: BuildOptions,
) -> tuple[list[str], dict[str, str]]:
    """Writes the vectors and FAISS files, linking the previous ones when they would be equal.

    Returns:
        The names of the files taken from the previous version, and their verified checksums.
    """
    vectors_name, faiss_name = vectors_file("text"), faiss_file("text")
    checksums: dict[str, str] = {}
    if previous is not None and previous.same_products(hashes):
        with timer.stage("link_previous"):
            space = previous.manifest["spaces"]["text"]
            checksum = previous.link_verified(space["vectors"], staging / vectors_name)
            if checksum is not None:
                checksums[vectors_name] = checksum
                if previous.index_params() == params.to_dict():
                    checksum = previous.link_verified(space["faiss"], staging / faiss_name)
                    if checksum is not None:
                        checksums[faiss_name] = checksum
    if vectors_name not in checksums:
        with timer.stage("write_vectors"):
            np.save(staging / vectors_name, vectors, allow_pickle=False)
    if faiss_name not in checksums:
        with timer.stage("index"):
            if params.type != "flat":  # minutes for millions of products: say what is going on
                log.info("building the %s index over %d vectors", params.type, len(vectors))
            fill_ivf = options.parallel.fill_ivf if options.parallel is not None else None
            AnnIndex.build(vectors, params, options.show_progress, fill_ivf=fill_ivf).save(staging / faiss_name)
    return sorted(checksums), checksums


def lexical_signature() -> str:
    """Identifies the code that builds the BM25 index and its vocabulary: their modules' source
    and bm25s's version.

    A version's BM25 files are re-used only by a build whose signature is the same, so a change
    of tokenizer, vocabulary or library rebuilds them.
    """
    from importlib.metadata import version

    from aisle.index import lexical, tokens, vocabulary

    digest = hashlib.sha256()
    for module in (lexical, tokens, vocabulary):
        digest.update(Path(inspect.getfile(module)).read_bytes())
    digest.update(version("bm25s").encode())
    return digest.hexdigest()


def lexical_documents(products: list[Product], schema: Schema) -> list[str]:
    """The text BM25 indexes for each product: its searchable fields, each repeated by its weight."""
    searchable = [spec for spec in schema.fields if spec.searchable]
    return [
        lexical_document(
            {
                "title": p.title,
                "brand": p.brand,
                "category": p.category,
                "description": p.description,
                **{name: value for name, value in p.attributes.items()},
            },
            searchable,
        )
        for p in products
    ]


def _digest(documents: list[str]) -> str:
    digest = hashlib.sha256()
    for document in documents:
        digest.update(document.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def _write_lexical(
    staging: Path, documents: list[str], documents_digest: str, previous: PreviousVersion | None
) -> dict[str, str]:
    """Writes the BM25 index, or links the previous one when it would be identical (same
    documents, same code).

    Returns:
        The verified checksums of linked files (empty when the index was built).
    """
    signature = lexical_signature()
    if (
        previous is not None
        and previous.manifest.get("lexical_documents") == documents_digest
        and previous.manifest.get("lexical_signature") == signature
        and isinstance(previous.manifest.get("lexical"), str)
    ):
        linked = previous.link_tree_verified(previous.manifest["lexical"], staging / LEXICAL_DIR)
        if linked is not None:
            return {f"{LEXICAL_DIR}/{name}": checksum for name, checksum in linked.items()}
    LexicalIndex.build(documents).save(staging / LEXICAL_DIR)
    return {}


def _manifest_fields(name: str, catalog: Catalog, encoder: Encoder, params: AnnParams, encoded: int) -> dict:
    return {
        "version": name,
        "count": len(catalog.products),
        "model": {"name": encoder.name, "fingerprint": encoder.fingerprint},
        "spaces": {
            "text": {
                "dim": encoder.dim,
                "vectors": vectors_file("text"),
                "faiss": faiss_file("text"),
                "index": params.to_dict(),
                "fingerprint": encoder.fingerprint,
            },
        },
        "ids": ID_MAP_FILE,
        "items": ITEMS_FILE,
        "lexical": LEXICAL_DIR,
        "lexical_signature": lexical_signature(),
        "source": {
            "catalog": str(catalog.source) if catalog.source else None,
            "skipped_rows": len(catalog.skipped),
            "encoded": encoded,
        },
    }
