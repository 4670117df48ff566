"""The differentiable profile used in training equals the served one (``aisle.index.profile``)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from aisle.index.profile import (
    DAY_S,
    EVENT_TYPES,
    DecayConfig,
    TypeDecay,
    profile_from_events,
)
from aisle.training.timeline import Timeline, pad_histories
from aisle.training.torch_profile import decayed_profiles
from aisle.training.train_data import NextItemCase


def _served(case: NextItemCase, vectors: np.ndarray, config: DecayConfig, timeline: Timeline) -> np.ndarray:
    events, _ = timeline.events(case.history, case.timestamps, case.types, case.now)
    profile = profile_from_events(events, vectors, config)
    assert profile.vector is not None
    return profile.vector


def _trained(cases: list[NextItemCase], vectors: np.ndarray, config: DecayConfig, timeline: Timeline) -> np.ndarray:
    padded = pad_histories(cases, timeline, config)
    table = torch.from_numpy(vectors)
    return decayed_profiles(
        table[torch.from_numpy(padded.rows)],
        torch.from_numpy(padded.log2_weight).float(),
        torch.from_numpy(padded.valid),
    ).numpy()


@pytest.fixture
def vectors() -> np.ndarray:
    rng = np.random.default_rng(7)
    matrix = rng.normal(size=(60, 24)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def test_synthetic_timeline_matches_index_profile(vectors: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    timeline = Timeline(step_s=DAY_S, event_type="purchase", max_events=12)
    config = DecayConfig(purchase=TypeDecay(8.0, 1.5 * DAY_S))
    cases = [
        NextItemCase(str(n), tuple(int(r) for r in rng.integers(0, 60, size=rng.integers(1, 20))), 0) for n in range(40)
    ]
    np.testing.assert_allclose(
        _trained(cases, vectors, config, timeline),
        np.stack([_served(c, vectors, config, timeline) for c in cases]),
        atol=1e-5,
    )


def test_real_times_and_mixed_types_match_index_profile(vectors: np.ndarray) -> None:
    rng = np.random.default_rng(2)
    config = DecayConfig(
        view=TypeDecay(1.0, 0.5 * DAY_S),
        click=TypeDecay(2.5, 2 * DAY_S),
        add_to_cart=TypeDecay(4.0, 5 * DAY_S),
        purchase=TypeDecay(9.0, 40 * DAY_S),
    )
    cases = []
    for n in range(30):
        length = int(rng.integers(1, 15))
        times = np.sort(rng.uniform(0, 60 * DAY_S, size=length))
        cases.append(
            NextItemCase(
                str(n),
                tuple(int(r) for r in rng.integers(0, 60, size=length)),
                1,
                timestamps=tuple(float(t) for t in times),
                types=tuple(str(t) for t in rng.choice(EVENT_TYPES, size=length)),
                now=float(times[-1] + rng.uniform(0, 3 * DAY_S)),
            )
        )
    timeline = Timeline(max_events=50)
    np.testing.assert_allclose(
        _trained(cases, vectors, config, timeline),
        np.stack([_served(c, vectors, config, timeline) for c in cases]),
        atol=1e-5,
    )


def test_without_decay_the_profile_is_the_weighted_mean(vectors: np.ndarray) -> None:
    config = DecayConfig(decay=False)
    case = NextItemCase("u", (3, 5, 5, 9), 0)
    expected = vectors[[3, 5, 5, 9]].sum(axis=0)
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(_trained([case], vectors, config, Timeline())[0], expected, atol=1e-6)


def test_gradients_reach_every_history_item(vectors: np.ndarray) -> None:
    table = torch.from_numpy(vectors[:4].copy()).requires_grad_(True)
    weights = torch.tensor([[-2.0, -1.0, 0.0, float("-inf")]])
    valid = torch.tensor([[True, True, True, False]])
    profile = decayed_profiles(table[None], weights, valid)
    (profile @ table[3]).sum().backward()
    assert table.grad is not None
    assert all(float(table.grad[row].abs().sum()) > 0 for row in range(4))
