"""User profiles: the recency-weighted, type-weighted average of the vectors of interacted items.

The ``i``-th of a customer's events (in arrival order), of type ``τ`` on item ``v_i`` at time
``t_i``, contributes::

    w(τ) · 2^(−(A − A_i) / H) · 2^(−(T − t_i) / h(τ)) · v_i

where ``A_i`` is the activity clock after the event, ``A`` its current value, ``H`` the activity
half-life, ``T`` the customer's latest event time and ``h(τ)`` the gap half-life (see
``decay``). The profile is the normalised sum; ``mass`` (the sum of the weights) measures the
evidence behind it and ``personal_share`` turns it into the profile's share of a blended score.
Neither depends on the wall clock: ``last_ts`` says how long the customer has been away.

Two implementations must agree (within float16 rounding of the stored sums, tested): ``profile_from_events`` recomputes from a
list of events, and ``ProfileAccumulator`` maintains the same sum in O(d) per event. The
accumulator keeps, per gap half-life ``h``, ``S = Σ w · 2^((A_i − a)/H + (t_i − r)/h) · v`` in
float64 relative to reference points ``(a, r)``, rebased when a new exponent grows large, so
nothing overflows however long a profile lives. Events may arrive out of time order (the gap
clock is exact); the activity clock follows arrival order, which the event log's replay keeps.

Pure NumPy: ``aisle.training`` evaluates "exactly as served" through this module.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from aisle.index.profile.decay import REBASE_EXPONENT, DecayConfig, exp2


@dataclass(frozen=True)
class ProfileEvent:
    """An interaction as the profile sees it: a row of the vector matrix, a type and a time."""

    row: int
    type: str
    timestamp: float


@dataclass(frozen=True)
class ProfileVector:
    """A profile: the unit vector (None without evidence), its mass and the latest event time."""

    vector: np.ndarray | None
    mass: float
    last_ts: float | None = None


EMPTY_PROFILE = ProfileVector(None, 0.0)


def _unit(total: np.ndarray, mass: float, last_ts: float | None) -> ProfileVector:
    norm = float(np.linalg.norm(total))
    if not norm > 0 or not math.isfinite(norm):
        return ProfileVector(None, mass, last_ts)
    return ProfileVector((total / norm).astype(np.float32), mass, last_ts)


def event_log2_weights(events: Sequence[ProfileEvent], config: DecayConfig) -> np.ndarray:
    """``log2`` of every event's weight in the profile, events in arrival order."""
    if not events:
        return np.empty(0)
    steps = np.array([config.step(e.type) for e in events])
    clock = np.cumsum(steps)
    latest = max(e.timestamp for e in events)
    activity = config.activity()
    out = np.array([math.log2(config.weight(e.type)) for e in events])
    if math.isfinite(activity):
        out -= (clock[-1] - clock) / activity
    for position, event in enumerate(events):
        half_life = config.half_life(event.type)
        if math.isfinite(half_life):
            out[position] -= (latest - event.timestamp) / half_life
    return out


def profile_from_events(events: Iterable[ProfileEvent], vectors: np.ndarray, config: DecayConfig) -> ProfileVector:
    """Recomputes a profile from scratch (the reference the accumulator must match).

    Args:
        events: the profile's events in arrival order.
        vectors: item vectors, one row per item (rows of ``ProfileEvent.row``).
        config: weights and half-lives.
    """
    events = list(events)
    if not events:
        return EMPTY_PROFILE
    exponents = event_log2_weights(events, config)
    top = float(exponents.max())
    scale = np.exp2(exponents - top)
    rows = np.array([e.row for e in events], dtype=np.int64)
    total = scale @ np.asarray(vectors[rows], dtype=np.float64)
    return _unit(total, float(scale.sum()) * exp2(top), max(e.timestamp for e in events))


