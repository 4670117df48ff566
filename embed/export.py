"""sentence-transformers model → cached ONNX export (fp32 and int8): the only step needing torch.

``prepare_model(config)`` returns ``<cache_dir>/<content hash>/<backend>/`` and builds it when
missing: the transformer is traced to ONNX (``input_ids``, ``attention_mask`` and, if the model
uses them, ``token_type_ids`` → ``last_hidden_state``, dynamic batch and sequence axes), fused for
CPU, checked against sentence-transformers, and for ``onnx-int8`` quantised from the fp32 export.
Pooling, normalisation and tokenisation settings go to ``aisle_model.json`` beside the model.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from aisle.embed.artifacts import (
    SUPPORTED_POOLING,
    TEXT_MODEL_FILE,
    TOKENIZER_FILE,
    TORCH_INSTALL_HINT,
    ExportManifest,
    cosine_rows,
    publish_export,
    read_manifest_if_current,
)
from aisle.embed.bundled import model_display_name, resolve_model_dir
from aisle.embed.cache import content_hash, discard_dir, export_dir, staging_dir
from aisle.embed.config import EncoderConfig
from aisle.embed.onnx_text import OnnxTextEncoder
from aisle.embed.onnx_tools import export_to_onnx, fuse_for_cpu, import_torch, save_fast_tokenizer
from aisle.embed.quantize import quantize_int8

logger = logging.getLogger(__name__)

ONNX_BACKENDS = ("onnx-int8", "onnx-fp32")
_BERT_LIKE = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "distilbert", "electra", "mpnet", "albert"})
_SELF_CHECK_TEXTS = (
    "wireless mouse",
    "a",
    "Stainless steel 12-cup coffee maker with programmable timer, black",
    "Logitech K120 USB keyboard for Windows and Linux",
    "organic cotton t-shirt for men, slim fit, navy blue, size XL",
    " ".join(["long text that must be truncated at the model's maximum length"] * 60),
)
#: Inputs that reveal the activation outlier channels before int8 quantisation. Outlier channels
#: are a property of the weights (the same few channels light up for any text), so a couple of
#: dozen everyday product texts are enough; they are not taken from any evaluation set.
CALIBRATION_TEXTS = (
    *_SELF_CHECK_TEXTS[:-1],
    "Apple iPhone 13 silicone case with MagSafe, midnight",
    "men's waterproof hiking boots size 10",
    "Adobe Photoshop Elements 2023 for Windows and Mac",
    "stainless steel insulated water bottle 32 oz",
    "queen size memory foam mattress topper",
    "HP 64 black ink cartridge, 2-pack",
    "building bricks space ship kit, 1,351 pieces",
    "nitrile disposable gloves, powder free, large, box of 100",
    "mid century modern walnut coffee table",
    "4K HDMI cable 6 ft high speed",
    "vitamin D3 5000 IU softgels",
    "kids' rain jacket with hood, yellow",
    "cordless drill driver 20V with two batteries",
    "ceramic non-stick frying pan 12 inch",
    "wireless noise cancelling over-ear headphones",
    "organic green tea bags, 100 count",
    "sofa",
    "red dress",
    "gaming laptop 16gb ram",
    "desk lamp",
)


class MissingExportError(FileNotFoundError):
    """The model has no cached export and the caller asked not to export it (e.g. ``aisle serve``)."""


def prepare_model(config: EncoderConfig, *, export: bool = True) -> Path:
    """Ensures the export for ``config`` exists in the cache and returns its directory.

    A cache hit needs neither torch nor network access. For ``sentence-transformers`` there is
    nothing to export and the source model directory is returned.

    Args:
        config: the encoder configuration.
        export: export the model when the cache has no current export (needs torch); when False,
            a cache miss raises :class:`MissingExportError` instead.

    Returns:
        The export directory (or the source directory for ``sentence-transformers``).

    Raises:
        ValueError: for an unknown backend or an unsupported sentence-transformers pipeline.
        ImportError: if the export is missing and torch/sentence-transformers are not installed.
        MissingExportError: if the export is missing and ``export`` is False.
    """
    if config.backend == "sentence-transformers":
        return resolve_model_dir(config.model)
    if config.backend not in ONNX_BACKENDS:
        raise ValueError(f"unknown backend {config.backend!r}; choose one of {ONNX_BACKENDS}")
    source = resolve_model_dir(config.model)
    model_hash = content_hash(source)
    target = export_dir(config.cache_dir, model_hash, config.backend)
    if read_manifest_if_current(target) is not None:
        return target
    if not export:
        raise MissingExportError(
            f"no current {config.backend} export of {model_display_name(config.model)} in the model cache "
            f"{config.cache_dir}; `aisle build` exports it ({TORCH_INSTALL_HINT.split(' or ')[0]}), "
            "or point AISLE_CACHE_DIR at a cache that has it"
        )
    fp32_dir = export_dir(config.cache_dir, model_hash, "onnx-fp32")
    if read_manifest_if_current(fp32_dir) is None:
        _export_fp32(source, model_hash, fp32_dir, model_display_name(config.model))
    if config.backend == "onnx-int8":
        _quantize_export(fp32_dir, target)
    return target


def _load_sentence_transformer(source: Path) -> Any:
    import_torch()
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as error:
        raise ImportError(f"exporting needs sentence-transformers: {TORCH_INSTALL_HINT}") from error
    # Eager attention traces to the MatMul/Softmax pattern that onnxruntime fuses into one
    # Attention kernel; the SDPA pattern is left as ~40 small nodes per layer.
    return SentenceTransformer(
        str(source), device="cpu", model_kwargs={"attn_implementation": "eager"}, local_files_only=True
    )


def _pooling_mode(pooling: Any) -> str:
    """Reads the pooling mode from sentence-transformers' config (v6 and older layouts)."""
    config = pooling.get_config_dict()
    mode = config.get("pooling_mode")
    if mode is None:  # sentence-transformers < 6 stores one boolean per mode
        modes = [
            key.removeprefix("pooling_mode_").removesuffix("_token").removesuffix("_tokens")
            for key, value in config.items()
            if key.startswith("pooling_mode_") and value
        ]
    else:
        modes = [mode] if isinstance(mode, str) else list(mode)
    if len(modes) != 1 or modes[0] not in SUPPORTED_POOLING:
        raise ValueError(f"unsupported pooling {modes}; supported: one of {SUPPORTED_POOLING}")
    return modes[0]


