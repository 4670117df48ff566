"""Colours and near-duplicate signatures of product pictures, without any model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aisle.embed.colours import COLOUR_NAMES, colour_shares, dominant_colours, srgb_to_lab
from aisle.embed.phash import HashTable, hamming, near_duplicate_groups, picture_hashes
from tests.pictures import STUDIO_GREY, crop_copy, jpeg_copy, product_photo


def test_lab_conversion_matches_reference_values() -> None:
    lab = srgb_to_lab(np.array([[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 0, 255]], dtype=np.uint8))
    expected = [[100, 0, 0], [0, 0, 0], [53.24, 80.09, 67.20], [32.30, 79.19, -107.86]]
    np.testing.assert_allclose(lab, expected, atol=0.05)


@pytest.mark.parametrize(
    ("colour", "background", "shape", "name"),
    [
        ((200, 30, 30), (255, 255, 255), "shirt", "red"),
        ((20, 30, 90), STUDIO_GREY, "shirt", "navy"),
        ((25, 25, 28), (255, 255, 255), "shoe", "black"),
        ((30, 140, 60), STUDIO_GREY, "shoe", "green"),
        ((240, 200, 40), (255, 255, 255), "bag", "yellow"),
        ((110, 70, 40), (255, 255, 255), "bag", "brown"),
        ((60, 110, 200), (255, 255, 255), "shirt", "blue"),
        ((236, 236, 234), STUDIO_GREY, "shirt", "white"),
    ],
)
def test_primary_colour_ignores_the_studio_background(
    colour: tuple[int, int, int], background: tuple[int, int, int], shape: str, name: str
) -> None:
    image = product_photo(colour, background=background, shape=shape)
    assert dominant_colours(image)[0] == name
    assert all(share.name in COLOUR_NAMES for share in colour_shares(image))


def test_a_photo_without_studio_background_is_read_whole() -> None:
    rng = np.random.default_rng(0)
    fabric = np.clip(rng.normal((40, 150, 70), 12, (80, 80, 3)), 0, 255).astype(np.uint8)
    assert dominant_colours(Image.fromarray(fabric)) == ["green"]


def test_secondary_colours_need_a_real_share() -> None:
    image = product_photo((200, 30, 30), shape="bag")
    pixels = np.asarray(image).copy()
    pixels[100:200, 40:150] = (20, 30, 90)  # a large navy panel
    colours = dominant_colours(Image.fromarray(pixels))
    assert set(colours[:2]) == {"red", "navy"}


def test_hamming_counts_differing_bits() -> None:
    values = np.array([0, 1, -1, 0x0F0F, np.iinfo(np.int64).min], dtype=np.int64)
    expected = [[bin((int(a) ^ int(b)) & (2**64 - 1)).count("1") for b in values] for a in values]
    assert hamming(values[:, None], values[None, :]).tolist() == expected


def _groups(images: list[Image.Image]) -> list[int]:
    return near_duplicate_groups(HashTable.of([picture_hashes(image) for image in images])).tolist()


def test_resized_recompressed_and_cropped_copies_are_grouped_and_other_products_are_not() -> None:
    original = product_photo((200, 30, 30), seed=1)
    copies = [original.resize((120, 160)), jpeg_copy(original), crop_copy(original, 0.07), crop_copy(original, 0.1)]
    others = [
        product_photo((20, 30, 90), seed=1),  # same photo set-up, other colour: a colour variant
        product_photo((200, 30, 30), seed=5),  # same colour and shape, another print
        product_photo((200, 30, 30), shape="shoe", seed=1),
    ]
    groups = _groups([original, *copies, *others])
    assert groups[:5] == [0] * 5
    assert groups[5:] == [5, 6, 7]


def test_a_row_without_a_picture_never_joins_a_group() -> None:
    image = product_photo((30, 140, 60), shape="shoe")
    table = HashTable.of([picture_hashes(image), picture_hashes(image), picture_hashes(image)])
    assert near_duplicate_groups(table, np.array([True, False, True])).tolist() == [0, 1, 0]


def test_real_photos_copies_group_with_their_original(shared_data: Path) -> None:
    paths = sorted((shared_data / "dev/images/fashion/images").glob("*.jpg"))[:8]
    if not paths:
        pytest.skip("no fashion dev images in the shared data")
    originals = [Image.open(path).convert("RGB") for path in paths]
    resized = [image.resize((image.width * 3 // 5, image.height * 3 // 5)) for image in originals]
    recompressed = [jpeg_copy(image, quality=60) for image in originals]
    groups = _groups(originals + resized + recompressed)
    count = len(originals)
    assert groups[count : 2 * count] == groups[:count] == groups[2 * count :]
