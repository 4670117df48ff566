"""The settings training and evaluation read: the shared ones plus the profile decay.

The service reads the same keys (``event_weights``, ``half_lives_s``, ``decay`` in the YAML
settings file or ``AISLE_*`` variables); reading them here, rather than importing the service's
settings class, keeps ``aisle.training`` independent of ``aisle.service`` while evaluating and training with
exactly the decay the service will apply.
"""

from __future__ import annotations

from dataclasses import replace

from pydantic import Field

from aisle.index.profile import EVENT_TYPES, DecayConfig, TypeDecay
from aisle.settings import AisleSettings


class TrainingSettings(AisleSettings):
    """``AisleSettings`` plus the profile's per-type weights and half-lives."""

    event_weights: dict[str, float] = Field(default_factory=dict, description="Weight per event type.")
    half_lives_s: dict[str, float] = Field(default_factory=dict, description="Half-life per event type, seconds.")
    decay: bool = Field(True, description="Recency decay of profiles.")

    def decay_config(self) -> DecayConfig:
        """``DecayConfig`` defaults with the configured weights and half-lives on top.

        Raises:
            ValueError: an unknown event type or a non-positive value, named.
        """
        return decay_config(self.event_weights, self.half_lives_s, self.decay)


def decay_config(weights: dict[str, float], half_lives: dict[str, float], decay: bool = True) -> DecayConfig:
    """``DecayConfig`` with the given overrides (unknown types refused)."""
    for name, values in (("event_weights", weights), ("half_lives_s", half_lives)):
        unknown = sorted(set(values) - set(EVENT_TYPES))
        if unknown:
            raise ValueError(f"{name}: unknown event types {unknown}; expected some of {list(EVENT_TYPES)}")
    base = DecayConfig()
    changes = {
        kind: TypeDecay(
            float(weights.get(kind, base.for_type(kind).weight)),
            float(half_lives.get(kind, base.for_type(kind).half_life_s)),
        )
        for kind in EVENT_TYPES
    }
    return replace(base, decay=decay, **changes)