def _describe(model: Any) -> dict[str, Any]:
    """Pooling, normalisation and tokenisation facts of a loaded sentence-transformers model."""
    modules = list(model)
    kinds = [type(module).__name__ for module in modules]
    if len(modules) < 2 or kinds[0] != "Transformer" or kinds[1] != "Pooling":
        raise ValueError(f"unsupported sentence-transformers pipeline {kinds}: expected Transformer, Pooling")
    if any(kind != "Normalize" for kind in kinds[2:]):
        raise ValueError(f"unsupported modules after pooling in {kinds}: only Normalize is supported")
    transformer = modules[0]
    hf_model = getattr(transformer, "model", None) or transformer.auto_model  # v6 / older releases
    tokenizer = transformer.tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("the model needs a fast (tokenizer.json) tokenizer to run without Python tokenisation")
    max_length = model.max_seq_length or tokenizer.model_max_length
    max_length = min(int(max_length), int(getattr(hf_model.config, "max_position_embeddings", 512)))
    accepted = inspect.signature(hf_model.forward).parameters
    input_names = ["input_ids", "attention_mask"]
    if "token_type_ids" in tokenizer.model_input_names and "token_type_ids" in accepted:
        input_names.append("token_type_ids")
    return {
        "hf_model": hf_model,
        "tokenizer": tokenizer,
        "pooling": _pooling_mode(modules[1]),
        "normalize": "Normalize" in kinds[2:],
        "max_length": max_length,
        "do_lower_case": bool(getattr(transformer, "do_lower_case", False)),
        "input_names": tuple(input_names),
        "dim": int(hf_model.config.hidden_size),
    }


