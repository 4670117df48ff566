"""Collaborative item vectors inside a model directory: the files ``aisle train`` writes, read back.

A model directory may carry, beside the text encoder, what ``aisle train`` (with histories)
learnt from the shop's event sequences (``aisle.training.collaborative``)::

    collaborative/manifest.json   format, item ids, shapes, sha256 of every array file
    collaborative/items.npy       float32 (n, d): the vector of every trained item
    collaborative/bias.npy        float32 (n,): every trained item's score offset
    collaborative/projection.npy  float32 (text dim, d): text vector → item vector (cold items)
    collaborative/positions.npy   float32 (L,): weight of the latest, second latest, ... item
    collaborative/transform.npy   float32 (d, d): history vector → query vector
    aisle-serving.json            the serving settings tuned for this model

A customer's query vector is ``(Σ_k positions[k] · item[k-th latest]) @ transform`` and an item's
score ``query · item + bias``: a dot product per item, NumPy only (no torch at serving). An item
the training never saw gets ``text vector @ projection`` and the manifest's ``cold_bias``.

Neither the directory nor the serving file is text-encoder content: ``aisle.embed.cache`` leaves
them out of the model's fingerprint, so the encoder's export and every index built with it are
shared with the base model. Arrays are read with ``allow_pickle=False`` and checked against the
manifest's sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

COLLABORATIVE_DIR = "collaborative"
SERVING_SETTINGS = "aisle-serving.json"
FORMAT = "aisle-collaborative-1"
ARRAYS = ("items", "bias", "projection", "positions", "transform")


class CollaborativeError(ValueError):
    """The collaborative files of a model directory are missing parts, damaged or inconsistent."""


@dataclass(frozen=True)
class CollaborativeVectors:
    """A trained next-item model over item vectors (see the module docstring).

    Attributes:
        item_ids: the trained items, in the row order of ``items`` and ``bias``.
        items: float32 (n, d) item vectors.
        bias: float32 (n,) item score offsets.
        projection: float32 (text dim, d) from a text vector to an item vector.
        positions: float32 (L,) weights of the latest L items of a history, latest first.
        transform: float32 (d, d) from the weighted history to the query vector.
        cold_bias: the score offset of an item the training never saw.
        info: how it was trained (free-form, recorded in the manifest).
    """

    item_ids: tuple[str, ...]
    items: np.ndarray
    bias: np.ndarray
    projection: np.ndarray
    positions: np.ndarray
    transform: np.ndarray
    cold_bias: float = 0.0
    info: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        n, d = self.items.shape if self.items.ndim == 2 else (-1, -1)
        expected = {
            "items": (len(self.item_ids), d),
            "bias": (len(self.item_ids),),
            "projection": (self.projection.shape[0] if self.projection.ndim == 2 else -1, d),
            "positions": (self.positions.shape[0] if self.positions.ndim == 1 else -1,),
            "transform": (d, d),
        }
        for name, shape in expected.items():
            array = getattr(self, name)
            if array.dtype != np.float32 or array.shape != shape or -1 in shape or n < 0:
                raise CollaborativeError(f"collaborative {name}: {array.dtype} {array.shape}, expected float32 {shape}")
            if not np.all(np.isfinite(array)):
                raise CollaborativeError(f"collaborative {name}: holds NaN or infinite values")
        if len(set(self.item_ids)) != len(self.item_ids):
            raise CollaborativeError("collaborative item ids repeat an id")

    @property
    def dim(self) -> int:
        return int(self.items.shape[1])

    @property
    def text_dim(self) -> int:
        return int(self.projection.shape[0])

    def query_vector(self, history: np.ndarray) -> np.ndarray:
        """The query vector of a history given as item vectors (k, d), latest first.

        Items beyond the ``positions`` learnt are left out (they weighed nothing in training).
        """
        history = np.asarray(history, dtype=np.float32)[: len(self.positions)]
        weighted = self.positions[: len(history)] @ history if len(history) else np.zeros(self.dim, np.float32)
        return (weighted @ self.transform).astype(np.float32)

    def write(self, model_dir: Path) -> Path:
        """Writes the files into ``model_dir/collaborative`` (fsynced; the caller renames the
        whole model directory into place, which makes the set appear at once)."""
        folder = Path(model_dir) / COLLABORATIVE_DIR
        folder.mkdir(parents=True, exist_ok=True)
        files = {}
        for name in ARRAYS:
            path = folder / f"{name}.npy"
            with open(path, "wb") as handle:
                np.save(handle, np.ascontiguousarray(getattr(self, name)), allow_pickle=False)
                handle.flush()
                os.fsync(handle.fileno())
            files[name] = {"file": path.name, "sha256": _sha256(path)}
        manifest = {
            "format": FORMAT,
            "item_ids": list(self.item_ids),
            "dim": self.dim,
            "text_dim": self.text_dim,
            "cold_bias": float(self.cold_bias),
            "files": files,
            "info": self.info or {},
        }
        _write_fsynced(folder / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8"))
        return folder

    @classmethod
    def read(cls, model_dir: Path) -> CollaborativeVectors:
        """Reads and checks ``model_dir/collaborative``.

        Raises:
            CollaborativeError: a missing file, a checksum or shape that does not match.
        """
        folder = Path(model_dir) / COLLABORATIVE_DIR
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CollaborativeError(f"{folder}: unreadable manifest.json ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise CollaborativeError(f"{folder}: manifest.json is not of format {FORMAT}")
        arrays = {}
        for name in ARRAYS:
            entry = manifest.get("files", {}).get(name)
            if not isinstance(entry, dict):
                raise CollaborativeError(f"{folder}: manifest.json lists no {name} file")
            path = folder / str(entry.get("file"))
            if path.parent != folder or not path.is_file():
                raise CollaborativeError(f"{folder}: missing {name} file {entry.get('file')}")
            if _sha256(path) != entry.get("sha256"):
                raise CollaborativeError(f"{path}: checksum differs from manifest.json (damaged or replaced)")
            arrays[name] = np.load(path, allow_pickle=False)
        return cls(
            item_ids=tuple(str(item) for item in manifest.get("item_ids", [])),
            cold_bias=float(manifest.get("cold_bias", 0.0)),
            info=manifest.get("info") or {},
            **arrays,
        )


def has_collaborative(model_dir: Path) -> bool:
    """Whether ``model_dir`` carries collaborative vectors."""
    return (Path(model_dir) / COLLABORATIVE_DIR / "manifest.json").is_file()


def read_serving_settings(model_dir: Path) -> dict[str, Any]:
    """The serving settings a trained model ships with (empty when it has none).

    Raises:
        CollaborativeError: the file exists but is not a JSON object of settings.
    """
    path = Path(model_dir) / SERVING_SETTINGS
    if not path.is_file():
        return {}
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CollaborativeError(f"{path}: unreadable ({exc})") from None
    settings = payload.get("settings") if isinstance(payload, dict) else None
    if not isinstance(settings, dict):
        raise CollaborativeError(f"{path}: expected {{'settings': {{name: value}}, ...}}")
    return settings


def write_serving_settings(model_dir: Path, settings: dict[str, Any], provenance: dict[str, Any]) -> Path:
    """Writes ``aisle-serving.json`` with how the settings were chosen: a temporary file, fsynced and
    renamed into place, so that a service starting meanwhile reads the old file or the new one."""
    path = Path(model_dir) / SERVING_SETTINGS
    payload = {"settings": settings, "chosen": provenance}
    staging = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        _write_fsynced(staging, json.dumps(payload, indent=1, sort_keys=True).encode("utf-8"))
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path


def _write_fsynced(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
