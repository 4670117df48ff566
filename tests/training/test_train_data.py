"""Training data: the validation split, event logs and labelled queries."""

from __future__ import annotations

from pathlib import Path

import pytest

from aisle.index.catalog import Catalog, Product
from aisle.training.datasets import DatasetError, load_sequence_set
from aisle.training.train_data import (
    NextItemCase,
    QueryPair,
    TrainingData,
    split_for_validation,
)
from aisle.training.train_sources import (
    from_catalog,
    from_sequence_set,
    read_labelled_queries,
)


def _cases() -> list[NextItemCase]:
    cases = []
    for user in range(50):
        items = [(user * 3 + i) % 40 for i in range(6)]
        cases.extend(NextItemCase(str(user), tuple(items[:end]), items[end]) for end in range(1, 6))
    return cases


def test_validation_holds_out_each_sampled_users_longest_case() -> None:
    data = TrainingData([str(i) for i in range(40)], [f"item {i}" for i in range(40)], sequences=_cases())
    split = split_for_validation(data, 0.2, seed=3)
    assert len(split.valid_sequences) == 10
    assert len(split.train_sequences) + len(split.valid_sequences) == len(data.sequences)
    held = {case.user: case for case in split.valid_sequences}
    for user, case in held.items():
        assert len(case.history) == 5  # the longest one
        # The user's other cases stay in training, and none of them targets the held-out item's position.
        assert all(len(c.history) < 5 for c in split.train_sequences if c.user == user)
    assert split_for_validation(data, 0.2, seed=3).valid_sequences == split.valid_sequences
    assert split_for_validation(data, 0.2, seed=4).valid_sequences != split.valid_sequences


def test_query_validation_keeps_all_pairs_of_a_query_together() -> None:
    pairs = [QueryPair(str(q), f"query {q}", (q + j) % 40) for q in range(20) for j in range(2)]
    data = TrainingData([str(i) for i in range(40)], [f"item {i}" for i in range(40)], queries=pairs)
    split = split_for_validation(data, 0.25, seed=1)
    assert len(split.valid_queries) == 5
    assert all(len(targets) == 2 for _, targets in split.valid_queries.values())
    assert not {p.query_id for p in split.train_queries} & set(split.valid_queries)


def test_rows_outside_the_catalogue_are_refused() -> None:
    with pytest.raises(ValueError):
        TrainingData(["a"], ["text"], sequences=[NextItemCase("u", (0,), 3)])


def test_event_log_becomes_timed_cases(tmp_path: Path) -> None:
    catalog = Catalog([Product(id=f"p{i}", title=f"product {i}") for i in range(4)])
    log = tmp_path / "events.csv"
    log.write_text(
        "user_id,item_id,timestamp,type\n"
        "u1,p2,2024-01-02T00:00:00Z,purchase\n"
        "u1,p0,1704067200,view\n"  # 2024-01-01, earlier although listed later
        "u1,p3,1704240000,click\n"
        "u2,p1,1704067200,view\n"
        "u2,gone,1704067300,view\n",  # not in the catalogue any more: skipped
        encoding="utf-8",
    )
    data = from_catalog(catalog, events_file=log)
    assert [(c.user, c.history, c.target) for c in data.sequences] == [
        ("u1", (0,), 2),
        ("u1", (0, 2), 3),
    ]
    second = data.sequences[1]
    assert second.types == ("view", "purchase")
    assert second.timestamps == (1704067200.0, 1704153600.0) and second.now == 1704240000.0


def test_bad_event_rows_are_named(tmp_path: Path) -> None:
    catalog = Catalog([Product(id="p0", title="product")])
    log = tmp_path / "events.csv"
    log.write_text("user_id,item_id,timestamp,type\nu1,p0,1704067200,like\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="line 2"):
        from_catalog(catalog, events_file=log)


def test_labelled_queries(tmp_path: Path) -> None:
    (tmp_path / "q.csv").write_text("query_id,query\n1,usb cable\n2,no labels\n", encoding="utf-8")
    (tmp_path / "r.csv").write_text("query_id,product_id,gain\n1,p1,1\n1,p0,0\n", encoding="utf-8")
    catalog = Catalog([Product(id=f"p{i}", title=f"product {i}") for i in range(2)])
    data = from_catalog(catalog, queries=read_labelled_queries(tmp_path / "q.csv", tmp_path / "r.csv"))
    assert data.queries == [QueryPair("1", "usb cable", 1)]


def test_training_rows_are_prefixes_of_the_valid_history(shared_data: Path) -> None:
    valid = {case.user: case for case in load_sequence_set("fixture/scientific", "valid").cases}
    train = load_sequence_set("fixture/scientific", "train")
    assert train.cases
    for case in train.cases:
        seen = (*case.history, case.target)
        # Every training target is an item of the valid history: no valid target is trained on.
        assert valid[case.user].history[: len(seen)] == seen
    data = from_sequence_set(train)
    assert len(data.sequences) == len(train.cases)


def test_amazon_google_queries_are_whole_listings_unless_columns_are_given(shared_data: Path) -> None:
    from aisle.training.datasets import load_search_set

    listing = {q.id: q.text for q in load_search_set("fixture/amazon_google").queries}
    titles = {q.id: q.text for q in load_search_set("fixture/amazon_google", query_columns=("query",)).queries}
    assert listing.keys() == titles.keys()
    # Query 2 of the shared data: its title, then its manufacturer.
    assert titles["2"] == "noah 's ark activity center ( jewel case ages 3-8 )"
    assert listing["2"] == titles["2"] + " victory multimedia"
    with pytest.raises(DatasetError, match="missing column"):
        load_search_set("fixture/amazon_google", query_columns=("query", "colour"))
