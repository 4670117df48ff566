"""CLIP-style image encoder on onnxruntime: product pictures and text queries in one space."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from aisle.embed.artifacts import TOKENIZER_FILE, ExportManifest, ManifestIdentity
from aisle.embed.base import ImageEncoder, l2_normalize
from aisle.embed.clip import TEXT_FILE, VISION_FILE, prepare_clip_model, token_arrays
from aisle.embed.config import ImageEncoderConfig
from aisle.embed.images import ImagePreprocessor
from aisle.embed.runtime import load_tokenizer, make_session

logger = logging.getLogger(__name__)


class OnnxClipEncoder(ManifestIdentity, ImageEncoder):
    """Encodes product images (vision tower) and queries (text tower) into CLIP's joint space.

    Documents of this encoder are images: :meth:`encode_images` is the catalogue side and
    :meth:`encode_queries` the query side. :meth:`encode_documents` deliberately raises, so that
    code written for text encoders cannot silently put product *titles* into the image index
    (titles belong to the text encoder's index).

    Args:
        model_dir: a CLIP export directory written by :func:`embed.prepare_image_model`.
        threads: onnxruntime intra-op threads per tower.
    """

    modality = "image"

    def __init__(self, model_dir: Path, *, threads: int = 1) -> None:
        self.model_dir = Path(model_dir)
        self.manifest = ExportManifest.read(self.model_dir)
        if self.manifest.kind != "clip":
            raise ValueError(f"{self.model_dir} holds a {self.manifest.kind!r} export, not a CLIP model")
        self.preprocessor = ImagePreprocessor.from_dir(self.model_dir)
        self._vision = make_session(self.model_dir / VISION_FILE, threads)
        self._text = make_session(self.model_dir / TEXT_FILE, threads)
        self._tokenizer = load_tokenizer(self.model_dir / TOKENIZER_FILE, max_length=self.manifest.max_length)

    def encode_images(
        self, paths: Sequence[str | Path], *, batch_size: int = 32, show_progress: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Encodes image files; unreadable ones give a zero row and ``ok_mask`` ``False``.

        Args:
            paths: image files (any format Pillow reads).
            batch_size: images per onnxruntime call.
            show_progress: show a tqdm progress bar.

        Returns:
            ``(vectors, ok_mask)``: unit rows for decoded images, zero rows for the others.
        """
        if isinstance(paths, (str, Path)):
            raise TypeError("encode_images expects a sequence of paths, not a single path")
        vectors = np.zeros((len(paths), self.dim), dtype=np.float32)
        ok_mask = np.zeros(len(paths), dtype=bool)
        progress = None
        if show_progress:
            from tqdm.auto import tqdm

            progress = tqdm(total=len(paths), desc=f"encoding images ({self.name})", unit="img")
        try:
            for start in range(0, len(paths), batch_size):
                rows, pixels = [], []
                for offset, path in enumerate(paths[start : start + batch_size]):
                    array = self.preprocessor.load(path)
                    if array is not None:
                        rows.append(start + offset)
                        pixels.append(array)
                if pixels:
                    embeds = self._vision.run(None, {"pixel_values": np.stack(pixels)})[0]
                    vectors[rows] = l2_normalize(embeds)
                    ok_mask[rows] = True
                if progress is not None:
                    progress.update(min(batch_size, len(paths) - start))
        finally:
            if progress is not None:
                progress.close()
        return vectors, ok_mask

    def encode_pictures(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Encodes decoded pictures in one onnxruntime call (the caller batches); unit rows."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        pixels = np.stack([self.preprocessor(image) for image in images])
        return l2_normalize(self._vision.run(None, {"pixel_values": pixels})[0])

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Encodes search text into the image space (CLIP text tower), unit rows."""
        if isinstance(texts, str):
            raise TypeError("encode_queries expects a sequence of strings, not a single string")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        ids, mask = token_arrays(self._tokenizer.encode_batch(list(texts)), self.manifest)
        feeds = {"input_ids": ids, "attention_mask": mask}
        embeds = self._text.run(None, {name: feeds[name] for name in self.manifest.input_names})[0]
        return l2_normalize(embeds)

    def encode_documents(
        self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        """Not supported: the documents of an image encoder are images."""
        raise NotImplementedError(
            "OnnxClipEncoder encodes catalogue images with encode_images(paths); product texts "
            "belong to the text encoder (embed.create_encoder)"
        )


def create_image_encoder(config: ImageEncoderConfig) -> ImageEncoder | None:
    """Builds the image encoder, or returns ``None`` (logging one info line) if none is configured.

    Args:
        config: the image model settings.

    Returns:
        An :class:`OnnxClipEncoder`, or ``None`` when ``config.model`` is ``None``.
    """
    if config.model is None:
        logger.info("no image model configured: product images are ignored")
        return None
    return OnnxClipEncoder(prepare_clip_model(config), threads=config.threads)


def cached_image_encoder(fingerprint: str, cache_dir: Path, *, threads: int = 1) -> OnnxClipEncoder | None:
    """The image encoder whose export in ``cache_dir`` has ``fingerprint``, or None.

    A version records the fingerprint of the image model that built it
    (``clip-<backend>:<content hash>``), and exports are cached by content hash, so a service
    on the machine (or cache) of the build finds the model without being told where it is.
    """
    backend, _, model_hash = fingerprint.partition(":")
    if not backend.startswith("clip-") or len(model_hash) != 64 or not all(c in "0123456789abcdef" for c in model_hash):
        return None
    from aisle.embed.artifacts import read_manifest_if_current
    from aisle.embed.cache import export_dir

    directory = export_dir(Path(cache_dir), model_hash, backend)
    if read_manifest_if_current(directory) is None:
        return None
    return OnnxClipEncoder(directory, threads=threads)
