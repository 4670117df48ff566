"""Local Hugging Face CLIP-style directory → two cached ONNX towers (fp32 and int8).

* ``vision.onnx``: ``pixel_values`` (batch, 3, H, W) → ``image_embeds`` (after the visual
  projection, before normalisation), i.e. ``get_image_features``.
* ``text.onnx``: ``input_ids`` (and ``attention_mask`` for CLIP) → ``text_embeds``, i.e.
  ``get_text_features``.

Two families, told apart by ``model_type`` in ``config.json``:

* ``clip``: OpenAI CLIP and OpenCLIP models in their ``transformers`` form (``CLIPModel``);
  texts are padded to the batch's longest and masked, the text vector is the end token's.
* ``siglip``: ``SiglipModel`` (SigLIP, and SigLIP 2's fixed-resolution checkpoints). Its text
  tower reads the *last* position and was trained on texts padded to ``max_length`` without a
  mask, so the export takes ``input_ids`` only and the runtime pads every query to that length
  (``pad_to_length`` in the manifest). The tokenizer must be a fast one (``tokenizer.json``);
  SentencePiece-only checkpoints are refused with a message saying so.

Beside them: ``tokenizer.json``, the source ``preprocessor_config.json`` and ``aisle_model.json``.
The cache layout and atomic publication are the text encoders' (``<hash>/clip-<backend>/``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from aisle.embed.artifacts import (
    TOKENIZER_FILE,
    TORCH_INSTALL_HINT,
    ExportManifest,
    cosine_rows,
    publish_export,
    read_manifest_if_current,
)
from aisle.embed.bundled import resolve_model_dir
from aisle.embed.cache import content_hash, discard_dir, export_dir, staging_dir
from aisle.embed.config import ImageEncoderConfig
from aisle.embed.images import PREPROCESSOR_FILE, ImagePreprocessor
from aisle.embed.onnx_tools import export_to_onnx, import_torch, save_fast_tokenizer
from aisle.embed.quantize import quantize_int8
from aisle.embed.runtime import load_tokenizer, make_session

logger = logging.getLogger(__name__)

VISION_FILE = "vision.onnx"
TEXT_FILE = "text.onnx"
IMAGE_BACKENDS = ("onnx-int8", "onnx-fp32")
_CHECK_TEXTS = ("red cotton shirt", "a", "black leather handbag with a gold zip, for women")


def clip_cache_backend(backend: str) -> str:
    """Cache sub-directory (and fingerprint prefix) of a CLIP export, e.g. ``clip-onnx-int8``."""
    return f"clip-{backend}"


def prepare_clip_model(config: ImageEncoderConfig) -> Path:
    """Ensures the ONNX export of ``config.model`` is cached and returns its directory.

    Raises:
        ValueError: if no model is configured or the backend is unknown.
        ImportError: if the export is missing and torch/transformers are not installed.
    """
    if config.model is None:
        raise ValueError("no image model configured")
    if config.backend not in IMAGE_BACKENDS:
        raise ValueError(f"unknown image backend {config.backend!r}; choose one of {IMAGE_BACKENDS}")
    source = resolve_model_dir(config.model)
    model_hash = content_hash(source)
    target = export_dir(config.cache_dir, model_hash, clip_cache_backend(config.backend))
    if read_manifest_if_current(target) is not None:
        return target
    fp32_dir = export_dir(config.cache_dir, model_hash, clip_cache_backend("onnx-fp32"))
    if read_manifest_if_current(fp32_dir) is None:
        _export_fp32(source, model_hash, fp32_dir)
    if config.backend == "onnx-int8":
        _quantize(fp32_dir, target)
    return target


def cached_clip_export(config: ImageEncoderConfig) -> Path | None:
    """The cached export of ``config.model`` if it exists (no export, no torch), else None.

    Raises:
        FileNotFoundError: the model directory does not exist.
    """
    if config.model is None:
        return None
    source = resolve_model_dir(config.model)
    target = export_dir(config.cache_dir, content_hash(source), clip_cache_backend(config.backend))
    return target if read_manifest_if_current(target) is not None else None


#: ``model_type`` values of ``config.json`` that can be exported.
MODEL_TYPES = ("clip", "siglip")


def model_type(source: Path) -> str:
    """The ``model_type`` of a model directory's ``config.json``.

    Raises:
        FileNotFoundError: no ``config.json``.
        ValueError: unreadable, or a type Aisle cannot export.
    """
    path = source / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: not a transformers model directory")
    try:
        kind = json.loads(path.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError) as error:
        raise ValueError(f"{path} is not a valid JSON object: {error}") from None
    if kind not in MODEL_TYPES:
        raise ValueError(
            f"{source} holds a {kind!r} model; image models must be CLIP (OpenCLIP in its transformers "
            "form included) or SigLIP"
        )
    return str(kind)


def _load_clip(source: Path) -> tuple[Any, Any]:
    import_torch()
    kind = model_type(source)
    try:
        from transformers import AutoTokenizer, CLIPModel, SiglipModel
    except ImportError as error:
        raise ImportError(f"exporting a CLIP model needs transformers: {TORCH_INSTALL_HINT}") from error
    model_class = SiglipModel if kind == "siglip" else CLIPModel
    model = model_class.from_pretrained(str(source), attn_implementation="eager", local_files_only=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    except (ImportError, ValueError) as error:  # e.g. a SentencePiece tokenizer without the library
        raise ValueError(f"{source} needs a fast tokenizer (tokenizer.json): {error}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{source} needs a fast tokenizer (tokenizer.json) to run without transformers")
    return model.eval(), tokenizer


def _towers(model: Any) -> tuple[Any, Any]:
    """``torch.nn.Module`` wrappers computing exactly ``get_image_features``/``get_text_features``."""
    torch = import_torch()

    siglip = model.config.model_type == "siglip"
    module: Any = torch.nn.Module

    class VisionTower(module):
        def __init__(self) -> None:
            super().__init__()
            self.clip = model

        def forward(self, pixel_values: Any) -> Any:
            pooled = self.clip.vision_model(pixel_values=pixel_values, return_dict=True).pooler_output
            return pooled if siglip else self.clip.visual_projection(pooled)

    class TextTower(module):
        def __init__(self) -> None:
            super().__init__()
            self.clip = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            output = self.clip.text_model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
            return self.clip.text_projection(output.pooler_output)

    class SiglipTextTower(module):
        def __init__(self) -> None:
            super().__init__()
            self.clip = model

        def forward(self, input_ids: Any) -> Any:
            return self.clip.text_model(input_ids=input_ids, return_dict=True).pooler_output

    return VisionTower().eval(), (SiglipTextTower() if siglip else TextTower()).eval()


def _export_fp32(source: Path, model_hash: str, target: Path) -> None:
    torch = import_torch()
    logger.info("exporting CLIP model %s to ONNX (one-off, needs torch) into %s", source, target)
    model, tokenizer = _load_clip(source)
    vision, text = _towers(model)
    preprocessor = ImagePreprocessor.from_dir(source)
    image_size = int(model.config.vision_config.image_size)
    max_length = min(int(tokenizer.model_max_length), int(model.config.text_config.max_position_embeddings))
    siglip = model.config.model_type == "siglip"
    # Random pixels, and texts of different lengths so that the padding path is traced.
    rng = np.random.default_rng(0)
    pixels = torch.from_numpy(rng.standard_normal((2, 3, image_size, image_size), dtype=np.float32))
    padding = "max_length" if siglip else True
    batch = tokenizer(list(_CHECK_TEXTS), padding=padding, truncation=True, max_length=max_length, return_tensors="pt")
    tokens = {"input_ids": batch["input_ids"]}
    if not siglip:
        tokens["attention_mask"] = batch["attention_mask"]
    with torch.no_grad():
        expected_image = vision(pixels).numpy()
        expected_text = text(**tokens).numpy()
    staged = staging_dir(target)
    try:
        batch_axis = {0: "batch"}
        token_axes = {0: "batch", 1: "sequence"}
        export_to_onnx(
            vision, {"pixel_values": pixels}, ["image_embeds"], staged / VISION_FILE,
            {"pixel_values": batch_axis, "image_embeds": batch_axis},
        )  # fmt: skip
        export_to_onnx(
            text, tokens, ["text_embeds"], staged / TEXT_FILE,
            {**{name: token_axes for name in tokens}, "text_embeds": batch_axis},
        )  # fmt: skip
        save_fast_tokenizer(tokenizer, staged / TOKENIZER_FILE)
        shutil.copyfile(source / PREPROCESSOR_FILE, staged / PREPROCESSOR_FILE)
        agreement = _agreement(staged, pixels.numpy(), tokens, expected_image, expected_text)
        if agreement < 0.9999:
            raise RuntimeError(f"ONNX export of {source} disagrees with transformers (cosine {agreement:.6f})")
        ExportManifest(
            kind="clip",
            name=source.name,
            backend=clip_cache_backend("onnx-fp32"),
            content_hash=model_hash,
            dim=int(expected_image.shape[1]),
            max_length=max_length,
            pooling="last" if siglip else "eos",
            input_names=tuple(tokens),
            pad_token=str(tokenizer.pad_token),
            pad_id=int(tokenizer.pad_token_id),
            extra={
                "image_size": image_size,
                "source": str(source),
                "self_check_min_cosine": round(agreement, 6),
                "model_type": model.config.model_type,
                "pad_to_length": max_length if siglip else None,
                "preprocessor": dataclasses.asdict(preprocessor),
            },
        ).write(staged)
        publish_export(staged, target)
    finally:
        discard_dir(staged)


def _agreement(export: Path, pixels: np.ndarray, tokens: Any, image: np.ndarray, text: np.ndarray) -> float:
    """Minimum cosine between the ONNX towers in ``export`` and reference outputs."""
    vision = make_session(export / VISION_FILE, threads=1)
    text_session = make_session(export / TEXT_FILE, threads=1)
    got_image = vision.run(None, {"pixel_values": pixels})[0]
    got_text = text_session.run(None, {name: value.numpy().astype(np.int64) for name, value in tokens.items()})[0]
    return float(min(cosine_rows(got_image, image).min(), cosine_rows(got_text, text).min()))


Feeds = list[dict[str, np.ndarray]]


def _calibration(fp32_dir: Path, manifest: ExportManifest) -> tuple[Feeds, Feeds]:
    """Feeds that reveal activation outliers: noise images and everyday product texts."""
    from aisle.embed.export import CALIBRATION_TEXTS

    size = int(manifest.extra["image_size"])
    rng = np.random.default_rng(0)
    vision = [{"pixel_values": rng.standard_normal((1, 3, size, size), dtype=np.float32)} for _ in range(8)]
    tokenizer = load_tokenizer(fp32_dir / TOKENIZER_FILE, max_length=manifest.max_length)
    ids, mask = token_arrays(tokenizer.encode_batch(list(CALIBRATION_TEXTS)), manifest)
    text = [
        {name: value[row : row + 1] for name, value in (("input_ids", ids), ("attention_mask", mask))
         if name in manifest.input_names}
        for row in range(len(ids))
    ]  # fmt: skip
    return vision, text


def token_arrays(encodings: list[Any], manifest: ExportManifest) -> tuple[np.ndarray, np.ndarray]:
    """``input_ids`` and ``attention_mask`` of a batch, padded as the model family expects:
    to the longest text (CLIP), or to ``pad_to_length`` (SigLIP)."""
    pad_to = manifest.extra.get("pad_to_length")
    width = int(pad_to) if pad_to else max(len(encoding.ids) for encoding in encodings)
    ids = np.full((len(encodings), width), manifest.pad_id, dtype=np.int64)
    mask = np.zeros((len(encodings), width), dtype=np.int64)
    for row, encoding in enumerate(encodings):
        length = min(len(encoding.ids), width)
        ids[row, :length] = encoding.ids[:length]
        mask[row, :length] = 1
    return ids, mask


def _quantize(fp32_dir: Path, target: Path) -> None:
    """int8 towers from the fp32 export (needs onnx, not torch)."""
    manifest = ExportManifest.read(fp32_dir)
    logger.info("quantising CLIP model %s to int8 into %s", manifest.name, target)
    staged = staging_dir(target)
    try:
        vision_calibration, text_calibration = _calibration(fp32_dir, manifest)
        settings = {
            "vision": quantize_int8(fp32_dir / VISION_FILE, staged / VISION_FILE, vision_calibration),
            "text": quantize_int8(fp32_dir / TEXT_FILE, staged / TEXT_FILE, text_calibration),
        }
        for name in (TOKENIZER_FILE, PREPROCESSOR_FILE):
            shutil.copyfile(fp32_dir / name, staged / name)
        dataclasses.replace(
            manifest, backend=clip_cache_backend("onnx-int8"), quantization=settings, extra=dict(manifest.extra)
        ).write(staged)
        publish_export(staged, target)
    finally:
        discard_dir(staged)
