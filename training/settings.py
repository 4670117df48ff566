"""The settings training and evaluation read: the shared ones plus the profile decay.

The service reads the same keys (``event_weights``, ``half_lives_s``, ``decay`` in the YAML
settings file or ``AISLE_*`` variables); reading them here, rather than importing the service's
settings class, keeps ``aisle.training`` independent of ``aisle.service`` while evaluating and training with
exactly the decay the service will apply.
"""

from __future__ import annotations

from pydantic import Field

from aisle.index.profile import DecayConfig, decay_from_overrides
from aisle.settings import AisleSettings


class TrainingSettings(AisleSettings):
    """``AisleSettings`` plus the profile's per-type weights and half-lives."""

    event_weights: dict[str, float] = Field(default_factory=dict, description="Weight per event type.")
    half_lives_s: dict[str, float] = Field(default_factory=dict, description="Half-life per event type, seconds.")
    decay: bool = Field(True, description="Recency decay of profiles.")
    activity_half_life: float | None = Field(None, gt=0, description="Activity half-life of profiles, in steps.")

    def decay_config(self) -> DecayConfig:
        """``DecayConfig`` defaults with the configured weights and half-lives on top.

        Raises:
            ValueError: an unknown event type or a non-positive value, named.
        """
        return decay_from_overrides(self.event_weights, self.half_lives_s, self.decay, self.activity_half_life)
