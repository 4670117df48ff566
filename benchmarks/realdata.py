"""Real product texts and queries from the shared evaluation data, and vectors made from them.

Used by ``benchmarks/bench_index.py`` / ``bench_rebuild.py`` and by the index tests. The data
lives beside the repository (``<repo>/../shared/data`` or ``$AISLE_SHARED_DATA``) and is never
copied into it; callers skip, with a clear message, when it is absent.

Products come from three real catalogues: the Amazon-Google software listings (title,
manufacturer, price), Amazon Industrial & Scientific (title, category words, brand) and ESCI
rows (title, brand, colour, description). Category trees and stock are not in those files, so
they are assigned deterministically from the product id (three levels of 4 × 4 × 4 branches,
80 % in stock): the filter tests need known selectivities, and the vectors stay real.
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aisle.index.catalog import Product

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """The shared evaluation data directory, or None when it is not there."""
    root = Path(os.environ.get("AISLE_SHARED_DATA", REPO.parent / "shared" / "data"))
    return root if (root / "dev").is_dir() else None


@dataclass(frozen=True)
class RealProduct:
    """One real product's fields as the source files give them."""

    id: str
    title: str
    brand: str
    description: str
    price: float | None

    @property
    def text(self) -> str:
        """The real text only, as ``Product.embedding_text`` orders it (no assigned category)."""
        return ". ".join(part for part in (self.title, self.brand, self.description) if part)