def _trace_transformer(facts: dict[str, Any], path: Path) -> None:
    torch = import_torch()
    names = facts["input_names"]

    class LastHiddenState(torch.nn.Module):  # type: ignore[name-defined]  # torch is imported lazily
        """Positional-argument wrapper: the ONNX graph takes exactly ``names``."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: Any) -> Any:
            return self.model(**dict(zip(names, tensors, strict=True)), return_dict=True).last_hidden_state

    # Two rows of different lengths, so the traced graph contains the padding-mask path.
    batch = facts["tokenizer"](
        ["a", "an example sentence, long enough to need padding"], padding=True, return_tensors="pt"
    )
    example = {name: batch[name] if name in batch else torch.zeros_like(batch["input_ids"]) for name in names}
    axes = {name: {0: "batch", 1: "sequence"} for name in (*names, "last_hidden_state")}
    export_to_onnx(LastHiddenState(facts["hf_model"]).eval(), example, ["last_hidden_state"], path, axes)


def _min_cosine_to_reference(export: Path, reference: np.ndarray) -> float:
    encoder = OnnxTextEncoder(export, threads=1)
    return float(cosine_rows(encoder.encode_documents(list(_SELF_CHECK_TEXTS)), reference).min())


def _export_fp32(source: Path, model_hash: str, target: Path, name: str) -> None:
    logger.info("exporting %s to ONNX (one-off, needs torch) into %s", name, target)
    model = _load_sentence_transformer(source)
    facts = _describe(model)
    reference = model.encode(list(_SELF_CHECK_TEXTS), convert_to_numpy=True, normalize_embeddings=True)
    manifest = ExportManifest(
        kind="text",
        name=name,
        backend="onnx-fp32",
        content_hash=model_hash,
        dim=facts["dim"],
        max_length=facts["max_length"],
        pooling=facts["pooling"],
        normalize=facts["normalize"],
        do_lower_case=facts["do_lower_case"],
        input_names=facts["input_names"],
        pad_token=str(facts["tokenizer"].pad_token or "[PAD]"),
        pad_id=int(facts["tokenizer"].pad_token_id or 0),
    )
    staged = staging_dir(target)
    try:
        raw = staged / "unfused.onnx"
        _trace_transformer(facts, raw)
        save_fast_tokenizer(facts["tokenizer"], staged / TOKENIZER_FILE)
        config = facts["hf_model"].config
        fused = config.model_type in _BERT_LIKE and fuse_for_cpu(
            raw,
            staged / TEXT_MODEL_FILE,
            model_type="bert",
            num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size),
        )
        candidates = ([staged / TEXT_MODEL_FILE] if fused else []) + [raw]
        for candidate in candidates:
            if candidate != staged / TEXT_MODEL_FILE:
                os.replace(candidate, staged / TEXT_MODEL_FILE)
            extra = {"fused": candidate != raw, "source": str(source)}
            dataclasses.replace(manifest, extra=extra).write(staged)
            agreement = _min_cosine_to_reference(staged, reference)
            if agreement >= 0.9999:
                break
            logger.warning("ONNX export of %s disagrees with torch (cosine %.6f)", name, agreement)
        else:
            raise RuntimeError(f"ONNX export of {name} does not reproduce sentence-transformers")
        (staged / "unfused.onnx").unlink(missing_ok=True)
        extra["self_check_min_cosine"] = round(agreement, 6)
        dataclasses.replace(manifest, extra=extra).write(staged)
        publish_export(staged, target)
    finally:
        discard_dir(staged)


def _quantize_export(fp32_dir: Path, target: Path) -> None:
    """Builds the int8 export from the fp32 one (needs onnx, not torch)."""
    fp32_manifest = ExportManifest.read(fp32_dir)
    logger.info("quantising %s to int8 into %s", fp32_manifest.name, target)
    staged = staging_dir(target)
    try:
        fp32_encoder = OnnxTextEncoder(fp32_dir)
        calibration = [fp32_encoder.model_inputs([text]) for text in CALIBRATION_TEXTS]
        settings = quantize_int8(fp32_dir / TEXT_MODEL_FILE, staged / TEXT_MODEL_FILE, calibration)
        shutil.copyfile(fp32_dir / TOKENIZER_FILE, staged / TOKENIZER_FILE)
        manifest = dataclasses.replace(
            fp32_manifest, backend="onnx-int8", quantization=settings, extra=dict(fp32_manifest.extra)
        )
        manifest.write(staged)
        reference = fp32_encoder.encode_documents(list(_SELF_CHECK_TEXTS))
        agreement = _min_cosine_to_reference(staged, reference)
        if agreement < 0.9:
            raise RuntimeError(f"int8 quantisation broke {manifest.name} (min cosine {agreement:.4f})")
        manifest.extra["self_check_min_cosine_to_fp32"] = round(agreement, 6)
        manifest.write(staged)
        publish_export(staged, target)
    finally:
        discard_dir(staged)
