"""Builders shared by the service tests: small catalogues, published versions, apps.

The catalogues are written as real JSON Lines files and indexed by ``aisle.index.build.build_version``
exactly as ``aisle build`` does; only the encoder is the fast ``HashingEncoder``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from aisle.embed.base import Encoder
from aisle.index.build import BuildOptions, BuildReport, build_version
from aisle.index.catalog import load_catalog
from aisle.service.app import create_app
from aisle.service.settings import ServiceSettings
from tests.fakes import HashingEncoder

PRODUCTS = [
    ("Chef knife, stainless steel, 8 inch", "Kitchen > Knives", "Victorinox", 49.0),
    ("Paring knife with wooden handle", "Kitchen > Knives", "Opinel", 12.5),
    ("Bread knife, serrated blade", "Kitchen > Knives", "Wusthof", 89.0),
    ("Cast iron skillet 10 inch", "Kitchen > Cookware", "Lodge", 29.9),
    ("Non-stick frying pan 28 cm", "Kitchen > Cookware", "Tefal", 34.0),
    ("Stainless steel saucepan with lid", "Kitchen > Cookware", "WMF", 59.0),
    ("Espresso machine with milk frother", "Kitchen > Coffee", "DeLonghi", 299.0),
    ("Burr coffee grinder", "Kitchen > Coffee", "Baratza", 139.0),
    ("French press coffee maker 1 litre", "Kitchen > Coffee", "Bodum", 25.0),
    ("Running shoes, lightweight mesh", "Sports > Footwear", "Asics", 120.0),
    ("Trail running shoes, waterproof", "Sports > Footwear", "Salomon", 140.0),
    ("Yoga mat, non-slip, 6 mm", "Sports > Fitness", "Manduka", 45.0),
    ("Adjustable dumbbells pair", "Sports > Fitness", "Bowflex", 349.0),
    ("Cordless drill driver 18V", "Tools > Power Tools", "DeWalt", 159.0),
    ("Angle grinder 4-1/2 inch", "Tools > Power Tools", "Makita", 89.0),
    ("Claw hammer, fiberglass handle", "Tools > Hand Tools", "Stanley", 19.0),
    ("Screwdriver set, 12 pieces", "Tools > Hand Tools", "Wera", 39.0),
    ("Noise cancelling headphones", "Electronics > Audio", "Sony", 279.0),
    ("Bluetooth speaker, waterproof", "Electronics > Audio", "JBL", 99.0),
    ("USB-C charger 65W", "Electronics > Accessories", "Anker", 35.0),
    ("Mechanical keyboard, brown switches", "Electronics > Computers", "Keychron", 89.0),
    ("Wireless mouse, ergonomic", "Electronics > Computers", "Logitech", 49.0),
    ("Office chair with lumbar support", "Furniture > Office", "Herman Miller", 899.0),
    ("Standing desk, electric", "Furniture > Office", "Flexispot", 399.0),
    ("Velvet dining chair, set of 2", "Furniture > Dining", "Yaheetech", 159.0),
    ("Oak dining table for six", "Furniture > Dining", "Ikea", 499.0),
    ("Cotton bath towel set", "Home > Bath", "Brooklinen", 59.0),
    ("Memory foam pillow", "Home > Bedroom", "Tempur", 89.0),
    ("Linen duvet cover, queen", "Home > Bedroom", "Parachute", 229.0),
    ("LED desk lamp, dimmable", "Home > Lighting", "BenQ", 149.0),
]


def write_catalog(path: Path, marker: str = "a", count: int = len(PRODUCTS)) -> Path:
    """A JSON Lines catalogue whose ids and titles all carry ``marker`` (which version answered)."""
    with path.open("w", encoding="utf-8") as handle:
        for number in range(count):
            title, category, brand, price = PRODUCTS[number % len(PRODUCTS)]
            handle.write(
                json.dumps(
                    {
                        "id": f"{marker}-{number}",
                        "title": f"{title} [{marker}]",
                        "category": category,
                        "brand": brand,
                        "price": price,
                        "in_stock": number % 7 != 3,
                        "color": "black",
                    }
                )
                + "\n"
            )
    return path


def publish(index_root: Path, encoder: Encoder, marker: str = "a", count: int = len(PRODUCTS)) -> BuildReport:
    """Builds and publishes a version of the ``marker`` catalogue under ``index_root``."""
    index_root.mkdir(parents=True, exist_ok=True)
    catalog = load_catalog(write_catalog(index_root.parent / f"catalog-{marker}.jsonl", marker, count))
    return build_version(catalog, index_root, encoder, BuildOptions(show_progress=False, keep_versions=50))


def settings_for(tmp_path: Path, **overrides: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "index_dir": tmp_path / "index",
        "data_dir": tmp_path / "data",
        "watch_interval_s": 0,
    }
    values.update(overrides)
    return ServiceSettings(**values)


def make_app(tmp_path: Path, encoder: Encoder | None = None, publish_first: bool = True, **overrides: Any) -> FastAPI:
    """An app over a freshly published version of catalogue ``a`` (HashingEncoder by default)."""
    encoder = encoder or HashingEncoder()
    settings = settings_for(tmp_path, **overrides)
    if publish_first:
        publish(settings.index_dir, encoder, "a")
    return create_app(settings, encoder_factory=lambda _settings: encoder)
