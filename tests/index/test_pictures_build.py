"""Pictures through ``aisle build``: statuses, the colour attribute, duplicate groups, the image space."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from aisle.cli import main
from aisle.embed import ImageEncoderConfig, create_image_encoder
from aisle.index.build import BuildOptions, build_version
from aisle.index.catalog import load_catalog
from aisle.index.loaded import LoadedIndex
from aisle.index.pictures import PictureOptions, open_picture
from tests.fakes import HashingEncoder
from tests.pictures import write_picture_catalogue

OPTIONS = BuildOptions(show_progress=False)


@pytest.fixture(scope="module")
def tiny_clip_encoder(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from tests.embed.conftest import require_export_stack

    require_export_stack()
    from tests.embed.tiny_models import build_tiny_clip

    model = build_tiny_clip(tmp_path_factory.mktemp("tiny-clip") / "tiny-clip")
    config = ImageEncoderConfig(model=str(model), backend="onnx-fp32", cache_dir=tmp_path_factory.mktemp("cache"))
    return create_image_encoder(config)


def test_pictures_without_a_model_give_statuses_colours_and_groups(tmp_path: Path) -> None:
    catalog = load_catalog(write_picture_catalogue(tmp_path))
    report = build_version(catalog, tmp_path / "index", HashingEncoder(), OPTIONS)
    assert report.pictures == {
        "ok": 5,
        "none": 1,
        "missing": 1,
        "unreadable": 1,
        "url_not_fetched": 1,
        "fetch_failed": 0,
    }
    assert report.pictures_summary == "5 of 8 pictures read (1 missing, 1 unreadable, 1 url not fetched)"
    index = LoadedIndex.load(report.path, expected_fingerprint=HashingEncoder().fingerprint)
    assert index.image is None  # no model, no image space
    colour = {item_id: index.items.to_result(row).get("image_colour") for row, item_id in enumerate(index.items.ids)}
    assert colour == {
        "red-1": "red",
        "navy-1": "navy",
        "shoe-1": "green",
        "red-2": "red",
        "bag-1": "yellow",
        "gone-1": None,
        "bad-1": None,
        "url-1": None,
        "none-1": None,
    }
    groups = index.items.picture_groups
    assert groups is not None
    row = index.items.row_of
    assert groups[row["red-1"]] == groups[row["red-2"]]  # the relisted, resized picture
    assert len({groups[row[item]] for item in ("red-1", "navy-1", "shoe-1", "bag-1", "gone-1", "bad-1")}) == 6
    table = pq.read_table(report.path / "pictures.parquet").to_pydict()
    assert table["status"][row["gone-1"]] == "missing" and table["colours"][row["red-1"]].startswith("red")
    manifest = json.loads((report.path / "manifest.json").read_text())
    assert manifest["pictures"]["counts"]["ok"] == 5 and manifest["pictures"]["groups"] == 4


def test_a_catalogue_colour_column_is_never_overwritten(tmp_path: Path) -> None:
    path = write_picture_catalogue(tmp_path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[0]["image_colour"] = "crimson"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    report = build_version(load_catalog(path), tmp_path / "index", HashingEncoder(), OPTIONS)
    index = LoadedIndex.load(report.path)
    assert index.items.to_result(index.items.row_of["red-1"])["image_colour"] == "crimson"


def test_urls_are_fetched_only_when_allowed() -> None:
    assert open_picture("https://cdn.example.com/a.jpg", PictureOptions()) == (None, "url_not_fetched")
    # Allowed, but nothing answers on this port: a failed fetch, counted, never an abort.
    allowed = PictureOptions(fetch_urls=True, fetch_timeout_s=2)
    assert open_picture("http://127.0.0.1:9/a.jpg", allowed) == (None, "fetch_failed")
    assert open_picture("ftp://example.com/a.jpg", allowed) == (None, "fetch_failed")


def test_an_image_model_adds_an_image_space(tmp_path: Path, tiny_clip_encoder) -> None:  # type: ignore[no-untyped-def]
    catalog = load_catalog(write_picture_catalogue(tmp_path))
    report = build_version(catalog, tmp_path / "index", HashingEncoder(), OPTIONS, tiny_clip_encoder)
    index = LoadedIndex.load(report.path)
    space = index.image
    assert space is not None and space.fingerprint == tiny_clip_encoder.fingerprint
    assert space.vectors.shape == (9, tiny_clip_encoder.dim)
    ok = [index.items.row_of[item] for item in ("red-1", "navy-1", "shoe-1", "red-2", "bag-1")]
    assert space.present is not None and sorted(np.flatnonzero(space.present).tolist()) == sorted(ok)
    np.testing.assert_allclose(np.linalg.norm(space.vectors[ok], axis=1), 1.0, atol=1e-5)
    expected, _ = tiny_clip_encoder.encode_images([tmp_path / "img" / "red-shirt.jpg"])
    np.testing.assert_allclose(space.vectors[index.items.row_of["red-1"]], expected[0], atol=1e-5)
    assert len(space.ann) == 9


def test_an_image_model_without_a_readable_picture_is_an_error(tmp_path: Path, tiny_clip_encoder) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "no-pictures.jsonl"
    path.write_text(json.dumps({"id": "1", "title": "usb cable", "image": "missing.jpg"}) + "\n")
    with pytest.raises(ValueError, match="no picture could be read: 0 of 1 pictures read \\(1 missing\\)"):
        build_version(load_catalog(path), tmp_path / "index", HashingEncoder(), OPTIONS, tiny_clip_encoder)
    path.write_text(json.dumps({"id": "1", "title": "usb cable"}) + "\n")
    with pytest.raises(ValueError, match="no product has an image"):
        build_version(load_catalog(path), tmp_path / "index", HashingEncoder(), OPTIONS, tiny_clip_encoder)


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_missing_image_model_is_a_one_line_error(
    tmp_path: Path, how: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    catalogue = write_picture_catalogue(tmp_path)
    args = ["build", "--catalog", str(catalogue), "--out", str(tmp_path / "index"), "--no-progress"]
    if how == "flag":
        args += ["--image-model", "/nonexistent/clip"]
    else:
        monkeypatch.setenv("AISLE_IMAGE_MODEL", "/nonexistent/clip")
    assert main(args) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert (
        error
        == "aisle build: error: image model directory '/nonexistent/clip' does not exist (models are never downloaded)"
    )
    assert not (tmp_path / "index" / "current").exists()


def test_a_broken_image_model_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("transformers")
    broken = tmp_path / "broken-clip"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    catalogue = write_picture_catalogue(tmp_path)
    args = ["build", "--catalog", str(catalogue), "--out", str(tmp_path / "index"), "--no-progress"]
    assert main([*args, "--image-model", str(broken)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith(f"aisle build: error: cannot load the image model '{broken}': ")
    assert "Traceback" not in "\n".join(lines)
    assert not (tmp_path / "index" / "current").exists()


class CountingClip:
    """The tiny CLIP encoder, counting the pictures it is asked to encode."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.encoded = 0

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)

    def encode_pictures(self, images):  # type: ignore[no-untyped-def]
        self.encoded += len(images)
        return self.inner.encode_pictures(images)


