"""Rebuilds re-use what did not change: vectors per product, whole files when nothing embedded moved."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from aisle.index.ann import AnnParams
from aisle.index.build import BuildOptions, build_version
from aisle.index.catalog import Catalog, Product
from aisle.index.loaded import LoadedIndex
from benchmarks import realdata
from tests.fakes import HashingEncoder
from tests.index.conftest import CountingEncoder, TextSeedEncoder, build, small_products

LINKED = ["index.text.faiss", "lexical", "vectors.text.npy"]


@pytest.fixture(scope="module")
def catalogue_10k(shared_data: Path) -> list[Product]:
    """10,000 real product texts (three real catalogues, then colour/size variants)."""
    return realdata.catalog_of_size(realdata.load_real_products(shared_data), 10_000)


def same_inode(a: Path, b: Path) -> bool:
    return a.stat().st_ino == b.stat().st_ino


def test_rebuild_of_10k_products_encodes_only_what_changed(tmp_path: Path, catalogue_10k: list[Product]) -> None:
    encoder = CountingEncoder(TextSeedEncoder(64))
    first = build(tmp_path, catalogue_10k, encoder)
    assert (first.items, first.encoded, first.reused, first.reused_files) == (10_000, 10_000, 0, [])

    encoder.encoded_texts.clear()
    unchanged = build(tmp_path, catalogue_10k, encoder)
    assert (unchanged.encoded, unchanged.reused) == (0, 10_000)
    assert encoder.encoded_texts == []
    assert sorted(unchanged.reused_files) == LINKED
    for name in ("index.text.faiss", "vectors.text.npy"):
        assert same_inode(first.path / name, unchanged.path / name)

    # The nightly case: prices and stock move, no embedded field does.
    repriced = [dataclasses.replace(p, price=(p.price or 0) + 1, in_stock=not p.in_stock) for p in catalogue_10k]
    nightly = build(tmp_path, repriced, encoder)
    assert nightly.encoded == 0 and sorted(nightly.reused_files) == LINKED
    loaded = LoadedIndex.load(nightly.path, expected_fingerprint=encoder.fingerprint)
    assert loaded.items.price[0] == repriced[0].price and loaded.items.in_stock[0] == repriced[0].in_stock

    retitled = list(repriced)
    retitled[1234] = dataclasses.replace(retitled[1234], title=retitled[1234].title + " (2025 edition)")
    one_change = build(tmp_path, retitled, encoder)
    assert (one_change.encoded, one_change.reused) == (1, 9_999)
    assert encoder.encoded_texts == [retitled[1234].embedding_text()]
    assert one_change.reused_files == []  # the FAISS and BM25 indexes hold the new title
    loaded = LoadedIndex.load(one_change.path, expected_fingerprint=encoder.fingerprint)
    expected = encoder.inner.encode_documents([p.embedding_text() for p in retitled])
    np.testing.assert_allclose(loaded.text.vectors, expected, atol=1e-6)


def test_added_removed_and_reordered_products(tmp_path: Path) -> None:
    encoder = CountingEncoder(HashingEncoder(32))
    products = small_products(30)
    build(tmp_path, products, encoder)
    encoder.encoded_texts.clear()
    new = Product(id="new", title="brand new product")
    changed = [new, *reversed(products[5:])]  # five removed, one added, order reversed
    report = build(tmp_path, changed, encoder)
    assert (report.encoded, report.reused) == (1, 25)
    assert encoder.encoded_texts == [new.embedding_text()]
    loaded = LoadedIndex.load(report.path)
    assert loaded.items.ids == [p.id for p in changed]
    np.testing.assert_allclose(
        loaded.text.vectors, encoder.inner.encode_documents([p.embedding_text() for p in changed]), atol=1e-6
    )


def test_another_model_re_encodes_everything(tmp_path: Path) -> None:
    build(tmp_path, small_products(), HashingEncoder(32))
    report = build(tmp_path, small_products(), HashingEncoder(32, salt="v2"))
    assert (report.encoded, report.reused_files) == (40, [])


def test_changed_index_parameters_rebuild_the_index_but_keep_the_vectors(tmp_path: Path) -> None:
    first = build(tmp_path, small_products())
    report = build(tmp_path, small_products(), index_type="hnsw", ef_search=64)
    assert report.encoded == 0 and report.reused_files == ["lexical", "vectors.text.npy"]
    assert report.index_type == "hnsw" and not same_inode(
        first.path / "index.text.faiss", report.path / "index.text.faiss"
    )
    assert LoadedIndex.load(report.path).text.ann.params.ef_search == 64
    # A serving-time override changes the beam without a rebuild, in Aisle's params and FAISS's.
    ann = LoadedIndex.load(report.path, ef_search=300, nprobe=3).text.ann
    assert ann.params.ef_search == 300 and ann.faiss_index.hnsw.efSearch == 300
    assert ann.params.nprobe == AnnParams.nprobe  # not an IVF index: left alone
    assert len(ann.search(np.ones(ann.faiss_index.d, dtype=np.float32) / np.sqrt(ann.faiss_index.d), 5)[0]) == 5


def test_nprobe_override_of_an_ivf_version(tmp_path: Path) -> None:
    report = build(tmp_path, small_products(200), index_type="ivf", nprobe=2)
    assert LoadedIndex.load(report.path).text.ann.faiss_index.nprobe == 2
    ann = LoadedIndex.load(report.path, nprobe=4, ef_search=99).text.ann
    assert ann.params.nprobe == 4 and ann.faiss_index.nprobe == 4 and ann.params.ef_search == AnnParams.ef_search


def test_a_damaged_previous_version_is_not_reused(tmp_path: Path) -> None:
    encoder = CountingEncoder(HashingEncoder(32))
    first = build(tmp_path, small_products(), encoder)
    vectors = first.path / "vectors.text.npy"
    data = bytearray(vectors.read_bytes())
    data[-7] ^= 0x55
    vectors.write_bytes(bytes(data))  # a new inode: the damage stays in the old version only
    report = build(tmp_path, small_products(), encoder)
    assert report.encoded == 40 and report.reused_files == []
    LoadedIndex.load(report.path)


def test_reuse_can_be_switched_off(tmp_path: Path) -> None:
    build(tmp_path, small_products())
    report = build(tmp_path, small_products(), reuse_vectors=False)
    assert report.encoded == 40 and report.reused_files == []


def test_bad_options_and_empty_catalogues_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown index type 'ivf-sq4'"):
        build(tmp_path, small_products(), index_type="ivf-sq4")
    with pytest.raises(ValueError, match="nprobe must be at least 1"):
        build(tmp_path, small_products(), index_type="ivf", nprobe=0)
    with pytest.raises(ValueError, match="keep_versions must be at least 1"):
        build(tmp_path, small_products(), keep_versions=0)
    with pytest.raises(ValueError, match="no valid products"):
        build_version(Catalog([]), tmp_path, HashingEncoder(32), BuildOptions(show_progress=False))
    assert not (tmp_path / "versions").exists() or not list((tmp_path / "versions").iterdir())


def test_large_catalogues_default_to_hnsw_and_a_memory_budget_to_sq8(tmp_path: Path, monkeypatch) -> None:
    from aisle.index import ann_build

    monkeypatch.setattr(ann_build, "FLAT_MAX_ITEMS", 30)
    assert build(tmp_path / "a", small_products(40)).index_type == "hnsw"
    assert build(tmp_path / "b", small_products(40), memory_budget_mb=0.001).index_type == "hnsw-sq8"
    assert build(tmp_path / "c", small_products(20), memory_budget_mb=0.001).index_type == "flat"
    assert build(tmp_path / "d", small_products(40), index_type="flat").index_type == "flat"
