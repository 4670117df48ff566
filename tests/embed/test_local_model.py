"""A local sentence-transformers directory (a tiny random BERT built by the test) end to end."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from aisle.embed import EncoderConfig, create_encoder, prepare_model
from aisle.embed import export as embed_export
from aisle.embed.artifacts import MANIFEST_NAME, TEXT_MODEL_FILE, ExportManifest
from aisle.embed.onnx_text import OnnxTextEncoder
from tests.embed.conftest import require_export_stack
from tests.embed.tiny_models import build_tiny_sentence_transformer


@pytest.fixture(scope="module")
def tiny_config(tiny_sentence_transformer: Path, tmp_path_factory: pytest.TempPathFactory) -> EncoderConfig:
    cache = tmp_path_factory.mktemp("tiny-cache")
    return EncoderConfig(model=str(tiny_sentence_transformer), backend="onnx-int8", cache_dir=cache)


def _cosines(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return (left * right).sum(axis=1) / (np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1))


def test_export_layout_and_parity_with_sentence_transformers(
    tiny_config: EncoderConfig, product_titles: list[str]
) -> None:
    int8_dir = prepare_model(tiny_config)
    fp32_config = dataclasses.replace(tiny_config, backend="onnx-fp32")
    fp32_dir = prepare_model(fp32_config)
    assert int8_dir.parent == fp32_dir.parent, "<cache>/<content hash>/<backend>/"
    assert (int8_dir.name, fp32_dir.name) == ("onnx-int8", "onnx-fp32")
    manifest = ExportManifest.read(fp32_dir)
    assert (manifest.pooling, manifest.normalize, manifest.max_length, manifest.dim) == ("mean", True, 48, 32)
    assert manifest.input_names == ("input_ids", "attention_mask", "token_type_ids")
    titles = product_titles[:200] + ["blue " * 100]
    reference = create_encoder(dataclasses.replace(tiny_config, backend="sentence-transformers"))
    exact = create_encoder(fp32_config).encode_documents(titles)
    assert _cosines(exact, reference.encode_documents(titles)).min() >= 0.9999
    quantised = create_encoder(tiny_config).encode_documents(titles)
    assert _cosines(exact, quantised).mean() >= 0.99


@pytest.mark.parametrize(("pooling", "normalize"), [("cls", False), ("max", True)])
def test_pooling_and_normalize_are_read_from_the_model(
    pooling: str, normalize: bool, tmp_path: Path, product_titles: list[str]
) -> None:
    require_export_stack()
    model = build_tiny_sentence_transformer(tmp_path / "model", seed=3, pooling=pooling, normalize=normalize)
    config = EncoderConfig(model=str(model), backend="onnx-fp32", cache_dir=tmp_path / "cache")
    manifest = ExportManifest.read(prepare_model(config))
    assert (manifest.pooling, manifest.normalize) == (pooling, normalize)
    titles = product_titles[:50]
    reference = create_encoder(dataclasses.replace(config, backend="sentence-transformers")).encode_documents(titles)
    vectors = create_encoder(config).encode_documents(titles)
    assert _cosines(vectors, reference).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_second_call_is_a_cache_hit(tiny_config: EncoderConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    first = prepare_model(tiny_config)
    before = {name: (first / name).stat() for name in (TEXT_MODEL_FILE, MANIFEST_NAME)}

    def no_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("cache hit expected, but the model was exported again")

    monkeypatch.setattr(embed_export, "_export_fp32", no_export)
    monkeypatch.setattr(embed_export, "_quantize_export", no_export)
    assert prepare_model(tiny_config) == first
    assert create_encoder(tiny_config).encode_queries(["red shirt"]).shape == (1, 32)
    for name, stat in before.items():
        assert ((first / name).stat().st_mtime_ns, (first / name).stat().st_ino) == (stat.st_mtime_ns, stat.st_ino)


def test_export_from_an_older_recipe_is_rebuilt(tiny_config: EncoderConfig) -> None:
    int8_dir = prepare_model(tiny_config)
    manifest_path = int8_dir / MANIFEST_NAME
    payload = json.loads(manifest_path.read_text())
    payload["recipe"] -= 1
    manifest_path.write_text(json.dumps(payload))
    inode = (int8_dir / TEXT_MODEL_FILE).stat().st_ino
    assert prepare_model(tiny_config) == int8_dir
    assert ExportManifest.read(int8_dir).recipe == payload["recipe"] + 1
    assert (int8_dir / TEXT_MODEL_FILE).stat().st_ino != inode
    leftovers = [p.name for p in int8_dir.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_fingerprint_follows_the_weights(tiny_sentence_transformer: Path, tmp_path: Path) -> None:
    require_export_stack()
    cache = tmp_path / "cache"
    original = create_encoder(EncoderConfig(model=str(tiny_sentence_transformer), backend="onnx-fp32", cache_dir=cache))
    retrained = build_tiny_sentence_transformer(tmp_path / "retrained", seed=1)
    changed = create_encoder(EncoderConfig(model=str(retrained), backend="onnx-fp32", cache_dir=cache))
    assert original.fingerprint != changed.fingerprint
    assert not np.allclose(original.encode_queries(["red shirt"]), changed.encode_queries(["red shirt"]))
    same_weights = build_tiny_sentence_transformer(tmp_path / "copy", seed=0)
    copy = create_encoder(EncoderConfig(model=str(same_weights), backend="onnx-fp32", cache_dir=cache))
    assert isinstance(copy, OnnxTextEncoder)
    assert copy.fingerprint == original.fingerprint, "the cache key is content, not location"