def test_a_rebuild_reads_only_changed_pictures(tmp_path: Path, tiny_clip_encoder) -> None:  # type: ignore[no-untyped-def]
    from tests.pictures import product_photo

    catalog = load_catalog(write_picture_catalogue(tmp_path))
    counting = CountingClip(tiny_clip_encoder)
    first = build_version(catalog, tmp_path / "index", HashingEncoder(), OPTIONS, counting)  # type: ignore[arg-type]
    assert (counting.encoded, first.pictures_reused) == (5, 0)
    counting.encoded = 0
    again = build_version(catalog, tmp_path / "index", HashingEncoder(), OPTIONS, counting)  # type: ignore[arg-type]
    assert (counting.encoded, again.pictures_reused) == (0, 5)
    assert again.pictures == first.pictures and again.pictures_summary.endswith(
        "5 of them re-used from the current version"
    )
    before, after = LoadedIndex.load(first.path), LoadedIndex.load(again.path)
    np.testing.assert_array_equal(before.image.vectors, after.image.vectors)
    np.testing.assert_array_equal(before.items.picture_groups, after.items.picture_groups)
    assert pq.read_table(first.path / "pictures.parquet").equals(pq.read_table(again.path / "pictures.parquet"))
    # A new picture under the same name is read again; the others are not.
    product_photo((30, 140, 60), shape="bag", seed=9).save(tmp_path / "img" / "yellow-bag.jpg")
    changed = build_version(catalog, tmp_path / "index", HashingEncoder(), OPTIONS, counting)  # type: ignore[arg-type]
    assert (counting.encoded, changed.pictures_reused) == (1, 4)
    index = LoadedIndex.load(changed.path)
    assert index.items.to_result(index.items.row_of["bag-1"])["image_colour"] == "green"


def test_relative_picture_paths_are_read_from_the_catalogue_folder(tmp_path: Path) -> None:
    from aisle.index.catalog import Catalog, Product
    from aisle.index.pictures import analyse_pictures

    write_picture_catalogue(tmp_path)
    # Products whose image is the catalogue's own relative value, not resolved by the loader.
    products = [Product("a", "red shirt", image="img/red-shirt.jpg"), Product("b", "gone", image="img/nope.jpg")]
    results = analyse_pictures(products, base_dir=tmp_path)
    assert results.status == ["ok", "missing"] and results.colours[0][0] == "red"
    report = build_version(
        Catalog(products, source=tmp_path / "catalogue.jsonl"), tmp_path / "index", HashingEncoder(), OPTIONS
    )
    assert report.pictures["ok"] == 1
