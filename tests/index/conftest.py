"""Fixtures of the index tests: encoders, small catalogues, and real vectors (cached)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from aisle.embed.base import Encoder, ForwardingEncoder, l2_normalize
from aisle.index.build import BuildOptions, BuildReport, build_version
from aisle.index.catalog import Catalog, Product
from benchmarks import realdata
from tests.fakes import HashingEncoder


class CountingEncoder(ForwardingEncoder):
    """Wraps an encoder and counts the documents it is asked to encode."""

    def __init__(self, inner: Encoder) -> None:
        super().__init__(inner)
        self.encoded_texts: list[str] = []

    def encode_documents(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        self.encoded_texts.extend(texts)
        return super().encode_documents(texts, batch_size=batch_size, show_progress=show_progress)


class TextSeedEncoder(Encoder):
    """A fast deterministic encoder: each distinct text gets its own random unit vector.

    For tests about which products get encoded, where meaning does not matter but speed does.
    """

    def __init__(self, dim: int = 64) -> None:
        self._dim = dim

    @property
    def name(self) -> str:
        return "text-seed-test-encoder"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def fingerprint(self) -> str:
        return f"text-seed:{self._dim}"

    def encode_documents(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            rows.append(np.random.default_rng(seed).standard_normal(self._dim))
        return l2_normalize(np.array(rows, dtype=np.float32).reshape(len(texts), self._dim))

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode_documents(texts)


def small_products(count: int = 40) -> list[Product]:
    """A hand-made catalogue with every filterable field set."""
    brands = ["Acme", "Zeta", "Omni", ""]
    categories = ["Home > Kitchen > Knives", "Home > Kitchen", "Home > Kitchenware", "Garden > Tools"]
    return [
        Product(
            id=f"p{i}",
            title=f"product {i} {['knife', 'pan', 'bowl', 'rake'][i % 4]}",
            description=f"item number {i}",
            brand=brands[i % 4],
            category=categories[i // 4 % 4],
            price=None if i % 10 == 9 else float(i),
            in_stock=i % 3 != 0,
        )
        for i in range(count)
    ]


def build(root: Path, products: list[Product], encoder: Encoder | None = None, **options) -> BuildReport:
    """Builds a version quietly with the hashing encoder unless told otherwise."""
    options.setdefault("show_progress", False)
    return build_version(Catalog(products), root, encoder or HashingEncoder(32), BuildOptions(**options))


@pytest.fixture
def hashing_encoder() -> HashingEncoder:
    return HashingEncoder(32)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = realdata.shared_data_dir()
    if root is None:
        pytest.skip("shared evaluation data not found (set AISLE_SHARED_DATA or put it at ../shared/data)")
    return root


@pytest.fixture(scope="session")
def real_encoder():
    encoder = realdata.real_encoder()
    if encoder is None:
        pytest.skip("embed.create_encoder is not available yet")
    return encoder


@pytest.fixture(scope="session")
def real_products(shared_data: Path) -> list[realdata.RealProduct]:
    return realdata.load_real_products(shared_data)


@pytest.fixture(scope="session")
def real_vectors(real_encoder, real_products) -> np.ndarray:
    """MiniLM vectors of every real product text, cached across runs (``realdata.vector_cache_dir``)."""
    texts = [product.text for product in real_products]
    return realdata.encode_cached(real_encoder, texts, realdata.vector_cache_dir())


@pytest.fixture(scope="session")
def real_queries(real_encoder, shared_data: Path) -> np.ndarray:
    """MiniLM vectors of the WANDS queries (encoded as queries), cached."""
    texts = realdata.load_wands_queries(shared_data)
    return realdata.encode_cached(real_encoder, texts, realdata.vector_cache_dir(), queries=True)


REPO = realdata.REPO
