"""Service settings (pydantic-settings): every ``AISLE_*`` variable and config-file key."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from aisle.service.experiments.config import ExperimentConfig, check_unique_names
from aisle.settings import AisleSettings


class ServiceSettings(AisleSettings):
    """Settings of ``aisle serve``; the shared index/model settings are inherited."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    api_key: str | None = Field(None, description="Required in X-API-Key on write and admin routes when set.")
    data_dir: Path = Field(Path("aisle-data"), description="Where events and profiles are stored.")
    workers: int = Field(
        1,
        ge=1,
        le=256,
        description="Worker processes of aisle serve, each pinned to its own core when there are enough.",
    )
    # Events, profiles and recommendations (index.profile, service.events, service.personal).
    event_weights: dict[str, float] = Field(
        default_factory=dict,
        description="Event type → weight, over the defaults view 1, click 2, add_to_cart 4, purchase 8.",
    )
    half_lives_s: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Event type → profile half-life in seconds, counted back from the customer's latest event "
            "(not the wall clock), over index.profile.DecayConfig's defaults."
        ),
    )
    activity_half_life: float | None = Field(
        None,
        gt=0,
        description=(
            "Steps of the customer's own activity (a purchase is one step, lighter events a fraction) "
            "after which an event's weight in the profile halves (None: index.profile.DecayConfig's default)."
        ),
    )
    profile_idle_half_life_s: float = Field(
        365 * 86400,
        gt=0,
        description="Time since a customer's latest event after which the profile's share loses half of what staleness may take.",
    )
    profile_idle_floor: float = Field(
        0.8,
        ge=0,
        le=1,
        description="The least share a stale profile keeps, as a fraction of a fresh one's: a returning customer is never anonymous.",
    )
    decay: bool = Field(
        True, description="Recency decay of profiles and popularity; false gives plain weighted averages."
    )
    popularity_half_life_s: float = Field(30 * 86400, gt=0, description="Half-life of the popular-items counts.")
    personal_half_mass: float = Field(
        4.0, gt=0, description="Decayed evidence at which the profile takes half of its maximum share of a score."
    )
    recommend_profile_cap: float = Field(
        0.9,
        ge=0,
        le=1,
        description="Largest share of a recommendation score the profile takes; popularity keeps the rest.",
    )
    bought_together_weight: float = Field(
        0.3, ge=0, le=10, description="Weight of 'frequently bought together' in recommendations."
    )
    bought_together_window_s: float = Field(
        3600, gt=0, description="Events of one actor this close in time form a basket (paired at full weight)."
    )
    bought_after_half_life: float = Field(
        2.0,
        gt=0,
        description=(
            "Sequence pairs: an event pairs with the actor's earlier events whatever the gap, its weight "
            "halving every this many events in between."
        ),
    )
    bought_before_weight: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Weight of the reverse direction of a sequence pair (A then B also suggests A after B).",
    )
    second_order_weight: float = Field(
        1.0,
        ge=0,
        description="Weight of the partners' partners (A then B, B then C: C after A) in recommendations.",
    )
    together_exponent: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Recommendations raise co-occurrence scores (best 1) to this power; below 1 lifts weaker partners.",
    )
    recommend_lexical_weight: float = Field(
        0.3,
        ge=0,
        le=10,
        description=(
            "Weight in recommendations of the BM25 match between a candidate and the titles of the customer's "
            "strongest items (best match 1): the brand, model and category words a text vector blurs. 0 turns it off."
        ),
    )
    recommend_lexical_items: int = Field(
        10, ge=1, le=50, description="How many of the customer's strongest items lend their titles to that match."
    )
    collaborative_weight: float = Field(
        1.0,
        ge=0,
        le=10,
        description=(
            "Weight in recommendations of the served model's collaborative next-item score (models from "
            "aisle train with histories; their aisle-serving.json sets it)."
        ),
    )
    collaborative_temperature: float = Field(
        1.0,
        gt=0,
        le=100,
        description="How flat the collaborative score falls from the best item: exp((score - best) / this).",
    )
    variant_similarity: float = Field(
        0.9,
        gt=0,
        le=1,
        description=(
            "Cosine above which a candidate of the same brand and category as a recent purchase counts as its "
            "variant and is held back (without brand or category, only near-duplicates)."
        ),
    )
    cart_window_s: float = Field(
        7 * 86400, ge=0, description="How long an item added to the cart and not bought counts as in the cart."
    )
    recommend_exclude: Literal["none", "purchased", "interacted"] = Field(
        "purchased",
        description="Items left out of a user's recommendations: none, recent purchases, or everything interacted with.",
    )
    purchase_exclusion_days: float = Field(
        3650,
        ge=0,
        description=(
            "How long a purchase keeps the item out of recommendations; consumables (items the shop's "
            "customers buy again) come back earlier, at their typical repurchase interval."
        ),
    )
    variant_hold_days: float = Field(
        30, ge=0, description="How long after a purchase its variants and near-duplicates are held back."
    )
    search_together_weight: float = Field(
        0.5,
        ge=0,
        le=10,
        description="Weight, in a signed-in search score, of what people buy with or after the user's items.",
    )
    similar_together_weight: float = Field(
        0.1,
        ge=0,
        le=10,
        description="Weight, in a signed-in similar-items score, of what people buy with or after the user's items.",
    )
    session_ttl_days: float = Field(
        30, gt=0, description="Anonymous sessions idle this long leave memory (their events stay stored)."
    )
    max_sessions: int = Field(
        100_000,
        ge=1,
        description=(
            "Sessions kept in memory per worker; beyond it the least recently used leave memory and are read "
            "back from the event log on their next request."
        ),
    )
    max_profiles: int = Field(
        100_000,
        ge=1,
        description=(
            "User profiles kept in memory per worker; beyond it the least recently used leave memory "
            "and are read back from the event log on their next request (nothing is lost)."
        ),
    )
    profile_snapshot_s: float = Field(
        300,
        ge=0,
        description=(
            "How often a worker snapshots popularity and co-occurrence to data_dir (and at shutdown), so "
            "a restart replays only the events after the snapshot; 0 writes none."
        ),
    )
    events_retention_days: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="Events older than this many days are deleted (checked hourly), and so leave every profile; None keeps them.",
    )
    events_max_db_mb: float | None = Field(
        None, gt=0, description="Size quota of the event database; beyond it writes answer 503."
    )
    profile_refresh_s: float = Field(
        0.5,
        ge=0,
        description="How often a worker reads the events other worker processes stored (multi-worker serving).",
    )
    verify_checksums: bool = Field(True, description="Check every file's sha256 when loading a version.")
    watch_interval_s: float = Field(2.0, ge=0, description="How often to check the current pointer; 0 disables.")
    live_poll_ms: float = Field(
        100, gt=0, le=1000, description="How often a worker looks for live catalogue changes other workers accepted."
    )
    # Request limits.
    max_body_bytes: int = Field(1_000_000, ge=1024)
    max_json_values: int = Field(
        10_000,
        ge=1000,
        description="Most JSON values and keys in one request body, counted before parsing; POST /events "
        "allows max_events_per_batch × 24 (an event with every field takes about 19).",
    )
    max_query_chars: int = Field(512, ge=1)
    max_k: int = Field(100, ge=1)
    max_events_per_batch: int = Field(1000, ge=1)
    request_timeout_ms: float = Field(2000, gt=0, description="Per-request time budget.")
    read_timeout_s: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Seconds a client has to send a request's head, and then its whole body; a stalled one is cut off.",
    )
    handler_threads: int = Field(
        4,
        ge=1,
        le=256,
        description="Requests whose handlers run at once in a worker; the others wait their turn (first come, first served).",
    )
    # Retrieval.
    candidates: int = Field(200, ge=10, le=2000, description="Candidates retrieved before reranking.")
    ef_search: int | None = Field(
        None,
        ge=1,
        le=65536,
        description="HNSW search beam width, overriding the one recorded by the build (None: the build's).",
    )
    nprobe: int | None = Field(
        None,
        ge=1,
        le=65536,
        description="IVF cells scanned per query, overriding the one recorded by the build (None: the build's).",
    )
    # Hybrid fusion (service.ranking.hybrid). The defaults were tuned on half of the
    # Amazon-Google dev queries and checked on the other half (benchmarks/eval_search_ag.py).
    fusion_method: Literal["weighted", "rrf"] = Field(
        "weighted",
        description="weighted: dense_weight·cosine + lexical_weight·bm25/max bm25; rrf: reciprocal rank fusion.",
    )
    fusion_dense_weight: float = Field(0.6, ge=0, le=10, description="Weight of the dense (semantic) score.")
    fusion_lexical_weight: float = Field(0.4, ge=0, le=10, description="Weight of the BM25 (lexical) score.")
    fusion_rrf_k: float = Field(60.0, gt=0, description="The k of reciprocal rank fusion (rrf only).")
    # What counts as a match of a text query (service.ranking.listing): total, facets and pages.
    match_lexical_floor: float = Field(
        0.3, ge=0, le=1, description="A lexical match scores at least this share of the query's best BM25 score."
    )
    match_min_similarity: float = Field(
        0.35, ge=-1, le=1, description="A dense (semantic) match has at least this cosine with the query..."
    )
    match_similarity_margin: float = Field(
        0.15, ge=0, le=2, description="...and is within this much of the best dense hit's cosine."
    )
    match_attribute_boost: float = Field(
        0.3,
        ge=0,
        le=5,
        description="Lexical bonus, times the field's search weight, for items whose searchable facet value the query "
        'names in full ("men\'s running shoes" favours gender Men).',
    )
    # Browser storefronts (CORS).
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed to call the API from a browser (e.g. https://shop.example.com, or * for any); "
        "empty: CORS off.",
    )
    # The image space (versions built with an image model; service.ranking.hybrid). Not tuned:
    # no real image model can be downloaded where Aisle is developed.
    fusion_image_weight: float = Field(
        0.2, ge=0, le=10, description="Weight of the text-to-image score in search (0: text retrieval only)."
    )
    similar_image_weight: float = Field(
        0.5, ge=0, le=1, description="Share of the picture's similarity in similar items (the text has the rest)."
    )
    profile_image_weight: float = Field(
        0.3, ge=0, le=1, description="Share of the image-space profile in the personal score of items with a picture."
    )
    # Reranking rules (service.ranking.rules).
    rules_file: Path | None = Field(None, description="YAML rules file: caps, pins, boosts, diversity, exploration.")
    # Typos, the query cache and the suggest box (index.lexical, service.query_cache, service.query_log).
    typo_tolerance: bool = Field(
        True,
        description="Correct query words that are not in the catalogue (1 edit from 5 letters, 2 from 9).",
    )
    encode_corrected_query: bool = Field(
        True, description="Encode the corrected query for semantic retrieval when the correction is confident."
    )
    query_cache_size: int = Field(
        4096, ge=0, le=1_000_000, description="Query encodings kept per index version (LRU); 0 disables the cache."
    )
    query_log_size: int = Field(
        20_000,
        ge=0,
        le=1_000_000,
        description="Distinct query texts counted for suggestions (no user ids are kept); 0 disables the log.",
    )
    query_log_min_count: int = Field(
        3, ge=1, description="Searches of a query text before it is suggested to other shoppers."
    )
    # Attribution and experiments (service.attribution, service.experiments).
    experiments: list[ExperimentConfig] = Field(
        default_factory=list, description="A/B experiments (see docs/CONTRACT.md, 'Attribution and experiments')."
    )
    attribution_window_days: float = Field(
        7, gt=0, le=365, description="A purchase of an item clicked this recently is attributed to that click."
    )
    served_retention_days: float = Field(
        30,
        gt=0,
        le=3650,
        description="How long served responses are kept for attribution and search analytics.",
    )
    served_max_rows: int = Field(
        2_000_000, ge=1000, description="Most served responses kept; the oldest go first beyond it."
    )
    returning_after_s: float = Field(
        1800, ge=0, description="A visitor with history older than this is 'returning', else 'new'."
    )

    @model_validator(mode="before")
    @classmethod
    def _model_serving_settings(cls, data: Any) -> Any:
        """Settings the served model was tuned with (its ``aisle-serving.json``) fill the keys no
        argument, variable or config file sets: a trained model serves as tuned, unconfigured."""
        if not isinstance(data, dict) or not data.get("model"):
            return data
        from aisle.embed.bundled import resolve_model_dir
        from aisle.embed.collaborative import read_serving_settings

        try:
            directory = resolve_model_dir(str(data["model"]))
        except FileNotFoundError:
            return data  # the encoder reports a missing model where it loads it
        shipped = read_serving_settings(directory)
        unknown = sorted(set(shipped) - set(cls.model_fields))
        if unknown:
            raise ValueError(f"{directory}/aisle-serving.json: unknown setting(s) {', '.join(unknown)}")
        return {**shipped, **data}

    @field_validator("experiments")
    @classmethod
    def _unique_experiments(cls, experiments: list[ExperimentConfig]) -> list[ExperimentConfig]:
        return check_unique_names(experiments)
