"""Search metrics against values computed by hand."""

from __future__ import annotations

import math

import pytest

from aisle.training.metrics import summarize_ranks
from aisle.training.search_metrics import (
    mean_reciprocal_rank,
    ndcg_at,
    recall_at,
    reciprocal_rank_at,
    search_summary,
)


def test_recall_counts_relevant_items_in_the_top_k() -> None:
    gains = {"a": 1.0, "b": 2.0, "c": 1.0, "z": 0.0}
    assert recall_at(["x", "a", "y", "b"], gains, 10) == pytest.approx(2 / 3)
    assert recall_at(["x", "a", "y", "b"], gains, 2) == pytest.approx(1 / 3)
    # An item labelled with gain 0 is not relevant.
    assert recall_at(["z"], gains, 10) == 0.0


def test_reciprocal_rank_is_cut_at_k() -> None:
    assert reciprocal_rank_at(["x", "y", "a"], {"a"}, 10) == pytest.approx(1 / 3)
    assert reciprocal_rank_at(["x", "y", "a"], {"a"}, 2) == 0.0
    assert mean_reciprocal_rank([["a"], ["x", "a"], ["x"]], [{"a"}, {"a"}, {"a"}], 10) == pytest.approx(0.5)


def test_ndcg_uses_linear_graded_gains() -> None:
    gains = {"e": 3.0, "s": 2.0, "c": 1.0}
    ranked = ["s", "x", "e"]
    dcg = 2 / math.log2(2) + 0 + 3 / math.log2(4)
    idcg = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at(ranked, gains, 10) == pytest.approx(dcg / idcg)
    assert ndcg_at(["e", "s", "c"], gains, 10) == pytest.approx(1.0)


def test_undefined_without_relevant_items() -> None:
    with pytest.raises(ValueError):
        ndcg_at(["a"], {"a": 0.0}, 10)
    with pytest.raises(ValueError):
        recall_at(["a"], {}, 10)


def test_summary_averages_over_queries() -> None:
    summary = search_summary([["a", "b"], ["x", "y"]], [{"b": 1.0}, {"y": 1.0, "q": 1.0}], k=10)
    assert summary["MRR@10"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert summary["recall@10"] == pytest.approx((1 + 0.5) / 2)
    expected_second = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert summary["NDCG@10"] == pytest.approx(round((1 / math.log2(3) + expected_second) / 2, 4))
    assert summary["queries"] == 2


def test_next_item_metrics_by_hand() -> None:
    # Ranks 0, 4, 20 and a miss: HR@10 = 2/4, NDCG@10 = (1 + 1/log2(6)) / 4, HR@50 = 3/4.
    summary = summarize_ranks([0, 4, 20, None], (10, 50))
    assert summary["HR@10"] == pytest.approx(0.5)
    assert summary["NDCG@10"] == pytest.approx(round((1 + 1 / math.log2(6)) / 4, 4))
    assert summary["HR@50"] == pytest.approx(0.75)
    assert summary["NDCG@50"] == pytest.approx(round((1 + 1 / math.log2(6) + 1 / math.log2(22)) / 4, 4))
