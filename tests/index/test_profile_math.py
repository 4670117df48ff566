"""index.profile: the incremental accumulator equals the recomputation, in any order (hypothesis)."""

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
    combine_profiles,
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
        DecayConfig(view=TypeDecay(1.0, 3600.0), purchase=TypeDecay(8.0, 600.0)),  # short: many rebases
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
        np.testing.assert_allclose(left.vector, right.vector, atol=1e-5)
    assert left.mass == pytest.approx(right.mass, rel=1e-5, abs=1e-300)


@settings(max_examples=150, deadline=None)
@given(events=events_strategy, config=configs, seed=st.integers(0, 2**32 - 1))
def test_incremental_equals_recomputed_in_any_order(events, config, seed) -> None:
    expected = profile_from_events(events, VECTORS, config, NOW)
    shuffled = list(events)
    random.Random(seed).shuffle(shuffled)
    for order in (
        events,
        shuffled,
        sorted(events, key=lambda e: e.timestamp),
        sorted(events, key=lambda e: -e.timestamp),
    ):
        assert_same(accumulate(order, config).profile(NOW), expected)


@settings(max_examples=100, deadline=None)
@given(events=events_strategy, config=configs, cut=st.integers(0, 40))
def test_merge_and_combine_equal_one_accumulator(events, config, cut) -> None:
    left, right = events[:cut], events[cut:]
    expected = profile_from_events(events, VECTORS, config, NOW)
    merged = accumulate(left, config)
    merged.merge(accumulate(right, config))
    assert_same(merged.profile(NOW), expected)
    assert_same(combine_profiles([accumulate(left, config), accumulate(right, config)], NOW), expected)


def test_recency_decay_favours_recent_events() -> None:
    config = DecayConfig(view=TypeDecay(1.0, DAY_S))
    old, new = ProfileEvent(0, "view", NOW - 10 * DAY_S), ProfileEvent(1, "view", NOW)
    profile = profile_from_events([old, new], VECTORS, config, NOW)
    assert profile.vector @ VECTORS[1] > profile.vector @ VECTORS[0]
    assert profile.mass == pytest.approx(1.0 + 2.0**-10)
    flat = profile_from_events([old, new], VECTORS, DecayConfig(decay=False), NOW)
    expected = (VECTORS[0] + VECTORS[1]) / np.linalg.norm(VECTORS[0] + VECTORS[1])
    np.testing.assert_allclose(flat.vector, expected, atol=1e-6)


def test_type_weights_scale_contributions() -> None:
    config = DecayConfig(decay=False)
    profile = profile_from_events(
        [ProfileEvent(0, "view", NOW), ProfileEvent(1, "purchase", NOW)], VECTORS, config, NOW
    )
    expected = VECTORS[0] * 1.0 + VECTORS[1] * 8.0
    np.testing.assert_allclose(profile.vector, expected / np.linalg.norm(expected), atol=1e-6)
    assert profile.mass == pytest.approx(9.0)


def test_ancient_history_keeps_a_direction_and_no_overflow() -> None:
    config = DecayConfig(view=TypeDecay(1.0, 60.0))
    events = [ProfileEvent(2, "view", NOW - 50 * 365 * DAY_S), ProfileEvent(3, "view", NOW - 50 * 365 * DAY_S + 60)]
    accumulator = accumulate(events, config)
    profile = accumulator.profile(NOW)
    assert profile.vector is not None and profile.mass == 0.0
    assert_same(profile, profile_from_events(events, VECTORS, config, NOW))
    # A far future evaluation time must not raise either.
    assert accumulator.profile(NOW - 100 * 365 * DAY_S).mass > 0


def test_empty_and_cancelling_profiles_have_no_vector() -> None:
    assert ProfileAccumulator(DIM).profile(NOW).vector is None
    assert profile_from_events([], VECTORS, DecayConfig(), NOW).vector is None
    opposite = np.vstack([VECTORS[0], -VECTORS[0]])
    events = [ProfileEvent(0, "view", NOW), ProfileEvent(1, "view", NOW)]
    assert profile_from_events(events, opposite, DecayConfig(), NOW).vector is None


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