@dataclass(slots=True)
class _Group:
    """Sums of one gap half-life relative to the reference point ``(clock_ref, time_ref)``.

    The vector sum is kept compact: float16 components times one float64 ``scale`` (the
    largest magnitude), a quarter of float64's memory per profile with a relative error near
    2^-11 per component, far below what separates two items in a ranking.
    """

    half_life: float
    clock_ref: float
    time_ref: float
    packed: np.ndarray
    scale: float = 0.0
    mass: float = 0.0

    @classmethod
    def empty(cls, half_life: float, clock_ref: float, time_ref: float, dim: int) -> _Group:
        return cls(half_life, clock_ref, time_ref, np.zeros(dim, dtype=np.float16))

    @property
    def vector(self) -> np.ndarray:
        """The vector sum in float64."""
        return self.packed.astype(np.float64) * self.scale

    def store(self, vector: np.ndarray) -> None:
        peak = float(np.max(np.abs(vector))) if len(vector) else 0.0
        if not peak > 0 or not math.isfinite(peak):
            self.packed[:] = 0
            self.scale = 0.0
            return
        self.packed = (vector / peak).astype(np.float16)
        self.scale = peak

    def exponent(self, clock: float, timestamp: float, activity: float) -> float:
        """``log2`` of the factor of a point ``(clock, timestamp)`` relative to the reference."""
        out = 0.0 if math.isinf(activity) else (clock - self.clock_ref) / activity
        return out + (0.0 if math.isinf(self.half_life) else (timestamp - self.time_ref) / self.half_life)


@dataclass(slots=True)
class ProfileAccumulator:
    """The incremental form of ``profile_from_events``: O(d) per event.

    Attributes:
        dim: vector dimension.
        config: weights and half-lives (fixed for the accumulator's life).
        clock: the activity clock (steps taken so far).
        last_ts: the latest event time (``-inf`` when empty).
    """

    dim: int
    config: DecayConfig = field(default_factory=DecayConfig)
    _groups: dict[float, _Group] = field(default_factory=dict, repr=False)
    events: int = 0
    clock: float = 0.0
    last_ts: float = -math.inf

    def add(self, vector: np.ndarray, event_type: str, timestamp: float) -> None:
        """Adds one event's contribution (``vector`` is the item's unit vector)."""
        half_life = self.config.half_life(event_type)
        self.clock += self.config.step(event_type)
        group = self._groups.get(half_life)
        if group is None:
            group = _Group.empty(half_life, self.clock, timestamp, self.dim)
            self._groups[half_life] = group
        exponent = group.exponent(self.clock, timestamp, self.config.activity())
        if exponent > REBASE_EXPONENT:
            # Move the reference to this event so that the sums stay far from overflow.
            shrink = 2.0**-exponent
            group.scale *= shrink
            group.mass *= shrink
            group.clock_ref, group.time_ref = self.clock, timestamp
            exponent = 0.0
        factor = self.config.weight(event_type) * 2.0**exponent
        group.store(group.vector + factor * np.asarray(vector, dtype=np.float64))
        group.mass += factor
        self.events += 1
        self.last_ts = max(self.last_ts, timestamp)

    def merge(self, other: ProfileAccumulator) -> None:
        """Appends every event of ``other`` (same dimension and config) after this one's.

        On the activity clock, ``other``'s events count as having happened after all of this
        accumulator's (a session's anonymous browsing joins its user at login); the gap clock
        is exact.
        """
        if other.dim != self.dim or other.config != self.config:
            raise ValueError("cannot merge profiles of different dimensions or decay settings")
        activity = self.config.activity()
        shift = self.clock
        for key, theirs in other._groups.items():
            mine = self._groups.get(key)
            theirs_clock = theirs.clock_ref + shift
            if mine is None:
                self._groups[key] = _Group(
                    theirs.half_life, theirs_clock, theirs.time_ref, theirs.packed.copy(), theirs.scale, theirs.mass
                )
                continue
            # Align both on the later reference point: the factors are <= 1, nothing overflows.
            clock_ref, time_ref = max(mine.clock_ref, theirs_clock), max(mine.time_ref, theirs.time_ref)
            aligned = _Group.empty(mine.half_life, clock_ref, time_ref, 0)
            mine_factor = 2.0 ** aligned.exponent(mine.clock_ref, mine.time_ref, activity)
            theirs_factor = 2.0 ** aligned.exponent(theirs_clock, theirs.time_ref, activity)
            mine.store(mine.vector * mine_factor + theirs.vector * theirs_factor)
            mine.mass = mine.mass * mine_factor + theirs.mass * theirs_factor
            mine.clock_ref, mine.time_ref = clock_ref, time_ref
        self.clock += other.clock
        self.events += other.events
        self.last_ts = max(self.last_ts, other.last_ts)

    def scaled_sum(self, latest: float | None = None) -> tuple[np.ndarray, float, float]:
        """``(vector, mass, log2_scale)``: the true sums are ``vector·2^s`` and ``mass·2^s``.

        ``latest``: the time the gap clock counts back from (default: this accumulator's latest
        event; a later one when combined with another accumulator). Keeping the scale apart
        lets callers combine accumulators and normalise without underflow.
        """
        if not self._groups:
            return np.zeros(self.dim, dtype=np.float64), 0.0, 0.0
        latest = self.last_ts if latest is None else latest
        activity = self.config.activity()
        exponents = {key: -g.exponent(self.clock, latest, activity) for key, g in self._groups.items()}
        top = max(exponents.values())
        vector = np.zeros(self.dim, dtype=np.float64)
        mass = 0.0
        for key, group in self._groups.items():
            factor = 2.0 ** (exponents[key] - top)
            vector += factor * group.vector
            mass += factor * group.mass
        return vector, mass, top

    def profile(self) -> ProfileVector:
        """The profile, as ``profile_from_events`` over the same events would give."""
        return combine_profiles([self])

    def mass(self) -> float:
        _, mass, scale = self.scaled_sum()
        return mass * exp2(scale)

    def nbytes(self) -> int:
        """Memory held by the sums (for the per-profile memory budget)."""
        return sum(group.packed.nbytes for group in self._groups.values())


