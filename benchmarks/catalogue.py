"""A catalogue of any size from real products: real vectors, perturbed, published as an Aisle index.

There are about ten thousand real product listings in the shared data; a 100k or 1M catalogue
is made of variants of them. Variant 0 of a product is the listing itself with its real MiniLM
vector; variant ``j > 0`` gets a title suffix (colour, size) and the vector
``normalise(x + sigma * noise)``, so that catalogue vectors keep the real model's geometry
(clusters of related products, near-duplicate variants) instead of uniform random points.

The version is written by ``aisle.index.build.build_version`` itself, so its layout is exactly what
``aisle build`` writes; only the document encoder is replaced by ``PrecomputedEncoder``, which
hands the build these vectors while reporting the real model's name and fingerprint (the service
refuses an index whose fingerprint differs from its query encoder's).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from aisle.embed.base import Encoder, ForwardingEncoder, l2_normalize
from aisle.index.build import BuildOptions, build_version
from aisle.index.catalog import Catalog, Product
from aisle.index.manifest import read_manifest
from aisle.index.storage import atomic_write, atomic_write_json
from aisle.index.versions import VersionError, VersionStore
from benchmarks.data import BaseProduct

log = logging.getLogger(__name__)

COLOURS = ("Black", "White", "Grey", "Navy", "Red", "Green", "Beige", "Brown", "Blue", "Pink", "Olive", "Silver")
SIZES = ("XS", "S", "M", "L", "XL", "XXL", "Compact", "Standard", "Large", "Family")
RECIPE_FILE = "bench-catalogue.json"


@dataclass(frozen=True)
class CatalogueRecipe:
    """Everything that determines a synthetic catalogue; equal recipes give equal catalogues."""

    size: int
    base_products: int
    sigma: float
    seed: int
    fingerprint: str
    index_type: str | None


class PrecomputedEncoder(ForwardingEncoder):
    """Serves precomputed document vectors under the real model's identity.

    Documents are looked up by their embedding text; queries go to the real encoder, so
    anything searched through this object is encoded exactly as the service encodes it.
    """

    def __init__(self, query_encoder: Encoder, texts: Sequence[str], vectors: np.ndarray) -> None:
        if len(texts) != len(vectors):
            raise ValueError(f"{len(texts)} texts but {len(vectors)} vectors")
        super().__init__(query_encoder)
        self._vectors = vectors
        self._row_of = {text: row for row, text in enumerate(texts)}

    def encode_documents(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        try:
            rows = [self._row_of[text] for text in texts]
        except KeyError as exc:
            raise KeyError(f"no precomputed vector for document text {exc.args[0]!r}") from None
        return np.ascontiguousarray(self._vectors[rows], dtype=np.float32)


def encode_base_products(encoder: Encoder, products: Sequence[BaseProduct], cache_dir: Path) -> np.ndarray:
    """The real document vectors of ``products``, cached by model fingerprint and texts."""
    texts = [p.embedding_text() for p in products]
    key = hashlib.sha256(json.dumps([encoder.fingerprint, texts]).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"base-vectors-{key}.npy"
    if path.is_file():
        vectors = np.load(path, allow_pickle=False)
        if vectors.shape == (len(texts), encoder.dim):
            return vectors
    log.info("encoding %d real product texts with %s", len(texts), encoder.name)
    vectors = encoder.encode_documents(texts, batch_size=64, show_progress=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda handle: np.save(handle, vectors, allow_pickle=False))
    return vectors


def variant_title(title: str, variant: int) -> str:
    """The title of variant ``variant`` of a product (variant 0 is the product itself)."""
    if variant == 0:
        return title
    combo = variant - 1
    colour, size = COLOURS[combo % len(COLOURS)], SIZES[(combo // len(COLOURS)) % len(SIZES)]
    cycle = combo // (len(COLOURS) * len(SIZES))
    return f"{title} ({colour}, {size})" + (f" #{cycle + 1}" if cycle else "")


def synthesize(
    products: Sequence[BaseProduct], base_vectors: np.ndarray, size: int, sigma: float, seed: int
) -> tuple[Catalog, np.ndarray]:
    """``size`` products cycling over ``products``, and their vectors (perturbed real ones).

    Row ``i`` is variant ``i // len(products)`` of base product ``i % len(products)``.
    """
    if not len(products):
        raise ValueError("no base products to synthesize a catalogue from")
    rng = np.random.default_rng(seed)
    count = len(products)
    rows = np.arange(size)
    bases, variants = rows % count, rows // count
    vectors = np.empty((size, base_vectors.shape[1]), dtype=np.float32)
    chunk = 65_536  # noise for a million 384-d rows at once would take 3 GB
    for start in range(0, size, chunk):
        stop = min(start + chunk, size)
        block = base_vectors[bases[start:stop]].astype(np.float32)
        perturbed = variants[start:stop] > 0
        block[perturbed] += sigma * rng.standard_normal((int(perturbed.sum()), block.shape[1]), dtype=np.float32)
        vectors[start:stop] = l2_normalize(block)
    # Shops price variants close to each other; unpriced sources get a plausible log-normal price.
    base_prices = np.array([p.price if p.price else np.nan for p in products])
    fallback = np.round(np.exp(rng.normal(3.5, 0.9, count)), 2)
    base_prices = np.where(np.isnan(base_prices), fallback, base_prices)
    price_factor = np.where(variants > 0, rng.uniform(0.85, 1.2, size), 1.0)
    in_stock = rng.random(size) < 0.9
    catalog = Catalog(
        [
            Product(
                id=f"{products[b].source[:3]}-{b:05d}-{v:04d}",
                title=variant_title(products[b].title, int(v)),
                brand=products[b].brand,
                category=products[b].category,
                price=round(float(base_prices[b] * price_factor[i]), 2),
                in_stock=bool(in_stock[i]),
            )
            for i, (b, v) in enumerate(zip(bases.tolist(), variants.tolist()))
        ]
    )
    return catalog, vectors


def publish_catalogue(
    catalog: Catalog,
    vectors: np.ndarray,
    encoder: Encoder,
    index_root: Path,
    recipe: CatalogueRecipe,
) -> Path:
    """Builds and publishes the catalogue as an Aisle index version; returns its directory."""
    texts = [p.embedding_text() for p in catalog.products]
    documents = PrecomputedEncoder(encoder, texts, vectors)
    options = BuildOptions(index_type=recipe.index_type, show_progress=False, reuse_vectors=False, keep_versions=1)
    report = build_version(catalog, index_root, documents, options)
    log.info(
        "published %s: %d items in %.1f s %s",
        report.version,
        report.items,
        report.seconds,
        {k: round(v, 1) for k, v in report.timings.items()},
    )
    atomic_write_json(
        Path(index_root) / RECIPE_FILE,
        {**asdict(recipe), "version": report.version, "build_seconds": report.seconds, "build_timings": report.timings},
    )
    return report.path


def published_version(index_root: Path, recipe: CatalogueRecipe) -> Path | None:
    """The current version under ``index_root`` if it was built from ``recipe``, else None."""
    recipe_path = Path(index_root) / RECIPE_FILE
    try:
        recorded = json.loads(recipe_path.read_text())
        path = VersionStore(index_root).current_path()
        manifest = read_manifest(path)
    except (OSError, ValueError, VersionError, RuntimeError):
        return None
    same = {k: recorded.get(k) for k in asdict(recipe)} == asdict(recipe)
    return path if same and manifest.get("version") == recorded.get("version") else None
