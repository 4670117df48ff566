"""Shared fixtures of the encoder tests: real data location, exported models, tiny models.

Exports are slow (the bundled model takes ~20 s on one core), so they are session-scoped. They go
to a fresh directory under pytest's tmp_path_factory unless ``AISLE_TEST_MODEL_CACHE`` names a
directory to reuse between runs (exports carry a recipe version, so a reused cache is rebuilt
whenever the export recipe changes).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from aisle.embed import EncoderConfig
from aisle.embed.config import ImageEncoderConfig

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path:
    """``$AISLE_SHARED_DATA`` or ``<repo>/../shared/data``."""
    configured = os.environ.get("AISLE_SHARED_DATA")
    return Path(configured) if configured else (REPO_ROOT / ".." / "shared" / "data").resolve()


def require_export_stack() -> None:
    """Skips the calling test when torch / sentence-transformers / transformers are missing."""
    for module in ("torch", "transformers", "sentence_transformers", "onnx"):
        pytest.importorskip(module, reason=f"{module} is needed to export models (pip install 'aisle-search[export]')")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared evaluation data not found at {path} (set AISLE_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def product_titles(shared_data: Path) -> list[str]:
    """3,226 real product titles (Amazon-Google corpus)."""
    with (shared_data / "dev/search/amazon_google/corpus.csv").open(encoding="utf-8") as handle:
        return [row["title"] for row in csv.DictReader(handle) if row["title"].strip()]


@pytest.fixture(scope="session")
def short_queries(shared_data: Path) -> list[str]:
    """480 real furniture search queries (WANDS)."""
    with (shared_data / "dev/search/wands/query.csv").open(encoding="utf-8") as handle:
        return [row["query"] for row in csv.DictReader(handle, delimiter="\t")]


@pytest.fixture(scope="session")
def fashion_images(shared_data: Path) -> list[Path]:
    """A few real product photos (fixture set first, dev set as a fallback)."""
    for folder in ("fixture/images/fashion/images", "dev/images/fashion/images"):
        images = sorted((shared_data / folder).glob("*.jpg"))
        if images:
            return images[:6]
    pytest.skip("no fashion images in the shared data")


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("AISLE_TEST_MODEL_CACHE")
    if configured:
        Path(configured).mkdir(parents=True, exist_ok=True)
        return Path(configured)
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def bundled_exports(model_cache: Path) -> dict[str, EncoderConfig]:
    """Configs of the bundled model whose fp32 and int8 exports exist in ``model_cache``."""
    from aisle.embed import prepare_model

    configs = {backend: EncoderConfig(backend=backend, cache_dir=model_cache) for backend in ("onnx-fp32", "onnx-int8")}
    if not all(_cached(config) for config in configs.values()):
        require_export_stack()
    for config in configs.values():
        prepare_model(config)
    return configs


def _cached(config: EncoderConfig) -> bool:
    from aisle.embed.artifacts import read_manifest_if_current
    from aisle.embed.bundled import resolve_model_dir
    from aisle.embed.cache import content_hash, export_dir

    source = resolve_model_dir(config.model)
    return read_manifest_if_current(export_dir(config.cache_dir, content_hash(source), config.backend)) is not None


@pytest.fixture(scope="session")
def tiny_sentence_transformer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_export_stack()
    from tests.embed.tiny_models import build_tiny_sentence_transformer

    return build_tiny_sentence_transformer(tmp_path_factory.mktemp("tiny-st") / "tiny-bert")


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_export_stack()
    from tests.embed.tiny_models import build_tiny_clip

    return build_tiny_clip(tmp_path_factory.mktemp("tiny-clip") / "tiny-clip")


@pytest.fixture(scope="session")
def tiny_clip_config(tiny_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> ImageEncoderConfig:
    cache = tmp_path_factory.mktemp("clip-cache")
    return ImageEncoderConfig(model=str(tiny_clip), backend="onnx-fp32", cache_dir=cache)


@pytest.fixture(scope="session")
def tiny_siglip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_export_stack()
    from tests.embed.tiny_models import build_tiny_siglip

    return build_tiny_siglip(tmp_path_factory.mktemp("tiny-siglip") / "tiny-siglip")