def combine_profiles(accumulators: Sequence[ProfileAccumulator]) -> ProfileVector:
    """The profile of the union of several accumulators' events (e.g. a user and a session).

    Each keeps its own activity clock; the gap clock counts back from the latest event of all.
    """
    active = [acc for acc in accumulators if acc.events]
    if not active:
        return EMPTY_PROFILE
    latest = max(acc.last_ts for acc in active)
    parts = [acc.scaled_sum(latest) for acc in active]
    top = max(scale for _, _, scale in parts)
    total = sum(vector * 2.0 ** (scale - top) for vector, _, scale in parts)
    mass = sum(m * 2.0 ** (scale - top) for _, m, scale in parts) * exp2(top)
    return _unit(np.asarray(total), float(mass), latest)


#: The profile's largest share of a search (or similar-items) score. Tuned on MovieLens tag
#: searches (even case positions; odd ones held out): a query says more than a profile
#: averaged over many items.
SEARCH_CAP = 0.1


def personal_share(mass: float, *, cap: float = SEARCH_CAP, half_mass: float = 4.0) -> float:
    """The profile's share of a blended score: grows with the evidence, never above ``cap``.

    ``cap · mass / (mass + half_mass)``: no history gives 0, ``half_mass`` gives half the cap,
    and it approaches the cap smoothly: no hard switch between anonymous and personal ranking.
    Recommendations pass their own, larger cap (``recommend_profile_cap``).
    """
    if not mass > 0 or not math.isfinite(mass):
        return 0.0 if not mass > 0 else cap
    return cap * mass / (mass + half_mass)


def freshness(idle_s: float, half_life_s: float, floor: float) -> float:
    """How much of its share a profile keeps after ``idle_s`` seconds without any event.

    ``floor + (1 − floor) · 2^(−idle / half_life)``: staleness lowers a returning customer's
    share against popular items, never below ``floor`` (their profile is never erased).
    """
    if not idle_s > 0 or math.isinf(half_life_s):
        return 1.0
    return floor + (1.0 - floor) * 2.0 ** (-idle_s / half_life_s)
