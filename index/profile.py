"""User profiles: the recency-decayed, type-weighted average of the vectors of interacted items.

An event of type ``τ`` on item ``i`` at time ``t`` contributes, at time ``now``::

    w(τ) · 2^(−(now − t) / h(τ)) · v(i)

and the profile is the normalised sum of contributions. ``mass`` (the sum of the decayed
weights) measures the evidence behind it; ``personal_share`` turns it into the profile's share of
a blended score.

Two implementations that must agree (within 1e-5, tested): ``profile_from_events`` recomputes
from a list of events, and ``ProfileAccumulator`` maintains the same sum incrementally in O(d)
per event, for events arriving in any time order. The accumulator keeps, per half-life group
``g``, ``S_g = Σ w · 2^((t − ref_g) / h_g) · v`` in float64 relative to a reference time; when a
new event's exponent grows large it rebases ``ref_g`` (multiplying ``S_g`` down), so nothing
overflows however long a profile lives. Everything is computed in log2 space up to the final
scaling, so a profile whose events are all very old still has a direction (its mass tends to 0).

Pure NumPy: ``aisle.training`` evaluates "exactly as served" through this module.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

EVENT_TYPES: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase")
DAY_S = 86_400.0
#: A group is rebased when a new event would scale its sums by more than 2^REBASE_EXPONENT.
REBASE_EXPONENT = 64.0


@dataclass(frozen=True)
class TypeDecay:
    """How much one event type counts and how fast it fades.

    Attributes:
        weight: the contribution of a fresh event (> 0).
        half_life_s: seconds after which the contribution halves (> 0).
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
    """Weights and half-lives per event type.

    Defaults: stronger intent weighs more and is remembered longer (a purchase says more about
    taste than a view, and for longer). ``decay=False`` turns every half-life into infinity: a
    plain weighted average, kept to measure what recency is worth.
    """

    view: TypeDecay = TypeDecay(1.0, 3 * DAY_S)
    click: TypeDecay = TypeDecay(2.0, 3 * DAY_S)
    add_to_cart: TypeDecay = TypeDecay(4.0, 7 * DAY_S)
    purchase: TypeDecay = TypeDecay(8.0, 30 * DAY_S)
    decay: bool = True

    def for_type(self, event_type: str) -> TypeDecay:
        if event_type not in EVENT_TYPES:
            raise ValueError(f"unknown event type '{event_type}'; expected one of {EVENT_TYPES}")
        return getattr(self, event_type)

    def weight(self, event_type: str) -> float:
        return self.for_type(event_type).weight

    def half_life(self, event_type: str) -> float:
        """The half-life in seconds; ``inf`` when decay is switched off."""
        return self.for_type(event_type).half_life_s if self.decay else math.inf

    def log2_weight(self, event_type: str, timestamp: float, now: float) -> float:
        """``log2`` of the event's decayed weight at ``now``."""
        spec = self.for_type(event_type)
        age = 0.0 if not self.decay else (now - timestamp) / spec.half_life_s
        return math.log2(spec.weight) - age

    def decayed_weight(self, event_type: str, timestamp: float, now: float) -> float:
        return exp2(self.log2_weight(event_type, timestamp, now))


@dataclass(frozen=True)
class ProfileEvent:
    """An interaction as the profile sees it: a row of the vector matrix, a type and a time."""

    row: int
    type: str
    timestamp: float


@dataclass(frozen=True)
class ProfileVector:
    """A profile at one moment: the unit vector (None without evidence) and its decayed mass."""

    vector: np.ndarray | None
    mass: float


EMPTY_PROFILE = ProfileVector(None, 0.0)


def exp2(exponent: float) -> float:
    """``2^exponent`` saturating at the float64 range instead of raising ``OverflowError``."""
    return 2.0 ** min(exponent, 1023.0)


def _unit(total: np.ndarray, mass: float) -> ProfileVector:
    norm = float(np.linalg.norm(total))
    if not norm > 0 or not math.isfinite(norm):
        return ProfileVector(None, mass)
    return ProfileVector((total / norm).astype(np.float32), mass)


def profile_from_events(
    events: Iterable[ProfileEvent], vectors: np.ndarray, config: DecayConfig, now: float
) -> ProfileVector:
    """Recomputes a profile from scratch (the reference the accumulator must match).

    Args:
        events: the profile's events; order does not matter.
        vectors: item vectors, one row per item (rows of ``ProfileEvent.row``).
        config: weights and half-lives.
        now: the moment the profile is evaluated at (Unix seconds).
    """
    events = list(events)
    if not events:
        return EMPTY_PROFILE
    exponents = np.array([config.log2_weight(e.type, e.timestamp, now) for e in events])
    top = float(exponents.max())
    scale = np.exp2(exponents - top)
    rows = np.array([e.row for e in events], dtype=np.int64)
    total = scale @ np.asarray(vectors[rows], dtype=np.float64)
    return _unit(total, float(scale.sum()) * exp2(top))


@dataclass
class _Group:
    """Sums of one half-life: ``vector = Σ w·2^((t − ref)/h)·v`` and ``mass = Σ w·2^((t − ref)/h)``."""

    half_life: float
    ref: float
    vector: np.ndarray
    mass: float = 0.0


