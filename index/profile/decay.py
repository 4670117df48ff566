"""How much an event counts in a profile, and for how long: weights and two clocks.

An event's weight fades with the customer's own activity, not with the wall clock:

* the **activity clock** advances by one step per event, scaled by the event type's weight
  (``weight / heaviest weight``: a purchase is a full step, a view an eighth of one with the
  default weights), and an event loses half its weight every ``activity_half_life`` steps taken
  after it. What a customer did last counts most whether they buy daily or twice a year.
* the **gap clock** is time measured back from the customer's latest event: an event loses half
  its weight every ``half_life_s`` (per type) between it and that latest event. Long pauses
  between purchases fade the purchases before the pause; a pause after the latest event fades
  nothing, so a customer who returns after months gets their profile back.

Staleness (the time since the latest event) is the consumers' business: it may lower the
profile's share against popular items (``freshness``), never the profile itself.

The per-type overrides of the settings files are parsed here, once (``decay_from_overrides``),
for the service and for training alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

EVENT_TYPES: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase")
DAY_S = 86_400.0
#: A sum is rebased when a new event would scale it by more than 2^REBASE_EXPONENT.
REBASE_EXPONENT = 64.0


def exp2(exponent: float) -> float:
    """``2^exponent`` saturating at the float64 range instead of raising ``OverflowError``."""
    return 2.0 ** min(exponent, 1023.0)


def log2_add(a: float, b: float) -> float:
    """``log2(2^a + 2^b)`` without overflow."""
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    top = max(a, b)
    return top + math.log2(2.0 ** (a - top) + 2.0 ** (b - top))


@dataclass(frozen=True)
class TypeDecay:
    """How much one event type counts and how fast it fades on the gap clock.

    Attributes:
        weight: the contribution of a fresh event (> 0).
        half_life_s: seconds, counted back from the customer's latest event, after which the
            contribution halves (> 0).
    """

    weight: float
    half_life_s: float

    def __post_init__(self) -> None:
        if not (self.weight > 0 and math.isfinite(self.weight)):
            raise ValueError(f"event weight must be a positive number, got {self.weight}")
        if not self.half_life_s > 0:
            raise ValueError(f"half-life must be positive, got {self.half_life_s}")


@dataclass(frozen=True)
class DecayConfig:
    """Weights, gap half-lives per event type, and the activity half-life.

    Defaults: stronger intent weighs more and is remembered longer. ``decay=False`` turns every
    half-life into infinity: a plain weighted average, kept to measure what recency is worth.
    The defaults were chosen on the Amazon Scientific train split at one-day and thirty-day
    cadences (``benchmarks/results/recsys.json``).
    """

    view: TypeDecay = TypeDecay(1.0, 3 * DAY_S)
    click: TypeDecay = TypeDecay(2.0, 3 * DAY_S)
    add_to_cart: TypeDecay = TypeDecay(4.0, 7 * DAY_S)
    purchase: TypeDecay = TypeDecay(8.0, 365 * DAY_S)
    activity_half_life: float = 2.0
    decay: bool = True

    def __post_init__(self) -> None:
        if not self.activity_half_life > 0:
            raise ValueError(f"activity half-life must be positive, got {self.activity_half_life}")

    def for_type(self, event_type: str) -> TypeDecay:
        if event_type not in EVENT_TYPES:
            raise ValueError(f"unknown event type '{event_type}'; expected one of {EVENT_TYPES}")
        return getattr(self, event_type)

    def weight(self, event_type: str) -> float:
        return self.for_type(event_type).weight

    def half_life(self, event_type: str) -> float:
        """The gap half-life in seconds; ``inf`` when decay is switched off."""
        return self.for_type(event_type).half_life_s if self.decay else math.inf

    def activity(self) -> float:
        """The activity half-life in steps; ``inf`` when decay is switched off."""
        return self.activity_half_life if self.decay else math.inf

    def step(self, event_type: str) -> float:
        """How far one event of this type moves the activity clock (the heaviest type: 1)."""
        heaviest = max(self.for_type(kind).weight for kind in EVENT_TYPES)
        return self.weight(event_type) / heaviest


def decay_from_overrides(
    weights: Mapping[str, float],
    half_lives: Mapping[str, float],
    decay: bool = True,
    activity_half_life: float | None = None,
) -> DecayConfig:
    """``DecayConfig`` defaults with the given per-type weights and half-lives on top.

    The one parser of the ``event_weights`` / ``half_lives_s`` settings (service and training).

    Raises:
        ValueError: names the setting and the offending event type or value.
    """
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
    activity = base.activity_half_life if activity_half_life is None else float(activity_half_life)
    try:
        return replace(base, decay=decay, activity_half_life=activity, **changes)
    except ValueError as exc:
        raise ValueError(f"activity_half_life: {exc}") from None
