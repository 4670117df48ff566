"""Bought together / bought after pairs over small event logs whose right answer is known."""

from __future__ import annotations

import pytest

from aisle.index.profile import DecayConfig
from aisle.service.personal.cooccurrence import CoOccurrence

DAY = 86_400.0
A, B, C, D, E = 1, 2, 3, 4, 5


def _log(events: list[tuple[str, int, float]], **options: float) -> CoOccurrence:
    pairs = CoOccurrence(DecayConfig(), window_s=3600.0, **options)
    for actor, row, when in events:
        pairs.add(actor, row, "purchase", when)
    return pairs


def _ranked(pairs: CoOccurrence, seeds: dict[int, float], **options: float) -> dict[int, float]:
    rows, scores = pairs.scores(seeds, 10, **options)
    return dict(zip(rows.tolist(), scores.tolist()))


def test_purchases_a_month_apart_pair_in_time_order() -> None:
    pairs = _log([("u1", A, 0.0), ("u1", B, 30 * DAY)])
    assert pairs.neighbours(A) == {B: 8.0}  # the later item follows the earlier at full weight
    assert pairs.neighbours(B) == {A: 4.0}  # the reverse direction at before_weight 0.5


def test_a_basket_pairs_both_ways_at_full_weight() -> None:
    pairs = _log([("u1", A, 0.0), ("u1", B, 60.0)])
    assert pairs.neighbours(A) == {B: 8.0}
    assert pairs.neighbours(B) == {A: 8.0}


def test_second_order_reaches_what_is_bought_after_the_partner() -> None:
    # Nobody bought C right after A, but A is followed by B and B by C.
    pairs = _log([("u1", A, 0.0), ("u1", B, 30 * DAY), ("u2", B, 0.0), ("u2", C, 30 * DAY)])
    assert C not in _ranked(pairs, {A: 1.0})
    reached = _ranked(pairs, {A: 1.0}, second_order=0.3)
    assert C in reached
    assert reached[B] == pytest.approx(1.0)  # the direct partner stays first
    assert 0 < reached[C] < reached[B]


def test_second_order_follows_the_stronger_partner() -> None:
    # A is followed by B twice and by D once; B leads to C, D to E: C outranks E.
    events = [
        ("u1", A, 0.0), ("u1", B, DAY),
        ("u2", A, 0.0), ("u2", B, DAY),
        ("u3", A, 0.0), ("u3", D, DAY),
        ("u4", B, 0.0), ("u4", C, DAY),
        ("u5", D, 0.0), ("u5", E, DAY),
    ]  # fmt: skip
    reached = _ranked(_log(events), {A: 1.0}, second_order=0.3)
    assert reached[C] > reached[E] > 0


def test_without_second_order_scores_are_unchanged() -> None:
    events = [("u1", A, 0.0), ("u1", B, DAY), ("u1", C, 2 * DAY), ("u2", B, 0.0), ("u2", D, DAY)]
    pairs = _log(events)
    assert _ranked(pairs, {A: 1.0}, second_order=0.0) == _ranked(pairs, {A: 1.0})
    assert _ranked(pairs, {E: 1.0}, second_order=0.3) == {}  # an item nobody paired: nothing
