"""What Aisle reads from a product picture without a model: its colours and its signatures."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from aisle.embed.colours import Thumbnail, dominant_colours
from aisle.embed.phash import PictureHashes, picture_hashes


@dataclass(frozen=True)
class PictureFeatures:
    """The dominant colour names (primary first) and the near-duplicate signatures."""

    colours: list[str]
    hashes: PictureHashes


def analyse_picture(image: Image.Image) -> PictureFeatures:
    """Colours and signatures of one decoded picture (see ``colours`` and ``phash``)."""
    thumbnail = Thumbnail.of(image)
    return PictureFeatures(dominant_colours(image, thumbnail=thumbnail), picture_hashes(image, thumbnail))
