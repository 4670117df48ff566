"""CLIP image preprocessing with Pillow and NumPy only (no torch, no torchvision).

Reproduces ``CLIPImageProcessor`` with its PIL backend, driven by the model's
``preprocessor_config.json``: convert to RGB (transparency composited onto white), resize the
shortest side with the configured resampling filter (bicubic for CLIP), centre-crop, rescale by
1/255, normalise with ``image_mean``/``image_std`` and lay out channels first.

The resize runs on the same ``uint8`` PIL image with the same filter as transformers' PIL backend,
so outputs agree to float rounding (~1e-6). transformers' torchvision backend resizes tensors
with its own antialiasing and differs from both by up to a few 1/255 steps; the model does not
care, but exact parity is only claimed against the PIL implementation.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

logger = logging.getLogger(__name__)

PREPROCESSOR_FILE = "preprocessor_config.json"

# transformers' defaults for CLIP (OPENAI_CLIP_MEAN / OPENAI_CLIP_STD).
_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: Decoding errors that mean "skip this picture", not "abort the catalogue build".
IMAGE_ERRORS = (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError, SyntaxError)


@dataclass(frozen=True)
class ImagePreprocessor:
    """Turns image files into the ``pixel_values`` a CLIP vision tower expects.

    Attributes:
        shortest_edge: resize so that the shorter side has this length (``None``: resize to
            ``resize_to`` exactly, or not at all).
        resize_to: ``(height, width)`` for a plain resize when there is no shortest edge.
        crop: ``(height, width)`` of the centre crop (``None``: no crop).
        resample: Pillow resampling filter id (3 = bicubic).
        rescale_factor: multiplier applied to the ``uint8`` pixels (``None``: keep 0-255).
        mean: per-channel mean, or ``None`` to skip normalisation.
        std: per-channel standard deviation.
    """

    shortest_edge: int | None = 224
    resize_to: tuple[int, int] | None = None
    crop: tuple[int, int] | None = (224, 224)
    resample: int = Image.Resampling.BICUBIC
    rescale_factor: float | None = 1 / 255
    mean: tuple[float, float, float] | None = _CLIP_MEAN
    std: tuple[float, float, float] = _CLIP_STD

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ImagePreprocessor:
        """Reads a Hugging Face ``preprocessor_config.json`` dictionary."""
        size = config.get("size", {"shortest_edge": 224}) if config.get("do_resize", True) else None
        shortest_edge, resize_to = None, None
        if isinstance(size, int):  # very old configs store a bare shortest edge
            shortest_edge = size
        elif isinstance(size, dict) and "shortest_edge" in size:
            shortest_edge = int(size["shortest_edge"])
        elif isinstance(size, dict) and {"height", "width"} <= size.keys():
            resize_to = (int(size["height"]), int(size["width"]))
        elif size is not None:
            raise ValueError(f"unsupported image size setting {size!r}")
        crop = None
        # SigLIP's processor has no crop at all (and no crop_size): resize to the square only.
        if config.get("do_center_crop", "crop_size" in config):
            crop_size = config.get("crop_size", 224)
            if isinstance(crop_size, int):
                crop = (crop_size, crop_size)
            else:
                crop = (int(crop_size["height"]), int(crop_size["width"]))
        rescale = float(config.get("rescale_factor", 1 / 255)) if config.get("do_rescale", True) else None
        normalize = config.get("do_normalize", True)
        return cls(
            shortest_edge=shortest_edge,
            resize_to=resize_to,
            crop=crop,
            resample=int(config.get("resample", Image.Resampling.BICUBIC)),
            rescale_factor=rescale,
            mean=tuple(config.get("image_mean", _CLIP_MEAN)) if normalize else None,
            std=tuple(config.get("image_std", _CLIP_STD)),
        )

    @classmethod
    def from_dir(cls, directory: Path) -> ImagePreprocessor:
        """Reads ``preprocessor_config.json`` from a model or export directory."""
        path = Path(directory) / PREPROCESSOR_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: an image model needs its preprocessor_config.json")
        return cls.from_config(json.loads(path.read_text(encoding="utf-8")))

    def load(self, path: str | Path) -> np.ndarray | None:
        """Decodes and preprocesses one image file; ``None`` (with a warning) if unusable."""
        try:
            with Image.open(path) as image:
                image.load()
                return self(image)
        except IMAGE_ERRORS as error:
            logger.warning("skipping image %s: %s: %s", path, type(error).__name__, error)
            return None

    def __call__(self, image: Image.Image) -> np.ndarray:
        """Preprocesses a decoded image into a ``float32`` ``(3, height, width)`` array."""
        image = _to_rgb(image)
        if self.shortest_edge is not None:
            image = image.resize(_shortest_edge_size(image.size, self.shortest_edge), resample=self.resample)
        elif self.resize_to is not None:
            height, width = self.resize_to
            image = image.resize((width, height), resample=self.resample)
        pixels = np.asarray(image)  # (height, width, 3) uint8
        if self.crop is not None:
            pixels = _center_crop(pixels, self.crop)
        values = pixels.astype(np.float64)
        if self.rescale_factor is not None:
            values = values * self.rescale_factor
        values = values.astype(np.float32)
        if self.mean is not None:
            mean = np.asarray(self.mean, dtype=np.float32)
            std = np.asarray(self.std, dtype=np.float32)
            values = (values - mean) / std
        return np.ascontiguousarray(values.transpose(2, 0, 1), dtype=np.float32)


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB conversion; transparent pixels become white, as in transformers' ``convert_to_rgb``."""
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _shortest_edge_size(size: tuple[int, int], shortest_edge: int) -> tuple[int, int]:
    """(width, height) with the short side at ``shortest_edge``; the long side truncates."""
    width, height = size
    if width <= height:
        return shortest_edge, int(shortest_edge * height / width)
    return int(shortest_edge * width / height), shortest_edge


def _center_crop(pixels: np.ndarray, crop: tuple[int, int]) -> np.ndarray:
    """Centre crop of an ``(H, W, C)`` array, zero-padding images smaller than the crop."""
    crop_height, crop_width = crop
    height, width = pixels.shape[:2]
    if height < crop_height or width < crop_width:
        padded_height, padded_width = max(height, crop_height), max(width, crop_width)
        padded = np.zeros((padded_height, padded_width, pixels.shape[2]), dtype=pixels.dtype)
        top_pad = math.ceil((padded_height - height) / 2)
        left_pad = math.ceil((padded_width - width) / 2)
        padded[top_pad : top_pad + height, left_pad : left_pad + width] = pixels
        pixels, height, width = padded, padded_height, padded_width
    top = (height - crop_height) // 2
    left = (width - crop_width) // 2
    return pixels[top : top + crop_height, left : left + crop_width]
