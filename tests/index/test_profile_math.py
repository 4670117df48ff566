"""index.profile: the incremental accumulator equals the recomputation (hypothesis); the two clocks."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aisle.index.profile import (
    DAY_S,
    EVENT_TYPES,
    DecayConfig,
    ProfileAccumulator,
    ProfileEvent,
    TypeDecay,
    event_log2_weights,
    freshness,
    personal_share,
    profile_from_events,
)

DIM = 16
ROWS = 12
VECTORS = np.random.default_rng(7).normal(size=(ROWS, DIM))
VECTORS = (VECTORS / np.linalg.norm(VECTORS, axis=1, keepdims=True)).astype(np.float32)
NOW = 1_700_000_000.0

# Timestamps spread over years, so that rebasing (exponents > 64 half-lives) really happens.
timestamps = st.floats(min_value=NOW - 3 * 365 * DAY_S, max_value=NOW, allow_nan=False)
events_strategy = st.lists(
    st.builds(ProfileEvent, st.integers(0, ROWS - 1), st.sampled_from(EVENT_TYPES), timestamps),
    min_size=1,
    max_size=40,
)
configs = st.sampled_from(
    [
        DecayConfig(),
        DecayConfig(decay=False),
        DecayConfig(activity_half_life=0.05),  # many activity halvings: rebases on the activity clock
        DecayConfig(view=TypeDecay(1.0, 3600.0), purchase=TypeDecay(8.0, 600.0)),  # short gaps: many rebases
    ]
)


def accumulate(events: list[ProfileEvent], config: DecayConfig) -> ProfileAccumulator:
    accumulator = ProfileAccumulator(DIM, config)
    for event in events:
        accumulator.add(VECTORS[event.row], event.type, event.timestamp)
    return accumulator


def assert_same(left, right) -> None:
    assert (left.vector is None) == (right.vector is None)
    if left.vector is not None:
        np.testing.assert_allclose(left.vector, right.vector, atol=5e-3)  # float16 sums
        assert float(left.vector @ right.vector) >= 1 - 1e-4
    assert left.mass == pytest.approx(right.mass, rel=1e-5, abs=1e-300)
    assert left.last_ts == right.last_ts


@settings(max_examples=150, deadline=None)
@given(events=events_strategy, config=configs, seed=st.integers(0, 2**32 - 1))
def test_incremental_equals_recomputed_in_any_arrival_order(events, config, seed) -> None:
    shuffled = list(events)
    random.Random(seed).shuffle(shuffled)
    for order in (
        events,
        shuffled,
        sorted(events, key=lambda e: e.timestamp),
        sorted(events, key=lambda e: -e.timestamp),
    ):
        assert_same(accumulate(order, config).profile(), profile_from_events(order, VECTORS, config))


@settings(max_examples=100, deadline=None)
@given(events=events_strategy, config=configs, cut=st.integers(0, 40))
def test_merge_appends_and_equals_one_accumulator(events, config, cut) -> None:
    left, right = events[:cut], events[cut:]
    expected = profile_from_events(events, VECTORS, config)
    merged = accumulate(left, config)
    merged.merge(accumulate(right, config))
    assert_same(merged.profile(), expected)


def test_the_activity_clock_favours_the_latest_events_whatever_the_cadence() -> None:
    config = DecayConfig()
    for cadence in (DAY_S, 30 * DAY_S, 180 * DAY_S):
        events = [ProfileEvent(row, "purchase", NOW - (3 - row) * cadence) for row in range(4)]
        profile = profile_from_events(events, VECTORS, config)
        weights = [profile.vector @ VECTORS[row] for row in range(4)]
        assert weights[3] > weights[2] > weights[0]
        # Two purchases later, an event weighs at most 2^(-2 / activity half-life) of a fresh one.
        assert 2.0 ** event_log2_weights(events, config)[1] <= 8.0 * 2.0 ** (-2 / config.activity_half_life)


def test_a_returning_customer_keeps_the_whole_profile() -> None:
    config = DecayConfig()
    recent = [ProfileEvent(row, "purchase", NOW - (3 - row) * 30 * DAY_S) for row in range(4)]
    long_ago = [ProfileEvent(e.row, e.type, e.timestamp - 5 * 365 * DAY_S) for e in recent]
    fresh, returning = profile_from_events(recent, VECTORS, config), profile_from_events(long_ago, VECTORS, config)
    np.testing.assert_allclose(fresh.vector, returning.vector, atol=1e-6)
    assert fresh.mass == pytest.approx(returning.mass)
    assert freshness(NOW - returning.last_ts, 365 * DAY_S, 0.8) == pytest.approx(0.8 + 0.2 * 2**-5)
    assert freshness(0.0, 365 * DAY_S, 0.8) == 1.0


def test_gap_clock_fades_events_before_a_long_pause() -> None:
    config = DecayConfig(view=TypeDecay(1.0, DAY_S), activity_half_life=1e9)
    old, new = ProfileEvent(0, "view", NOW - 10 * DAY_S), ProfileEvent(1, "view", NOW)
    profile = profile_from_events([old, new], VECTORS, config)
    assert profile.vector @ VECTORS[1] > profile.vector @ VECTORS[0]
    assert profile.mass == pytest.approx(1.0 + 2.0**-10, rel=1e-6)
    flat = profile_from_events([old, new], VECTORS, DecayConfig(decay=False))
    expected = (VECTORS[0] + VECTORS[1]) / np.linalg.norm(VECTORS[0] + VECTORS[1])
    np.testing.assert_allclose(flat.vector, expected, atol=1e-6)


def test_views_move_the_activity_clock_less_than_purchases() -> None:
    config = DecayConfig()
    bought = ProfileEvent(0, "purchase", NOW - 60)
    views = [ProfileEvent(1, "view", NOW - 50 + i) for i in range(4)]
    weights = event_log2_weights([bought, *views], config)
    # Four views are half a purchase's step: the purchase keeps most of its weight.
    assert weights[0] == pytest.approx(3.0 - 0.5 / config.activity_half_life, abs=1e-3)


def test_type_weights_scale_contributions() -> None:
    config = DecayConfig(decay=False)
    profile = profile_from_events([ProfileEvent(0, "view", NOW), ProfileEvent(1, "purchase", NOW)], VECTORS, config)
    expected = VECTORS[0] * 1.0 + VECTORS[1] * 8.0
    np.testing.assert_allclose(profile.vector, expected / np.linalg.norm(expected), atol=1e-6)
    assert profile.mass == pytest.approx(9.0)


def test_long_histories_rebase_without_overflow() -> None:
    config = DecayConfig(view=TypeDecay(1.0, 60.0), activity_half_life=0.01)
    events = [ProfileEvent(i % ROWS, "view", NOW - 50 * 365 * DAY_S + 60 * i) for i in range(500)]
    accumulator = accumulate(events, config)
    profile = accumulator.profile()
    assert profile.vector is not None and math.isfinite(profile.mass)
    assert_same(profile, profile_from_events(events, VECTORS, config))


def test_empty_and_cancelling_profiles_have_no_vector() -> None:
    assert ProfileAccumulator(DIM).profile().vector is None
    assert profile_from_events([], VECTORS, DecayConfig()).vector is None
    opposite = np.vstack([VECTORS[0], -VECTORS[0]])
    events = [ProfileEvent(0, "view", NOW), ProfileEvent(1, "view", NOW)]
    assert profile_from_events(events, opposite, DecayConfig(decay=False)).vector is None


@given(mass=st.floats(min_value=0, max_value=1e6), cap=st.floats(0.0, 1.0), half=st.floats(0.01, 100))
def test_personal_share_grows_with_evidence_up_to_the_cap(mass, cap, half) -> None:
    share = personal_share(mass, cap=cap, half_mass=half)
    assert 0.0 <= share <= cap
    assert personal_share(mass * 2 + 1, cap=cap, half_mass=half) >= share
    assert personal_share(half, cap=cap, half_mass=half) == pytest.approx(cap / 2)


def test_personal_share_edges() -> None:
    assert personal_share(0.0) == 0.0
    assert personal_share(math.nan) == 0.0
    assert personal_share(math.inf, cap=0.4) == 0.4


def test_decay_config_validates() -> None:
    with pytest.raises(ValueError, match="unknown event type"):
        DecayConfig().weight("like")
    with pytest.raises(ValueError, match="positive"):
        TypeDecay(0.0, 10.0)
    with pytest.raises(ValueError, match="half-life"):
        TypeDecay(1.0, 0.0)
    assert DecayConfig(decay=False).half_life("view") == math.inf
    with pytest.raises(ValueError, match="different"):
        ProfileAccumulator(DIM).merge(ProfileAccumulator(DIM + 1))
    with pytest.raises(ValueError, match="activity"):
        DecayConfig(activity_half_life=0.0)
