"""The personalization settings of a running service, validated once at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from aisle.index.profile import DAY_S, DecayConfig, decay_from_overrides

if TYPE_CHECKING:
    from aisle.service.settings import ServiceSettings

Exclusion = Literal["none", "purchased", "interacted"]


@dataclass(frozen=True)
class PersonalConfig:
    """How events become profiles, popularity, co-occurrence and recommendations.

    Attributes:
        decay: per-type weights, gap half-lives and the activity half-life of profiles.
        popularity_half_life_s: half-life of the popular-items counts.
        half_mass: evidence at which the profile gets half of its maximum share.
        profile_cap: the profile's largest share of a recommendation score.
        idle_half_life_s: staleness half-life of the profile's share (``freshness``).
        idle_floor: the least fraction of its share a stale profile keeps.
        bought_together_weight: weight of co-occurrence in recommendation scores.
        bought_together_window_s: events of one actor this close in time form a basket.
        bought_after_half_life: sequence pairs halve every this many events in between.
        bought_before_weight: weight of the reverse direction of a sequence pair.
        second_order_weight: weight of the partners' partners in recommendations' co-occurrence
            scores (``CoOccurrence.scores``); 0 turns them off.
        together_exponent: recommendations raise the co-occurrence scores (best 1) to this
            power: below 1 lifts the weaker partners that fill ranks 11-50.
        lexical_weight: weight of the BM25 match between a candidate and the titles of the
            customer's ``lexical_items`` strongest items, added to the profile's cosine.
        lexical_items: how many items lend their titles to that match.
        variant_similarity: cosine above which a candidate is a variant of a recent purchase.
        variant_hold_s: how long after a purchase its variants are held back.
        cart_window_s: how long an item added to the cart (and not bought) is in the cart.
        search_together_weight: weight of the user's bought-with (and bought-after) items in search.
        similar_together_weight: the same in similar items (a product page is about its product).
        session_ttl_s: anonymous sessions idle this long are forgotten.
        max_sessions: at most this many sessions are kept in memory (least recently used leave first).
        max_profiles: at most this many user profiles (and as many actors' recent histories) are
            kept in memory; the least recently used leave first and are read back from the
            event log when next needed.
        exclude: items left out of recommendations (none, recent purchases, all interacted).
        purchase_window_s: how long a purchase counts as recent.
        collaborative_weight: weight of the served model's collaborative next-item score.
        collaborative_temperature: how flat that score falls from the best item.
    """

    decay: DecayConfig = field(default_factory=DecayConfig)
    popularity_half_life_s: float = 30 * DAY_S
    half_mass: float = 4.0
    profile_cap: float = 0.9
    idle_half_life_s: float = 365 * DAY_S
    idle_floor: float = 0.8
    bought_together_weight: float = 0.3
    bought_together_window_s: float = 3600.0
    bought_after_half_life: float = 2.0
    bought_before_weight: float = 0.5
    second_order_weight: float = 1.0
    together_exponent: float = 0.5
    lexical_weight: float = 0.3
    lexical_items: int = 10
    variant_similarity: float = 0.9
    variant_hold_s: float = 30 * DAY_S
    cart_window_s: float = 7 * DAY_S
    #: Chosen on the even half of the MovieLens tag searches replayed in time order
    #: (``benchmarks/results/recsys.json``, ``DECISIONS.md``).
    search_together_weight: float = 0.5
    similar_together_weight: float = 0.1
    session_ttl_s: float = 30 * DAY_S
    max_sessions: int = 100_000
    max_profiles: int = 100_000
    exclude: Exclusion = "purchased"
    purchase_window_s: float = 3650 * DAY_S
    collaborative_weight: float = 1.0
    collaborative_temperature: float = 1.0

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> PersonalConfig:
        """Reads the settings; unknown event types or non-positive values fail with a clear message.

        Raises:
            ValueError: names the setting and the offending key or value.
        """
        return cls(
            decay=decay_from_overrides(
                settings.event_weights, settings.half_lives_s, settings.decay, settings.activity_half_life
            ),
            popularity_half_life_s=settings.popularity_half_life_s,
            half_mass=settings.personal_half_mass,
            profile_cap=settings.recommend_profile_cap,
            idle_half_life_s=settings.profile_idle_half_life_s,
            idle_floor=settings.profile_idle_floor,
            bought_together_weight=settings.bought_together_weight,
            bought_together_window_s=settings.bought_together_window_s,
            bought_after_half_life=settings.bought_after_half_life,
            bought_before_weight=settings.bought_before_weight,
            second_order_weight=settings.second_order_weight,
            together_exponent=settings.together_exponent,
            lexical_weight=settings.recommend_lexical_weight,
            lexical_items=settings.recommend_lexical_items,
            variant_similarity=settings.variant_similarity,
            variant_hold_s=settings.variant_hold_days * DAY_S,
            cart_window_s=settings.cart_window_s,
            search_together_weight=settings.search_together_weight,
            similar_together_weight=settings.similar_together_weight,
            session_ttl_s=settings.session_ttl_days * DAY_S,
            max_sessions=settings.max_sessions,
            max_profiles=settings.max_profiles,
            exclude=settings.recommend_exclude,
            purchase_window_s=settings.purchase_exclusion_days * DAY_S,
            collaborative_weight=settings.collaborative_weight,
            collaborative_temperature=settings.collaborative_temperature,
        )
