"""CLIP and SigLIP exports against transformers, on tiny random models the tests build.

Bounds: fp32 towers reproduce transformers to cosine >= 0.99 on every picture and text (they
measure 1.00000); int8 towers to cosine >= 0.98 (they measure >= 0.999 on these tiny models:
a real model's int8 error is larger and is not measured here, since none can be downloaded).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from aisle.embed import ImageEncoderConfig, create_image_encoder
from aisle.embed.artifacts import ExportManifest

TEXTS = ["red shirt", "black leather bag for women", "watch", "blue jeans " * 20, "a"]
FP32_BOUND, INT8_BOUND = 0.99, 0.98


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _features(output: Any) -> np.ndarray:
    return getattr(output, "pooler_output", output).detach().numpy()


def _reference(model_dir: Path, kind: str, images: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """transformers' own image and text vectors (PIL image processor, the family's padding)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    model_class = transformers.SiglipModel if kind == "siglip" else transformers.CLIPModel
    model = model_class.from_pretrained(str(model_dir)).eval()
    name = "SiglipImageProcessor" if kind == "siglip" else "CLIPImageProcessor"
    processor = getattr(transformers, name + "Pil", getattr(transformers, name)).from_pretrained(str(model_dir))
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir))
    pixels = processor(images=[Image.open(path).convert("RGB") for path in images], return_tensors="np")
    if kind == "siglip":  # SigLIP is trained on texts padded to max_length, without a mask
        batch = tokenizer(TEXTS, padding="max_length", truncation=True, return_tensors="pt")
        text_inputs = {"input_ids": batch["input_ids"]}
    else:
        text_inputs = dict(tokenizer(TEXTS, padding=True, truncation=True, return_tensors="pt"))
    with torch.no_grad():
        image = _features(model.get_image_features(pixel_values=torch.from_numpy(pixels["pixel_values"])))
        text = _features(model.get_text_features(**text_inputs))
    return _unit(image), _unit(text)


@pytest.fixture(scope="module", params=["clip", "siglip"])
def tiny_model(request: pytest.FixtureRequest) -> tuple[str, Path]:
    fixture = "tiny_siglip" if request.param == "siglip" else "tiny_clip"
    return request.param, request.getfixturevalue(fixture)


@pytest.mark.parametrize(("backend", "bound"), [("onnx-fp32", FP32_BOUND), ("onnx-int8", INT8_BOUND)])
def test_export_matches_transformers(
    tiny_model: tuple[str, Path],
    backend: str,
    bound: float,
    fashion_images: list[Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    kind, model_dir = tiny_model
    config = ImageEncoderConfig(model=str(model_dir), backend=backend, cache_dir=tmp_path_factory.mktemp("cache"))  # type: ignore[arg-type]
    encoder = create_image_encoder(config)
    assert encoder is not None
    manifest = ExportManifest.read(encoder.model_dir)  # type: ignore[attr-defined]
    assert manifest.extra["model_type"] == kind
    assert manifest.input_names == (("input_ids",) if kind == "siglip" else ("input_ids", "attention_mask"))
    expected_images, expected_texts = _reference(model_dir, kind, fashion_images)
    vectors, ok = encoder.encode_images(fashion_images)
    assert ok.all()
    assert (vectors * expected_images).sum(axis=1).min() >= bound
    assert (encoder.encode_queries(TEXTS) * expected_texts).sum(axis=1).min() >= bound
    # Decoded pictures (the build's path) give the same vectors as files.
    pictures = encoder.encode_pictures([Image.open(path) for path in fashion_images])  # type: ignore[attr-defined]
    np.testing.assert_allclose(pictures, vectors, atol=1e-5)


def test_unsupported_model_types_are_refused(tmp_path: Path, tiny_clip: Path) -> None:
    from aisle.embed.clip import model_type

    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(ValueError, match="holds a 'bert' model; image models must be CLIP"):
        model_type(other)
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        model_type(tmp_path)
    assert model_type(tiny_clip) == "clip"


def test_int8_and_fp32_share_the_model_hash(tiny_clip_config: ImageEncoderConfig) -> None:
    fp32 = create_image_encoder(tiny_clip_config)
    int8 = create_image_encoder(dataclasses.replace(tiny_clip_config, backend="onnx-int8"))
    assert fp32 is not None and int8 is not None
    assert fp32.fingerprint.split(":")[1] == int8.fingerprint.split(":")[1]
    assert fp32.fingerprint != int8.fingerprint
