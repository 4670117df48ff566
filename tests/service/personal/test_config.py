"""Personalization settings: defaults agree with the service settings; bad values fail clearly."""

from __future__ import annotations

import pytest

from aisle.index.profile import DAY_S, DecayConfig
from aisle.service.personal.config import PersonalConfig, decay_from_overrides
from aisle.service.settings import ServiceSettings


def test_defaults_are_the_settings_defaults() -> None:
    assert PersonalConfig.from_settings(ServiceSettings()) == PersonalConfig()


def test_overrides_replace_only_what_they_name() -> None:
    config = decay_from_overrides({"purchase": 10}, {"view": 3600}, decay=True)
    assert config.purchase.weight == 10 and config.purchase.half_life_s == DecayConfig().purchase.half_life_s
    assert config.view.half_life_s == 3600 and config.view.weight == 1.0
    assert decay_from_overrides({}, {}, decay=False).half_life("view") == float("inf")


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AISLE_HALF_LIVES_S", '{"purchase": 86400}')
    monkeypatch.setenv("AISLE_DECAY", "false")
    monkeypatch.setenv("AISLE_RECOMMEND_EXCLUDE", "none")
    config = PersonalConfig.from_settings(ServiceSettings())
    assert config.decay.purchase.half_life_s == DAY_S and config.decay.decay is False
    assert config.exclude == "none"


@pytest.mark.parametrize(
    ("weights", "half_lives", "message"),
    [
        ({"like": 2}, {}, "unknown event types"),
        ({}, {"purchase": 0}, "half-life must be positive"),
        ({"view": -1}, {}, "weight must be a positive"),
    ],
)
def test_bad_values_name_the_setting(weights, half_lives, message) -> None:
    with pytest.raises(ValueError, match=message):
        decay_from_overrides(weights, half_lives)