@dataclass
class ProfileAccumulator:
    """The incremental form of ``profile_from_events``: O(d) per event, any arrival order.

    Attributes:
        dim: vector dimension.
        config: weights and half-lives (fixed for the accumulator's life).
    """

    dim: int
    config: DecayConfig = field(default_factory=DecayConfig)
    _groups: dict[float, _Group] = field(default_factory=dict, repr=False)
    events: int = 0

    def add(self, vector: np.ndarray, event_type: str, timestamp: float) -> None:
        """Adds one event's contribution (``vector`` is the item's unit vector)."""
        half_life = self.config.half_life(event_type)
        weight = self.config.weight(event_type)
        group = self._groups.get(half_life)
        if group is None:
            group = _Group(half_life, timestamp, np.zeros(self.dim, dtype=np.float64))
            self._groups[half_life] = group
        exponent = 0.0 if math.isinf(half_life) else (timestamp - group.ref) / half_life
        if exponent > REBASE_EXPONENT:
            # Move the reference to this event so that the sums stay far from overflow.
            shrink = 2.0**-exponent
            group.vector *= shrink
            group.mass *= shrink
            group.ref = timestamp
            exponent = 0.0
        factor = weight * 2.0**exponent
        group.vector += factor * np.asarray(vector, dtype=np.float64)
        group.mass += factor
        self.events += 1

    def merge(self, other: ProfileAccumulator) -> None:
        """Adds every event of ``other`` (same dimension and config) in O(d) per half-life group."""
        if other.dim != self.dim or other.config != self.config:
            raise ValueError("cannot merge profiles of different dimensions or decay settings")
        for key, theirs in other._groups.items():
            mine = self._groups.get(key)
            if mine is None:
                self._groups[key] = _Group(theirs.half_life, theirs.ref, theirs.vector.copy(), theirs.mass)
                continue
            # Align both on the later reference: the factors are <= 1, so nothing can overflow.
            ref = max(mine.ref, theirs.ref)
            if math.isinf(mine.half_life):
                mine_factor = theirs_factor = 1.0
            else:
                mine_factor = 2.0 ** ((mine.ref - ref) / mine.half_life)
                theirs_factor = 2.0 ** ((theirs.ref - ref) / mine.half_life)
            mine.vector *= mine_factor
            mine.vector += theirs_factor * theirs.vector
            mine.mass = mine.mass * mine_factor + theirs.mass * theirs_factor
            mine.ref = ref
        self.events += other.events

    def scaled_sum(self, now: float) -> tuple[np.ndarray, float, float]:
        """``(vector, mass, log2_scale)``: the true sums are ``vector·2^s`` and ``mass·2^s``.

        Keeping the scale apart lets callers combine accumulators (a user and a session) and
        normalise without underflow, however old the events are.
        """
        if not self._groups:
            return np.zeros(self.dim, dtype=np.float64), 0.0, 0.0
        exponents = {
            key: 0.0 if math.isinf(g.half_life) else (g.ref - now) / g.half_life for key, g in self._groups.items()
        }
        top = max(exponents.values())
        vector = np.zeros(self.dim, dtype=np.float64)
        mass = 0.0
        for key, group in self._groups.items():
            factor = 2.0 ** (exponents[key] - top)
            vector += factor * group.vector
            mass += factor * group.mass
        return vector, mass, top

    def profile(self, now: float) -> ProfileVector:
        """The profile at ``now``, as ``profile_from_events`` over the same events would give."""
        return combine_profiles([self], now)

    def mass(self, now: float) -> float:
        _, mass, scale = self.scaled_sum(now)
        return mass * exp2(scale)


def combine_profiles(accumulators: Sequence[ProfileAccumulator], now: float) -> ProfileVector:
    """The profile of the union of several accumulators' events (e.g. a user and a session)."""
    parts = [acc.scaled_sum(now) for acc in accumulators if acc.events]
    if not parts:
        return EMPTY_PROFILE
    top = max(scale for _, _, scale in parts)
    total = sum(vector * 2.0 ** (scale - top) for vector, _, scale in parts)
    mass = sum(m * 2.0 ** (scale - top) for _, m, scale in parts) * exp2(top)
    return _unit(np.asarray(total), float(mass))


#: The profile's largest share of a search (or similar-items) score. Tuned on MovieLens tag
#: searches (even case positions; odd ones held out): small shares raised MRR, large ones lost it,
#: since a query says more than a profile averaged over many items.
SEARCH_CAP = 0.1


def personal_share(mass: float, *, cap: float = SEARCH_CAP, half_mass: float = 4.0) -> float:
    """The profile's share of a blended score: grows with the evidence, never above ``cap``.

    ``cap · mass / (mass + half_mass)``: no history gives 0, ``half_mass`` (e.g. four fresh
    views, or half a fresh purchase with the default weights) gives half the cap, and it
    approaches the cap smoothly: no hard switch between anonymous and personal ranking.
    Recommendations pass their own, larger cap (``recommend_profile_cap``).
    """
    if not mass > 0 or not math.isfinite(mass):
        return 0.0 if not mass > 0 else cap
    return cap * mass / (mass + half_mass)
