"""What an exported model directory contains, readable without torch.

An export directory holds ``model.onnx`` (text) or ``vision.onnx`` + ``text.onnx`` (CLIP),
``tokenizer.json`` and ``aisle_model.json``: the facts the runtime needs to reproduce the
source framework's output (pooling, normalisation, truncation length, lower-casing).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aisle.embed.cache import discard_dir, publish_dir, write_json_atomic

#: Bumped whenever the export or quantisation recipe changes: cached exports written by an older
#: recipe are rebuilt instead of silently served.
EXPORT_RECIPE = 6

MANIFEST_NAME = "aisle_model.json"
TEXT_MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"

SUPPORTED_POOLING = ("mean", "cls", "max")

TORCH_INSTALL_HINT = (
    "install the export extra (pip install 'aisle-search[export]') or run `aisle build` on a machine "
    "where torch is available and copy the model cache"
)


@dataclass(frozen=True)
class ExportManifest:
    """Contents of ``aisle_model.json``.

    Attributes:
        kind: ``"text"`` (sentence-transformers) or ``"clip"``.
        name: human-readable model name.
        backend: cache backend name, e.g. ``onnx-int8`` or ``clip-onnx-fp32``.
        content_hash: SHA-256 of the source model directory.
        dim: output dimensions.
        max_length: truncation length in tokens (sentence-transformers' ``max_seq_length``).
        pooling: ``mean``, ``cls`` or ``max`` (text models only).
        normalize: whether the source pipeline ends with a ``Normalize`` module. Encoders always
            return unit vectors (the ``Encoder`` contract); this records the source's behaviour.
        do_lower_case: whether sentence-transformers lower-cases before tokenising.
        input_names: ONNX inputs of the text model, in order.
        pad_token: padding token of the tokenizer.
        pad_id: its id.
        quantization: how the weights were quantised (``None`` for fp32).
        recipe: :data:`EXPORT_RECIPE` at export time.
        extra: free-form details (e.g. the CLIP image size).
    """

    kind: str
    name: str
    backend: str
    content_hash: str
    dim: int
    max_length: int
    pooling: str = "mean"
    normalize: bool = True
    do_lower_case: bool = False
    input_names: tuple[str, ...] = ("input_ids", "attention_mask")
    pad_token: str = "[PAD]"
    pad_id: int = 0
    quantization: dict[str, Any] | None = None
    recipe: int = EXPORT_RECIPE
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """``"<backend>:<content hash>"``: identifies weights and numeric backend."""
        return f"{self.backend}:{self.content_hash}"

    def write(self, directory: Path) -> None:
        """Writes the manifest atomically into ``directory``."""
        payload = asdict(self)
        payload["input_names"] = list(self.input_names)
        write_json_atomic(Path(directory) / MANIFEST_NAME, payload)

    @classmethod
    def read(cls, directory: Path) -> ExportManifest:
        """Reads ``aisle_model.json`` from ``directory``.

        Raises:
            FileNotFoundError: if the directory holds no manifest (not an export).
            ValueError: if the manifest is malformed.
        """
        path = Path(directory) / MANIFEST_NAME
        payload = json.loads(path.read_text(encoding="utf-8"))
        try:
            payload["input_names"] = tuple(payload["input_names"])
            return cls(**payload)
        except (KeyError, TypeError) as error:
            raise ValueError(f"malformed export manifest {path}: {error}") from error


def read_manifest_if_current(directory: Path) -> ExportManifest | None:
    """The manifest of a complete export written by the current recipe, else ``None``."""
    try:
        manifest = ExportManifest.read(directory)
    except (FileNotFoundError, NotADirectoryError, ValueError, json.JSONDecodeError):
        return None
    return manifest if manifest.recipe == EXPORT_RECIPE else None


def cosine_rows(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two equally shaped matrices (used by export self-checks)."""
    left = np.asarray(left, dtype=np.float64)
    right = np.asarray(right, dtype=np.float64)
    norms = np.linalg.norm(left, axis=1) * np.linalg.norm(right, axis=1)
    return (left * right).sum(axis=1) / np.maximum(norms, 1e-12)


def retire_stale(path: Path) -> None:
    """Moves an outdated cache entry out of the way (one atomic rename) and deletes it."""
    if not path.exists():
        return
    trash = path.with_name(f".{path.name}.stale-{uuid.uuid4().hex}")
    try:
        os.rename(path, trash)
    except OSError:  # another process retired or replaced it first
        return
    discard_dir(trash)


def publish_export(staged: Path, target: Path) -> Path:
    """Publishes a finished export, replacing an entry of an older recipe but never a current one.

    If a concurrent exporter published first, its (equivalent) export is kept and ours dropped.
    """
    if read_manifest_if_current(target) is None:
        retire_stale(target)
    return publish_dir(staged, target)


class ManifestIdentity:
    """``name``, ``dim`` and ``fingerprint`` of an encoder read from its export's ``manifest``."""

    manifest: ExportManifest

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def dim(self) -> int:
        return self.manifest.dim

    @property
    def fingerprint(self) -> str:
        return self.manifest.fingerprint
