"""Personalization's pure math and state: decay, profile vectors, per-user state, comparability.

One place for what the service serves and training evaluates "exactly as served":

* ``decay``: event weights, the activity and gap clocks, and the one parser of the overrides;
* ``vector``: profile vectors (recomputed and incremental) and the profile's share of a score;
* ``state``: what is kept per user and per session;
* ``binding``: the index version a profile's rows and vectors belong to, and the one check of
  whether a profile is comparable with a served version.
"""

from aisle.index.profile.binding import SpaceBinding
from aisle.index.profile.decay import (
    DAY_S,
    EVENT_TYPES,
    REBASE_EXPONENT,
    DecayConfig,
    TypeDecay,
    decay_from_overrides,
    exp2,
    log2_add,
)
from aisle.index.profile.vector import (
    EMPTY_PROFILE,
    SEARCH_CAP,
    ProfileAccumulator,
    ProfileEvent,
    ProfileVector,
    combine_profiles,
    event_log2_weights,
    freshness,
    personal_share,
    profile_from_events,
)

__all__ = [
    "DAY_S",
    "EMPTY_PROFILE",
    "EVENT_TYPES",
    "REBASE_EXPONENT",
    "SEARCH_CAP",
    "DecayConfig",
    "ProfileAccumulator",
    "ProfileEvent",
    "ProfileVector",
    "SpaceBinding",
    "TypeDecay",
    "combine_profiles",
    "decay_from_overrides",
    "event_log2_weights",
    "exp2",
    "freshness",
    "log2_add",
    "personal_share",
    "profile_from_events",
]
