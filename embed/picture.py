"""What Aisle reads from a product picture without a model: its colours and its signatures."""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

from aisle.embed.colours import Thumbnail, dominant_colours
from aisle.embed.phash import PictureHashes, picture_hashes

#: Longest side a photo is reduced to (roughly) before it is analysed.
ANALYSIS_SIZE = 256


@dataclass(frozen=True)
class PictureFeatures:
    """The dominant colour names (primary first) and the near-duplicate signatures."""

    colours: list[str]
    hashes: PictureHashes


def analyse_picture(image: Image.Image) -> PictureFeatures:
    """Colours and signatures of one decoded picture (see ``colours`` and ``phash``).

    Large photos are first reduced (box filter, integer factor) to at most ``ANALYSIS_SIZE`` a
    side: both read 256 px at most, and every later step then costs the same for any photo.
    """
    if max(image.size) > 2 * ANALYSIS_SIZE:
        image = image.convert("RGB").reduce(max(image.size) // ANALYSIS_SIZE)
    thumbnail = Thumbnail.of(image)
    return PictureFeatures(dominant_colours(image, thumbnail=thumbnail), picture_hashes(image, thumbnail))
