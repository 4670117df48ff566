"""The live delta (``aisle.index.live``) against a rebuild of the same catalogue, and the folding.

A version plus its delta must answer like a version built from the changed catalogue: the
same exact dense neighbours, the same rows under every filter, the same BM25 matches.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from aisle.index.build import BuildOptions, build_version
from aisle.index.catalog import Catalog, CatalogError, Product
from aisle.index.changes import CHANGES_FILE, Change, ChangeLog, Existence, fold, fold_log, validate_patch
from aisle.index.filters import Filters, select_rows
from aisle.index.live import OVERFETCH_LIMIT, Delta, LiveIndex
from aisle.index.loaded import LoadedIndex
from aisle.index.versions import VersionStore
from tests.fakes import HashingEncoder

WORDS = "knife pan kettle lamp chair desk towel pillow drill hammer speaker mouse shoe mat grinder".split()
BRANDS = ["Acme", "Globex", "Initech", "Umbrella"]


def catalogue(count: int) -> list[Product]:
    return [
        Product(
            id=f"p-{n}",
            title=f"{WORDS[n % len(WORDS)]} {WORDS[(n * 7) % len(WORDS)]} model {n}",
            brand=BRANDS[n % len(BRANDS)],
            category=["Home > Kitchen", "Home > Office", "Tools"][n % 3],
            price=float(10 + n % 50),
            in_stock=n % 5 != 0,
            attributes={"color": ["red", "blue"][n % 2]},
        )
        for n in range(count)
    ]


def changes_for(products: list[Product], seed: int, count: int) -> list[Change]:
    rng = np.random.default_rng(seed)
    ids = [p.id for p in products]
    changes: list[Change] = []
    for n in range(count):
        kind = rng.integers(5)
        if kind == 0:
            new = Product(id=f"new-{n}", title=f"zebra {WORDS[n % len(WORDS)]} novelty {n}", brand="Newco", price=5.0)
            changes.append(Change("upsert", new.id, product=new))
            ids.append(new.id)
        elif kind == 1:
            changes.append(Change("delete", str(rng.choice(ids))))
        elif kind == 2:
            changes.append(Change("patch", str(rng.choice(ids)), fields={"title": f"quokka retitled {n}"}))
        elif kind == 3:
            changes.append(
                Change("patch", str(rng.choice(ids)), fields={"price": float(rng.integers(1, 99)), "in_stock": True})
            )
        else:
            changes.append(Change("patch", str(rng.choice(ids)), fields={"brand": "Globex", "category": "Tools"}))
    return [dataclasses.replace(change, seq=seq) for seq, change in enumerate(changes, start=1)]


def build(root: Path, products: list[Product], encoder: HashingEncoder, **kwargs) -> LoadedIndex:
    report = build_version(
        Catalog(products), root, encoder, BuildOptions(show_progress=False, reuse_vectors=False), **kwargs
    )
    return LoadedIndex.load(report.path)


def live_ids(index, rows) -> list[str]:
    return [index.items.ids[int(row)] for row in rows]


@pytest.mark.parametrize("change_count", [40, OVERFETCH_LIMIT * 3])
def test_the_delta_answers_like_a_rebuild(tmp_path: Path, change_count: int) -> None:
    encoder = HashingEncoder()
    products = catalogue(600)
    base = build(tmp_path / "base", products, encoder)
    changes = changes_for(products, seed=change_count, count=change_count)
    delta = Delta(base, lambda texts: encoder.encode_documents(texts))
    # Applied in several batches, as a follower does.
    for start in range(0, len(changes), 17):
        live = delta.apply(changes[start : start + 17])
    rebuilt = build(tmp_path / "rebuilt", fold(products, changes), encoder)
    assert live.live_items == len(rebuilt)
    assert sorted(live.items.row_of) == sorted(rebuilt.items.ids)

    for word in ["zebra novelty", "quokka", "kettle lamp", "drill model 7"]:
        query = encoder.encode_queries([word])[0]
        live_rows, live_scores = live.text.ann.search(query, 10)
        rebuilt_rows, rebuilt_scores = rebuilt.text.ann.search(query, 10)
        np.testing.assert_allclose(live_scores, rebuilt_scores, rtol=1e-5, atol=1e-6)
        top = float(rebuilt_scores[-1])  # ties at the cut may order differently
        assert {i for i, s in zip(live_ids(live, live_rows), live_scores) if s > top + 1e-6} == {
            i for i, s in zip(live_ids(rebuilt, rebuilt_rows), rebuilt_scores) if s > top + 1e-6
        }
        lexical_live = set(live_ids(live, live.lexical.top(word, 1000)[0]))
        lexical_rebuilt = set(live_ids(rebuilt, rebuilt.lexical.top(word, 1000)[0]))
        assert lexical_live == lexical_rebuilt

    for filters in [
        Filters(brand="Globex"),
        Filters(category="Tools", in_stock=True),
        Filters(price_min=20, price_max=30),
        Filters(brand="Newco"),
    ]:
        live_mask = select_rows(live.items, filters).mask & ~live.items.removed
        assert {live.items.ids[r] for r in np.flatnonzero(live_mask)} == {
            rebuilt.items.ids[r] for r in np.flatnonzero(select_rows(rebuilt.items, filters).mask)
        }
        query = encoder.encode_queries(["tools"])[0]
        rows, _ = live.text.ann.search(query, 50, select_rows(live.items, filters))
        assert set(live_ids(live, rows)) <= {live.items.ids[r] for r in np.flatnonzero(live_mask)}


def test_vectors_of_the_log_are_used_and_only_price_changes_keep_the_version_vector(tmp_path: Path) -> None:
    encoder = HashingEncoder()
    base = build(tmp_path / "base", catalogue(50), encoder)
    encoded: list[str] = []

    def encode(texts: list[str]) -> np.ndarray:
        encoded.extend(texts)
        return encoder.encode_documents(texts)

    delta = Delta(base, encode)
    new = Product(id="n", title="brand new thing")
    vector = encoder.encode_documents([new.embedding_text()])[0]
    live = delta.apply(
        [
            Change(
                "upsert",
                "n",
                product=new,
                content_hash=new.content_hash(),
                vector=vector,
                model=encoder.fingerprint,
                seq=1,
            ),
            Change("patch", "p-1", fields={"price": 1.0, "attributes": {"size": "L"}}, seq=2),
        ]
    )
    assert encoded == []  # the new product's vector came with the change; the patch needs none
    row = live.items.row_of["n"]
    np.testing.assert_allclose(live.text.vectors[row], vector)
    np.testing.assert_allclose(live.text.vectors[1], base.text.vectors[1])
    assert live.items.product(1).attributes["size"] == "L" and live.items.price[1] == 1.0
    assert "size" not in live.items.to_result(1)  # attributes not configured public stay private
    assert base.items.price[1] != 1.0  # copy-on-write: the version's own table is untouched
    live = delta.apply([Change("patch", "p-2", fields={"title": "renamed"}, seq=3)])
    assert encoded == ["renamed. Initech. Tools"]  # a retitle is encoded (here: not logged with a vector)
    assert live.items.titles[2] == "renamed"


def test_a_patch_of_a_deleted_product_changes_nothing_and_a_readd_reuses_the_row(tmp_path: Path) -> None:
    encoder = HashingEncoder()
    base = build(tmp_path / "base", catalogue(20), encoder)
    delta = Delta(base, lambda texts: encoder.encode_documents(texts))
    live = delta.apply(
        [
            Change("delete", "p-3", seq=1),
            Change("patch", "p-3", fields={"price": 1.0}, seq=2),
        ]
    )
    assert "p-3" not in live.items.row_of and live.items.removed[3]
    live = delta.apply([Change("upsert", "p-3", product=Product(id="p-3", title="back again"), seq=3)])
    assert live.items.row_of["p-3"] == 3 and not live.items.removed[3]
    assert len(live) == 20


def test_patches_are_validated_like_catalogue_rows() -> None:
    assert validate_patch({"price": "1,299.00", "in_stock": "out of stock"}) == {"price": 1299.0, "in_stock": False}
    with pytest.raises(CatalogError, match="field 'price'"):
        validate_patch({"price": "cheap"})
    with pytest.raises(CatalogError, match="cannot be patched"):
        validate_patch({"id": "x"})
    with pytest.raises(CatalogError, match="field 'title': missing title"):
        validate_patch({"title": "  "})


def test_the_log_is_idempotent_atomic_and_folded_by_the_build(tmp_path: Path) -> None:
    encoder = HashingEncoder()
    root = tmp_path / "index"
    products = catalogue(30)
    build(root, products, encoder)
    log = ChangeLog(root / CHANGES_FILE)
    log.start()
    existence = Existence(0, lambda item_id: item_id in {p.id for p in products})
    new = Product(id="n1", title="folded newcomer")
    vector = encoder.encode_documents([new.embedding_text()])[0]
    receipt = log.submit(
        [
            Change(
                "upsert",
                "n1",
                product=new,
                change_id="a",
                content_hash=new.content_hash(),
                vector=vector,
                model=encoder.fingerprint,
            ),
            Change("delete", "p-0", change_id="b"),
        ],
        existence,
    )
    assert receipt.sequences == [1, 2]
    again = log.submit([Change("delete", "p-0", change_id="b")], existence)
    assert again.duplicates == 1 and again.sequences == [0]
    with pytest.raises(Exception, match="unknown item id 'p-0'"):  # deleted by change 2
        log.submit(
            [Change("patch", "p-1", fields={"price": 2.0}), Change("patch", "p-0", fields={"price": 1.0})], existence
        )
    assert log.last_seq() == 2  # the refused submission stored nothing, not even its first change
    log.close()

    folded = fold_log(root, products, encoder.fingerprint)
    assert folded.sequence == 2 and folded.changes == 2 and new.content_hash() in folded.vectors
    report = build_version(
        Catalog(folded.products),
        root,
        encoder,
        BuildOptions(show_progress=False),
        live_sequence=folded.sequence,
        known_vectors=folded.vectors,
    )
    assert report.encoded == 0  # the new product's vector came from the log
    manifest = json.loads((report.path / "manifest.json").read_text())
    assert manifest["live_sequence"] == 2
    loaded = LoadedIndex.load(VersionStore(root).current_path())
    assert "n1" in loaded.items.row_of and "p-0" not in loaded.items.row_of
    # Serving it replays nothing: the version includes every change.
    assert Delta(loaded, encoder.encode_documents).apply([]).sequence == 2


def test_aisle_compact_folds_the_log_into_a_new_version(tmp_path: Path, monkeypatch, capsys) -> None:
    from aisle.cli import main

    encoder = HashingEncoder()
    monkeypatch.setattr("aisle.index.cli.load_encoder", lambda settings: encoder)
    root = tmp_path / "index"
    products = catalogue(30)
    build(root, products, encoder)
    log = ChangeLog(root / CHANGES_FILE)
    log.start()
    log.submit([Change("patch", "p-4", fields={"price": 999.0}), Change("delete", "p-5")], Existence(0, lambda _: True))
    log.close()
    assert main(["compact", "--index", str(root), "--no-progress"]) == 0
    assert "+ 2 live changes" in capsys.readouterr().out
    loaded = LoadedIndex.load(VersionStore(root).current_path())
    assert loaded.items.price[loaded.items.row_of["p-4"]] == 999.0 and "p-5" not in loaded.items.row_of
    assert loaded.manifest["live_sequence"] == 2
    assert main(["compact", "--index", str(root), "--no-progress"]) == 0
    assert "nothing to fold" in capsys.readouterr().out


def test_unchanged_snapshot_is_the_version(tmp_path: Path) -> None:
    encoder = HashingEncoder()
    base = build(tmp_path / "base", catalogue(10), encoder)
    snapshot = LiveIndex.unchanged(base, 0)
    assert snapshot.items is base.items and len(snapshot) == 10


def test_new_products_get_their_own_picture_group(tmp_path: Path) -> None:
    encoder = HashingEncoder()
    base = build(tmp_path / "base", catalogue(6), encoder)
    base.items.set_picture_groups(np.array([0, 0, 2, 3, 4, 5]))
    delta = Delta(base, lambda texts: encoder.encode_documents(texts))
    live = delta.apply([Change("upsert", "n", product=Product(id="n", title="new"), seq=1)])
    assert live.items.picture_groups.tolist() == [0, 0, 2, 3, 4, 5, 6]
    assert live.items.picture_shared.tolist() == [True, True, False, False, False, False, False]
    assert len(live.text.vectors) == 7 and live.image is None
