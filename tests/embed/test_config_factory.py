"""Configuration and factory behaviour that needs no model export."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from aisle import embed
from aisle.embed import (
    BUNDLED_MODEL,
    EncoderConfig,
    ImageEncoderConfig,
    create_encoder,
    create_image_encoder,
    prepare_model,
)
from tests.embed.conftest import REPO_ROOT


def test_unknown_text_backend_is_a_clear_value_error(tmp_path: Path) -> None:
    config = EncoderConfig(backend="onnx-int4", cache_dir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown encoder backend 'onnx-int4'"):
        create_encoder(config)
    with pytest.raises(ValueError, match="unknown backend 'onnx-int4'"):
        prepare_model(config)


def test_unknown_image_backend_is_a_clear_value_error(tmp_path: Path) -> None:
    config = ImageEncoderConfig(model=str(tmp_path), backend="tensorrt", cache_dir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown image backend 'tensorrt'"):
        create_image_encoder(config)


def test_no_image_model_returns_none_and_logs_one_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="aisle.embed"):
        assert create_image_encoder(ImageEncoderConfig(model=None)) is None
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["no image model configured: product images are ignored"]


def test_missing_local_model_directory_is_reported(tmp_path: Path) -> None:
    config = EncoderConfig(model=str(tmp_path / "no-such-model"), cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="no-such-model.*never downloaded"):
        create_encoder(config)


def test_configs_are_frozen_and_hashable(tmp_path: Path) -> None:
    config = EncoderConfig(cache_dir=tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.backend = "onnx-fp32"  # type: ignore[misc]
    assert hash(config) == hash(EncoderConfig(cache_dir=tmp_path))
    assert config.model == BUNDLED_MODEL and config.backend == "onnx-int8" and config.threads == 1
    assert hash(ImageEncoderConfig()) == hash(ImageEncoderConfig())


def test_import_embed_does_not_import_torch() -> None:
    code = (
        "import sys, aisle.embed, aisle.embed.images, aisle.embed.image_encoder, aisle.embed.onnx_text, aisle.embed.export, aisle.embed.clip\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "", f"importing embed pulled in {result.stdout.strip()}"


def test_public_names_are_exported() -> None:
    for name in embed.__all__:
        assert getattr(embed, name) is not None
    assert embed.OnnxTextEncoder.modality == "text"
    assert embed.OnnxClipEncoder.modality == "image"


def test_aisle_cache_dir_is_one_directory_for_settings_and_configs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An encoder built from the settings and one built from a bare config (the serving tune of
    ``aisle train``) must find the same export, not export the model twice."""
    from aisle.settings import AisleSettings

    monkeypatch.setenv("AISLE_CACHE_DIR", str(tmp_path))
    assert EncoderConfig().cache_dir == AisleSettings().encoder_config().cache_dir == tmp_path
    assert ImageEncoderConfig(model="clip").cache_dir == tmp_path
    monkeypatch.delenv("AISLE_CACHE_DIR")
    assert EncoderConfig().cache_dir == AisleSettings().encoder_config().cache_dir
