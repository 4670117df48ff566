"""training.metrics and training.recsys_data (the readers run on the real files when present)."""

from __future__ import annotations

import math

import pytest

from aisle.training.metrics import RankingMetrics, hit_rate_at, ndcg_at, reciprocal_rank, summarize_ranks, target_rank
from aisle.training.recsys_data import MOVIELENS_DIR, UNISREC_DIR, load_movielens, load_unisrec, shared_data_dir


def test_rank_metrics_by_hand() -> None:
    assert target_rank(["a", "b", "c"], "c") == 2 and target_rank(["a"], "z") is None
    assert hit_rate_at(9, 10) == 1.0 and hit_rate_at(10, 10) == 0.0 and hit_rate_at(None, 10) == 0.0
    assert ndcg_at(0, 10) == 1.0 and ndcg_at(2, 10) == pytest.approx(0.5)
    assert ndcg_at(3, 10) == pytest.approx(1 / math.log2(5)) and ndcg_at(12, 10) == 0.0
    assert reciprocal_rank(3) == 0.25 and reciprocal_rank(3, cutoff=3) == 0.0 and reciprocal_rank(None) == 0.0
    summary = summarize_ranks([0, 2, 30, None])
    assert summary["HR@10"] == 0.5 and summary["HR@50"] == 0.75 and summary["cases"] == 4
    assert summary["NDCG@10"] == pytest.approx((1 + 0.5) / 4, abs=1e-4)
    assert summary["NDCG@50"] == pytest.approx((1 + 0.5 + 1 / math.log2(32)) / 4, abs=1e-4)
    assert summary["MRR"] == pytest.approx((1 + 1 / 3 + 1 / 31) / 4, abs=1e-4)
    assert RankingMetrics().summary()["HR@10"] == 0.0  # no cases: zeros, not a division error


def _require(folder) -> None:
    if not (shared_data_dir() / folder).is_dir():
        pytest.skip(f"real data not found at {shared_data_dir() / folder} (set AISLE_SHARED_DATA)")


def test_unisrec_scientific_reader() -> None:
    _require(UNISREC_DIR)
    data = load_unisrec()
    assert len(data) == 4385 and data.user_count == 8442
    assert len(data.valid) == 8442 and len(data.train) > len(data.valid)
    assert all(text for text in data.item_texts) and data.item_ids[0] == "B00TNNWMXI"
    first = data.valid[0]
    assert first.user == 0 and first.history == tuple(range(12)) and first.target == 12
    last_train = data.last_train_cases()
    assert len(last_train) == 8442
    # The latest training row targets the last item of the valid history, and its history ends
    # like the valid one (histories are windows of at most 50 items, so it may start earlier).
    by_user = {case.user: case for case in data.valid}
    for case in last_train:
        valid = by_user[case.user]
        assert case.target == valid.history[-1]
        assert case.history[len(case.history) - len(valid.history) + 1 :] == valid.history[:-1]


def test_movielens_tag_cases() -> None:
    _require(MOVIELENS_DIR)
    data = load_movielens()
    assert len(data.movies) == 8315 and len(data.ratings) == 78351
    cases = data.tag_cases()
    assert 1000 < len(cases) <= 1686
    for case in cases[:200]:
        assert case.history and all(r.timestamp < case.timestamp for r in case.history)
        assert case.movie not in {r.movie for r in case.history}
        assert [r.timestamp for r in case.history] == sorted(r.timestamp for r in case.history)
    assert data.movies[1].text() == "Toy Story (1995). Adventure, Animation, Children, Comedy, Fantasy"
