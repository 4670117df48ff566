"""Synthetic product photos for the picture tests: a shape in one colour on a studio background."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

WHITE = (255, 255, 255)
STUDIO_GREY = (226, 224, 220)


def product_photo(
    colour: tuple[int, int, int],
    *,
    shape: str = "shirt",
    background: tuple[int, int, int] = WHITE,
    size: tuple[int, int] = (192, 256),
    seed: int = 0,
) -> Image.Image:
    """A product-like picture: a filled shape with shading and a random print, on ``background``."""
    rng = np.random.default_rng(seed)
    width, height = size
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = width * 0.15, height * 0.12, width * 0.85, height * 0.9
    if shape == "shirt":
        draw.polygon(
            [(left, top + 30), (width / 2 - 20, top), (width / 2 + 20, top), (right, top + 30), (right - 20, top + 70),
             (right - 30, top + 60), (right - 30, bottom), (left + 30, bottom), (left + 30, top + 60), (left + 20, top + 70)],
            fill=colour,
        )  # fmt: skip
    elif shape == "shoe":
        draw.ellipse((left, height * 0.45, right, height * 0.75), fill=colour)
        draw.rectangle((left + 10, height * 0.35, width * 0.5, height * 0.6), fill=colour)
    else:
        draw.ellipse((left, top, right, bottom), fill=colour)
    pixels = np.asarray(image).astype(np.int16)
    shade = np.linspace(-18, 12, height)[:, None, None]  # studio light from above
    inside = np.any(np.asarray(image) != np.array(background, dtype=np.uint8), axis=2, keepdims=True)
    pixels = np.where(inside, pixels + shade.astype(np.int16), pixels)
    # A small print in the middle: its position and pattern differ per seed.
    px, py = int(width * 0.4 + rng.integers(-10, 10)), int(height * 0.45 + rng.integers(-10, 10))
    pixels[py : py + 24, px : px + 36] = rng.integers(0, 255, (24, 36, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def jpeg_copy(image: Image.Image, quality: int = 35) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def crop_copy(image: Image.Image, share: float = 0.07) -> Image.Image:
    width, height = image.size
    dx, dy = int(width * share), int(height * share)
    return image.crop((dx, dy // 2, width, height - dy // 2))


def write_picture_catalogue(directory: Path) -> Path:
    """A JSON Lines catalogue with relative image paths, a duplicate picture, a missing file,
    an unreadable file, a URL and a product without an image."""
    pictures = directory / "img"
    pictures.mkdir(parents=True, exist_ok=True)
    product_photo((200, 30, 30), seed=1).save(pictures / "red-shirt.jpg", quality=92)
    product_photo((20, 30, 90), seed=2, background=STUDIO_GREY).save(pictures / "navy-shirt.jpg", quality=92)
    product_photo((30, 140, 60), shape="shoe", seed=3).save(pictures / "green-shoe.png")
    product_photo((200, 30, 30), seed=1).resize((120, 160)).save(pictures / "red-shirt-small.jpg", quality=60)
    product_photo((240, 200, 40), shape="bag", seed=4).save(pictures / "yellow-bag.jpg")
    (pictures / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    rows = [
        ("red-1", "red cotton shirt for men", "img/red-shirt.jpg"),
        ("navy-1", "navy shirt for women", "img/navy-shirt.jpg"),
        ("shoe-1", "green sports shoes", "img/green-shoe.png"),
        ("red-2", "red shirt casual, relisted", "img/red-shirt-small.jpg"),
        ("bag-1", "yellow leather bag", "img/yellow-bag.jpg"),
        ("gone-1", "blue jeans", "img/missing.jpg"),
        ("bad-1", "black watch", "img/broken.jpg"),
        ("url-1", "white sandals", "https://cdn.example.com/sandals.jpg"),
        ("none-1", "usb cable", ""),
    ]
    path = directory / "catalogue.jsonl"
    with path.open("w", encoding="utf-8") as handle:
        for product_id, title, image in rows:
            handle.write(json.dumps({"id": product_id, "title": title, "image": image}) + "\n")
    return path
