"""Image vectors: NumPy/Pillow preprocessing, CLIP tower export parity, robustness to bad files."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from aisle.embed import ImageEncoderConfig, create_image_encoder, prepare_image_model
from aisle.embed.artifacts import ExportManifest
from aisle.embed.image_encoder import OnnxClipEncoder
from aisle.embed.images import ImagePreprocessor


def _reference_processor(model_dir: Path) -> Any:
    """transformers' PIL implementation of CLIPImageProcessor (the torchvision one is not the reference)."""
    transformers = pytest.importorskip("transformers")
    processor_class = getattr(transformers, "CLIPImageProcessorPil", None)
    if processor_class is None:  # transformers < 5: CLIPImageProcessor is the PIL implementation
        processor_class = transformers.CLIPImageProcessor
    return processor_class.from_pretrained(str(model_dir))


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _torch_features(output: Any) -> np.ndarray:
    """``get_*_features`` returns a tensor (transformers 4) or an output with ``pooler_output`` (5)."""
    tensor = getattr(output, "pooler_output", output)
    return tensor.detach().numpy()


@pytest.fixture(scope="module")
def odd_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Edge cases: transparency, grayscale, landscape, smaller than the crop."""
    folder = tmp_path_factory.mktemp("odd-images")
    rng = np.random.default_rng(7)
    rgba = rng.integers(0, 256, (40, 30, 4), dtype=np.uint8)
    rgba[:10, :, 3] = 0  # fully transparent band → white after conversion
    Image.fromarray(rgba, "RGBA").save(folder / "transparent.png")
    Image.fromarray(rng.integers(0, 256, (50, 45), dtype=np.uint8), "L").save(folder / "gray.png")
    Image.fromarray(rng.integers(0, 256, (33, 77, 3), dtype=np.uint8), "RGB").save(folder / "wide.png")
    Image.fromarray(rng.integers(0, 256, (20, 12, 3), dtype=np.uint8), "RGB").save(folder / "tiny.png")
    return sorted(folder.iterdir())


def test_preprocessing_matches_clip_image_processor(
    tiny_clip: Path, fashion_images: list[Path], odd_images: list[Path]
) -> None:
    """Same PIL bicubic resize on the same uint8 image, so only float rounding differs (< 1e-5).

    The tolerance is 1e-4 in normalised units, i.e. ~7e-6 of a 0-255 pixel step: any difference
    in resize size, filter, crop offset, channel order or mean/std shows up as >= 1e-2.
    """
    reference = _reference_processor(tiny_clip)
    ours = ImagePreprocessor.from_dir(tiny_clip)
    for path in [*fashion_images, *odd_images]:
        with Image.open(path) as image:
            expected = reference(images=image, return_tensors="np")["pixel_values"][0]
            got = ours(image)
        assert got.shape == expected.shape == (3, 32, 32), path
        assert got.dtype == np.float32
        assert np.abs(got - expected).max() < 1e-4, path


def test_preprocessor_config_variants() -> None:
    legacy = ImagePreprocessor.from_config({"size": 224, "crop_size": 224, "do_normalize": False, "resample": 2})
    assert (legacy.shortest_edge, legacy.crop, legacy.mean, legacy.resample) == (224, (224, 224), None, 2)
    square = ImagePreprocessor.from_config({"size": {"height": 64, "width": 48}, "do_center_crop": False})
    pixels = square(Image.new("RGB", (300, 100), (255, 0, 0)))
    assert pixels.shape == (3, 64, 48)
    with pytest.raises(ValueError, match="unsupported image size"):
        ImagePreprocessor.from_config({"size": {"longest_edge": 10}})


def test_towers_match_transformers(tiny_clip_config: ImageEncoderConfig, fashion_images: list[Path]) -> None:
    torch = pytest.importorskip("torch")
    from transformers import AutoTokenizer, CLIPModel

    encoder = create_image_encoder(tiny_clip_config)
    assert isinstance(encoder, OnnxClipEncoder)
    assert encoder.dim == 16 and encoder.modality == "image"
    assert encoder.fingerprint.startswith("clip-onnx-fp32:")
    model = CLIPModel.from_pretrained(tiny_clip_config.model).eval()
    processor = _reference_processor(Path(tiny_clip_config.model))
    images = [Image.open(path).convert("RGB") for path in fashion_images]
    pixels = torch.from_numpy(processor(images=images, return_tensors="np")["pixel_values"])
    texts = ["red shirt", "black leather bag for women", "watch", "blue jeans " * 20]
    tokenizer = AutoTokenizer.from_pretrained(tiny_clip_config.model)
    batch = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        expected_images = _unit(_torch_features(model.get_image_features(pixel_values=pixels)))
        expected_texts = _unit(_torch_features(model.get_text_features(**batch)))
    vectors, ok = encoder.encode_images(fashion_images, batch_size=4)
    assert ok.all()
    assert (vectors * expected_images).sum(axis=1).min() >= 0.9999
    assert (encoder.encode_queries(texts) * expected_texts).sum(axis=1).min() >= 0.9999


def test_int8_towers_run(tiny_clip_config: ImageEncoderConfig, fashion_images: list[Path]) -> None:
    int8_config = dataclasses.replace(tiny_clip_config, backend="onnx-int8")
    int8 = create_image_encoder(int8_config)
    fp32 = create_image_encoder(tiny_clip_config)
    assert int8 is not None and fp32 is not None
    manifest = ExportManifest.read(prepare_image_model(int8_config))
    assert manifest.quantization is not None and set(manifest.quantization) == {"vision", "text"}
    assert int8.fingerprint.split(":")[1] == fp32.fingerprint.split(":")[1] != ""
    vectors, ok = int8.encode_images(fashion_images)
    reference, _ = fp32.encode_images(fashion_images)
    assert ok.all() and np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (vectors * reference).sum(axis=1).mean() > 0.9
    queries = int8.encode_queries(["red shirt", "watch"])
    assert queries.shape == (2, 16) and (queries * fp32.encode_queries(["red shirt", "watch"])).sum(axis=1).min() > 0.9


def test_unreadable_images_are_skipped_not_fatal(
    tiny_clip_config: ImageEncoderConfig, fashion_images: list[Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    encoder = create_image_encoder(tiny_clip_config)
    assert encoder is not None
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(fashion_images[0].read_bytes()[:300])
    paths = [fashion_images[0], tmp_path / "missing.jpg", corrupt, truncated, tmp_path, fashion_images[1]]
    with caplog.at_level(logging.WARNING, logger="aisle.embed"):
        vectors, ok = encoder.encode_images(paths, batch_size=2)
    assert ok.tolist() == [True, False, False, False, False, True]
    assert np.all(vectors[~ok] == 0)
    np.testing.assert_allclose(np.linalg.norm(vectors[ok], axis=1), 1.0, atol=1e-5)
    good, _ = encoder.encode_images([fashion_images[0], fashion_images[1]])
    np.testing.assert_allclose(vectors[ok], good, atol=1e-6)
    warned = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warned) == 4 and all("skipping image" in message for message in warned)
    empty, empty_ok = encoder.encode_images([])
    assert empty.shape == (0, 16) and empty_ok.shape == (0,)


def test_documents_of_an_image_encoder_are_images(tiny_clip_config: ImageEncoderConfig) -> None:
    encoder = create_image_encoder(tiny_clip_config)
    assert encoder is not None
    with pytest.raises(NotImplementedError, match="encode_images"):
        encoder.encode_documents(["red shirt"])
