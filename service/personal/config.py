"""The personalization settings of a running service, validated once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

from aisle.index.profile import DAY_S, EVENT_TYPES, DecayConfig, TypeDecay

if TYPE_CHECKING:
    from aisle.service.settings import ServiceSettings

Exclusion = Literal["none", "purchased", "interacted"]


@dataclass(frozen=True)
class PersonalConfig:
    """How events become profiles, popularity, co-occurrence and recommendations.

    Attributes:
        decay: per-type weights and half-lives of profiles.
        popularity_half_life_s: half-life of the popular-items counts.
        half_mass: decayed evidence at which the profile gets half of its maximum share.
        profile_cap: the profile's largest share of a recommendation score.
        bought_together_weight: weight of co-occurrence in recommendation scores.
        bought_together_window_s: events of one actor this close in time pair up.
        exclude: items left out of recommendations (none, recent purchases, all interacted).
        purchase_window_s: how long a purchase counts as recent.
    """

    decay: DecayConfig = field(default_factory=DecayConfig)
    popularity_half_life_s: float = 7 * DAY_S
    half_mass: float = 4.0
    profile_cap: float = 0.9
    bought_together_weight: float = 0.4
    bought_together_window_s: float = DAY_S
    exclude: Exclusion = "purchased"
    purchase_window_s: float = 30 * DAY_S

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> PersonalConfig:
        """Reads the settings; unknown event types or non-positive values fail with a clear message.

        Raises:
            ValueError: names the setting and the offending key or value.
        """
        return cls(
            decay=decay_from_overrides(settings.event_weights, settings.half_lives_s, settings.decay),
            popularity_half_life_s=settings.popularity_half_life_s,
            half_mass=settings.personal_half_mass,
            profile_cap=settings.recommend_profile_cap,
            bought_together_weight=settings.bought_together_weight,
            bought_together_window_s=settings.bought_together_window_s,
            exclude=settings.recommend_exclude,
            purchase_window_s=settings.purchase_exclusion_days * DAY_S,
        )


def decay_from_overrides(weights: dict[str, float], half_lives: dict[str, float], decay: bool = True) -> DecayConfig:
    """``DecayConfig`` defaults with the given per-type weights and half-lives on top."""
    for name, values in (("event_weights", weights), ("half_lives_s", half_lives)):
        unknown = sorted(set(values) - set(EVENT_TYPES))
        if unknown:
            raise ValueError(f"{name}: unknown event types {unknown}; expected some of {list(EVENT_TYPES)}")
    base = DecayConfig()
    changes: dict[str, TypeDecay] = {}
    for event_type in EVENT_TYPES:
        spec = base.for_type(event_type)
        try:
            changes[event_type] = TypeDecay(
                float(weights.get(event_type, spec.weight)), float(half_lives.get(event_type, spec.half_life_s))
            )
        except ValueError as exc:
            raise ValueError(f"settings for event type '{event_type}': {exc}") from None
    return replace(base, decay=decay, **changes)