def load_real_products(root: Path) -> list[RealProduct]:
    """Every product of the three real catalogues, ids made unique by a source prefix.

    Rows without any text (99 ESCI rows carry only an id) are left out.
    """
    products: list[RealProduct] = []
    with (root / "dev/search/amazon_google/corpus.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            price = float(row["price"]) if row["price"].strip() else None
            products.append(RealProduct(f"ag-{row['product_id']}", row["title"], row["manufacturer"], "", price))
    with (root / "dev/recsys/amazon_scientific_unisrec/Scientific.text").open(encoding="utf-8") as handle:
        next(handle)  # header
        for line in handle:
            asin, _, text = line.rstrip("\n").partition("\t")
            # "title. category words. brand. ": the brand is the last sentence.
            parts = [part.strip() for part in text.split(". ") if part.strip()]
            brand = parts[-1].rstrip(".") if len(parts) >= 3 else ""
            title = parts[0] if parts else text
            description = ". ".join(parts[1:-1]) if len(parts) >= 3 else ". ".join(parts[1:])
            products.append(RealProduct(f"sci-{asin}", title, brand, description, None))
    with (root / "dev/search/esci_fragments/products.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            description = " ".join(part for part in (row["product_color"], row["product_bullet_point"][:300]) if part)
            products.append(
                RealProduct(
                    f"esci-{row['product_id']}",
                    row["product_title"],
                    row["product_brand"],
                    description,
                    None,
                )
            )
    return [product for product in products if product.text.strip()]


def load_wands_queries(root: Path) -> list[str]:
    """The 480 real WANDS furniture search queries."""
    with (root / "dev/search/wands/query.csv").open(encoding="utf-8") as handle:
        return [row["query"] for row in csv.DictReader(handle, delimiter="\t")]


def _unit_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def synthetic_category(product_id: str) -> str:
    """A deterministic three-level category: ``Dept d > Aisle a > Shelf s`` (4 × 4 × 4)."""
    h = _unit_hash(product_id)
    return f"Dept {h % 4} > Aisle {h // 4 % 4} > Shelf {h // 16 % 4}"


def to_catalog_products(real: list[RealProduct]) -> list[Product]:
    """Catalogue products with the real texts, brand and price, and assigned category and stock."""
    products = []
    for item in real:
        h = _unit_hash("stock" + item.id)
        price = item.price if item.price is not None else round(5 + h % 50_000 / 100, 2)
        # A few ESCI rows have no title; a shop would list them by the start of their text.
        title = item.title.strip() or item.text[:120]
        products.append(
            Product(
                id=item.id,
                title=title,
                description=item.description,
                brand=item.brand,
                category=synthetic_category(item.id),
                price=price,
                in_stock=h % 10 < 8,
            )
        )
    return products


VARIANTS = ("black", "white", "red", "blue", "large", "small", "2-pack", "steel", "oak", "grey")


def catalog_of_size(real: list[RealProduct], count: int) -> list[Product]:
    """``count`` products: the real ones, then variants ("title, red") of them as shops list them."""
    base = to_catalog_products(real)
    products = list(base[:count])
    round_number = 0
    while len(products) < count:
        variant = VARIANTS[round_number % len(VARIANTS)]
        for product in base[: count - len(products)]:
            products.append(
                Product(
                    id=f"{product.id}-{variant}-{round_number}",
                    title=f"{product.title}, {variant}",
                    description=product.description,
                    brand=product.brand,
                    category=product.category,
                    price=product.price,
                    in_stock=product.in_stock,
                )
            )
        round_number += 1
    return products


_PROBE_TEXT = "Stainless steel chef's knife, 20 cm, dishwasher safe"


def encode_cached(encoder, texts: list[str], cache_dir: Path, *, queries: bool = False) -> np.ndarray:
    """Vectors of ``texts`` (documents, or queries), cached on disk by encoder and texts.

    The key includes the encoder's output for a probe text besides its fingerprint, so that a
    re-exported model (another quantization of the same weights) never reads stale vectors.
    """
    side = "queries" if queries else "documents"
    probe = np.round(encoder.encode_documents([_PROBE_TEXT]), 4).astype(np.float32).tobytes()
    digest = hashlib.sha256("\x1f".join([side, encoder.fingerprint, *texts]).encode())
    digest.update(probe)
    key = digest.hexdigest()[:24]
    path = Path(cache_dir) / f"{side}-{key}.npy"
    if path.is_file():
        return np.load(path, allow_pickle=False)
    if queries:
        vectors = encoder.encode_queries(texts)
    else:
        vectors = encoder.encode_documents(texts, batch_size=64, show_progress=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, vectors, allow_pickle=False)
    os.replace(tmp, path)
    return vectors


def perturbed(vectors: np.ndarray, count: int, sigma: float, seed: int = 0) -> np.ndarray:
    """``count`` unit vectors: the originals, then noisy copies (see ``perturbed_with_sources``)."""
    return perturbed_with_sources(vectors, count, sigma, seed)[0]


def perturbed_with_sources(
    vectors: np.ndarray, count: int, sigma: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` unit vectors: the originals, then noisy copies ``x + σ·g/√d`` renormalised.

    A copy's cosine with its original is about ``1/√(1+σ²)`` (0.82 at σ = 0.7, close to the
    median cosine between a real product and its nearest real neighbour), so copies sit among
    real neighbours rather than in tight clusters of their own.

    Returns:
        The vectors and, for each row, the row of ``vectors`` it was made from.
    """
    rng = np.random.default_rng(seed)
    out = np.empty((count, vectors.shape[1]), dtype=np.float32)
    sources = np.empty(count, dtype=np.int64)
    take = min(count, len(vectors))
    out[:take] = vectors[:take]
    sources[:take] = np.arange(take)
    dim = vectors.shape[1]
    for start in range(take, count, 65_536):
        stop = min(start + 65_536, count)
        chosen = rng.integers(0, len(vectors), stop - start)
        noise = rng.standard_normal((stop - start, dim), dtype=np.float32) * np.float32(sigma / np.sqrt(dim))
        noisy = vectors[chosen] + noise
        out[start:stop] = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
        sources[start:stop] = chosen
    return out, sources


def products_for_rows(real: list[RealProduct], sources: np.ndarray) -> list[Product]:
    """Catalogue products for perturbed rows: a copy takes its source's brand, its own category,
    price and stock (assigned from its row id, like the real products' category and stock)."""
    base = to_catalog_products(real)
    products = []
    for row, source in enumerate(sources.tolist()):
        if row < len(base) and source == row:
            products.append(base[row])
            continue
        original = base[source]
        product_id = f"{original.id}~{row}"
        h = _unit_hash("copy" + product_id)
        products.append(
            Product(
                id=product_id,
                title=original.title,
                brand=original.brand,
                category=synthetic_category(product_id),
                price=round(5 + h % 50_000 / 100, 2),
                in_stock=h % 10 < 8,
            )
        )
    return products


def cache_root() -> Path:
    """The shared cache: ``$AISLE_CACHE_DIR``, else the repository's ``.cache/aisle``."""
    return Path(os.environ.get("AISLE_CACHE_DIR", REPO / ".cache" / "aisle"))


def vector_cache_dir() -> Path:
    """Where encoded real texts are cached for tests and benchmarks."""
    return cache_root() / "real-vectors"


def real_encoder():
    """The bundled MiniLM encoder (ONNX int8), or None while ``aisle.embed`` does not provide it."""
    try:
        from aisle.embed import create_encoder, prepare_model
        from aisle.embed.config import EncoderConfig
    except ImportError:
        return None
    # The shared export cache saves a torch export per test run.
    config = EncoderConfig(cache_dir=cache_root() / "models")
    prepare_model(config)
    return create_encoder(config)
