"""Dominant colours of a product photo, named, without any model (NumPy and Pillow only).

Steps, on a thumbnail of at most ``THUMBNAIL`` pixels a side:

1. sRGB → CIELAB (D65), where Euclidean distance roughly follows perceived difference.
2. The studio background is what touches the border: the border ring's median colour, when the
   ring is nearly uniform and light or low-chroma (white or a grey sweep), is flood-filled
   inwards through pixels within ``BACKGROUND_DELTA_E`` of it. Only pixels connected to the
   border go, so a white shirt on a white background keeps its inside (seams and shading cut it
   off from the border), and a photo without a studio background keeps every pixel.
3. Each remaining pixel is named by a rule on lightness, chroma and hue (LCh) rather than by the
   nearest of a few reference colours: the names shops use are regions of LCh (navy is a dark
   blue, maroon a dark red, beige a light low-chroma yellow-orange), and the rules say so.
4. Shares of the names over the foreground; the dominant colours are those with at least
   ``MIN_SHARE`` of it, largest first. Highlights and deep shadows on a coloured product are
   named white/black by step 3, so black and white need a larger share to beat a chromatic
   colour (``ACHROMATIC_HANDICAP``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

#: Longest side of the thumbnail the colours are read from: colours need no detail.
THUMBNAIL = 64
#: Border pixels within this CIELAB distance of the background colour count as background.
BACKGROUND_DELTA_E = 7.0
#: Smallest share of the foreground for a colour to be named dominant.
MIN_SHARE = 0.12
#: Black and white count this much less when choosing the primary colour (shadows, highlights).
ACHROMATIC_HANDICAP = 0.8

#: Every name ``dominant_colours`` can return, in a stable order.
COLOUR_NAMES: tuple[str, ...] = (
    "black",
    "grey",
    "white",
    "beige",
    "brown",
    "red",
    "maroon",
    "pink",
    "orange",
    "yellow",
    "olive",
    "green",
    "teal",
    "blue",
    "navy",
    "purple",
)


@dataclass(frozen=True)
class ColourShare:
    """A named colour and its share of the product's pixels (0-1)."""

    name: str
    share: float


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` uint8 sRGB → ``(..., 3)`` float32 CIELAB (D65 white)."""
    values = np.asarray(rgb, dtype=np.float32) / 255.0
    linear = np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)
    matrix = np.array(
        [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]],
        dtype=np.float32,
    )
    xyz = linear @ matrix.T / np.array([0.95047, 1.0, 1.08883], dtype=np.float32)
    epsilon, kappa = 216 / 24389, 24389 / 27
    f = np.where(xyz > epsilon, np.cbrt(xyz), (kappa * xyz + 16) / 116)
    lightness = 116 * f[..., 1] - 16
    a = 500 * (f[..., 0] - f[..., 1])
    b = 200 * (f[..., 1] - f[..., 2])
    return np.stack([lightness, a, b], axis=-1).astype(np.float32)


def thumbnail_rgb(image: Image.Image, size: int = THUMBNAIL) -> np.ndarray:
    """The image as an ``(h, w, 3)`` uint8 array no larger than ``size``, transparency on white."""
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    image = image.convert("RGB")
    image.thumbnail((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image)


def background_mask(lab: np.ndarray) -> np.ndarray:
    """True where a pixel belongs to a uniform studio background connected to the border."""
    height, width = lab.shape[:2]
    border = np.concatenate([lab[0], lab[-1], lab[1:-1, 0], lab[1:-1, -1]])
    colour = np.median(border, axis=0)
    chroma = float(np.hypot(colour[1], colour[2]))
    close = np.linalg.norm(lab - colour, axis=-1) < BACKGROUND_DELTA_E
    ring = np.zeros((height, width), dtype=bool)
    ring[0], ring[-1], ring[:, 0], ring[:, -1] = True, True, True, True
    # A studio background: light or grey, and most of the border is that colour.
    if not (colour[0] > 55 and chroma < 12) or close[ring].mean() < 0.6:
        return np.zeros((height, width), dtype=bool)
    filled = close & ring
    while True:  # flood fill by 4-neighbour dilation, limited to pixels close to the background
        grown = filled.copy()
        grown[1:] |= filled[:-1]
        grown[:-1] |= filled[1:]
        grown[:, 1:] |= filled[:, :-1]
        grown[:, :-1] |= filled[:, 1:]
        grown &= close
        if np.array_equal(grown, filled):
            return filled
        filled = grown


def name_pixels(lab: np.ndarray) -> np.ndarray:
    """Index into ``COLOUR_NAMES`` of every ``(n, 3)`` CIELAB pixel (see the module docstring)."""
    lightness, a, b = lab[:, 0], lab[:, 1], lab[:, 2]
    chroma = np.hypot(a, b)
    hue = np.degrees(np.arctan2(b, a)) % 360
    code_of = {name: code for code, name in enumerate(COLOUR_NAMES)}
    names = np.full(len(lab), code_of["grey"], dtype=np.int64)
    # Achromatic first: low chroma, named by lightness alone.
    warm = (hue >= 20) & (hue < 100)
    achromatic = (chroma < 9) & ~(warm & (chroma >= 6) & (lightness < 60) & (lightness >= 22))
    names[achromatic & (lightness < 38)] = code_of["black"]
    names[achromatic & (lightness >= 78)] = code_of["white"]
    chromatic = ~achromatic
    # Very dark colours read as black whatever their hue, unless clearly saturated.
    very_dark = (lightness < 22) & (chroma < 20)
    names[chromatic & very_dark] = code_of["black"]
    coloured = chromatic & ~very_dark
    muted = chroma < 28
    red = (hue >= 350) | (hue < 40)
    orange = (hue >= 40) & (hue < 70)
    yellow = (hue >= 70) & (hue < 105)
    green = (hue >= 105) & (hue < 190)
    teal = (hue >= 190) & (hue < 205)
    blue = (hue >= 205) & (hue < 300)
    purple = (hue >= 300) & (hue < 350)
    rules = [
        (red & (lightness < 38), "maroon"),
        (red & (lightness >= 38) & ((lightness > 62) | ((hue >= 350) & (lightness > 55))), "pink"),
        (red & (lightness >= 38), "red"),
        (orange & muted & (lightness >= 65), "beige"),
        (orange & (lightness < 55), "brown"),
        (orange & muted, "brown"),
        (orange, "orange"),
        (yellow & muted & (lightness >= 65), "beige"),
        (yellow & (lightness < 50), "olive"),
        (yellow & muted, "brown"),
        (yellow, "yellow"),
        (green, "green"),
        (teal, "teal"),
        (blue & (lightness < 40), "navy"),
        (blue, "blue"),
        (purple & (lightness > 60), "pink"),
        (purple, "purple"),
    ]
    assigned = np.zeros(len(lab), dtype=bool)
    for condition, name in rules:
        pick = coloured & condition & ~assigned
        names[pick] = code_of[name]
        assigned |= pick
    return names


@dataclass(frozen=True)
class Thumbnail:
    """A picture's thumbnail in CIELAB and its studio-background mask, computed once and
    shared by the colours and the near-duplicate signatures."""

    lab: np.ndarray
    background: np.ndarray

    @classmethod
    def of(cls, image: Image.Image) -> Thumbnail:
        lab = srgb_to_lab(thumbnail_rgb(image))
        return cls(lab, background_mask(lab))


def colour_shares(image: Image.Image, thumbnail: Thumbnail | None = None) -> list[ColourShare]:
    """Every named colour of the product's pixels with its share, largest first.

    The background is left out (see :func:`background_mask`); an image that is all background
    (a white product photographed on white) is read whole.
    """
    thumbnail = thumbnail or Thumbnail.of(image)
    lab = thumbnail.lab
    mask = ~thumbnail.background
    if mask.mean() < 0.02:
        mask[:] = True
    codes = name_pixels(lab[mask])
    counts = np.bincount(codes, minlength=len(COLOUR_NAMES)).astype(np.float64)
    shares = counts / counts.sum()
    order = np.argsort(-shares, kind="stable")
    return [ColourShare(COLOUR_NAMES[code], float(shares[code])) for code in order if shares[code] > 0]


def dominant_colours(image: Image.Image, *, limit: int = 3, thumbnail: Thumbnail | None = None) -> list[str]:
    """The product's dominant colour names, primary first (at most ``limit``, at least one).

    The primary colour is the largest share after black and white are discounted by
    ``ACHROMATIC_HANDICAP`` (they are also the shadows and highlights of coloured products);
    the others follow by share when they reach ``MIN_SHARE``.
    """
    shares = colour_shares(image, thumbnail)
    weighted = sorted(
        shares,
        key=lambda c: -(c.share * (ACHROMATIC_HANDICAP if c.name in ("black", "white") else 1.0)),
    )
    primary = weighted[0]
    rest = [c.name for c in shares if c.name != primary.name and c.share >= MIN_SHARE]
    return [primary.name, *rest][:limit]
