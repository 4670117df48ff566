"""Business rules of the reranker: a rules file, per-surface sections and per-request overrides.

A rule set has hard rules, which every ranked list satisfies, and soft rules, which only move
scores (see ``aisle.service.ranking.rerank`` for exactly how each one acts):

* hard: ``in_stock_only``, ``exclude_purchased`` (the user's purchases within the window the
  personalization computes ``UserContext.purchased_recently`` with), ``exclude_ids``,
  ``pins`` (item at a position, for a query, under a category, or everywhere) and ``caps``
  (at most n items per brand or category within the top positions);
* soft: ``boosts`` (catalogue ``margin`` and ``boost`` fields, brands, categories),
  ``price_band`` (a penalty for prices outside the user's usual band), ``affinity`` (a bounded
  boost towards the user's categories and brands, on by default in search only), ``diversity``
  (MMR λ);
* ``exploration``: a share of slots for items outside the user's strongest affinities;
* ``distinct_pictures`` (hard, on by default): never two products whose pictures are
  near-duplicates in one list (versions built from a catalogue with images).

The effective rules of a request are layered, later layers winning: the built-in defaults, the
built-in defaults of its surface (``DEFAULT_SURFACES``), the rules file's top level, the rules
file's section for the surface (``surfaces: {search: ..., similar: ..., recommendations: ...}``),
then the request's own ``rules``. A layer replaces the lists it names (``caps``, ``pins``,
``exclude_ids``) and, within the objects it names (``boosts``, ``diversity``, ...), only the
fields it sets. Example rules file::

    in_stock_only: true
    caps: [{field: brand, max: 3, within: 10}]
    boosts: {margin: 0.2, brands: {acme: 0.05}}
    pins:
      - {item_id: SKU-123, position: 1, query: "gift card"}
    surfaces:
      similar: {diversity: {lambda: 0.7}}
    campaigns:
      - name: winter-sale
        start: 2026-12-01T00:00:00Z
        end: 2027-01-06T00:00:00Z
        segment: {channel: email, visitor: returning}
        surfaces: [search, recommendations]
        rules: {boosts: {categories: {"Outdoor > Winter": 0.2}}}

Campaigns are the last layer before the request's own rules: each one active now (``start`` ≤
now < ``end``, either bound optional) whose ``segment`` matches the request's segment
(``aisle.service.ranking.segments``) and whose ``surfaces`` include the request's adds its
``rules``, in file order.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aisle.service.ranking.segments import Segment, SegmentMatch

Surface = Literal["search", "similar", "recommendations"]
SURFACES: tuple[Surface, ...] = ("search", "similar", "recommendations")


#: An additive boost of a brand or a category: the same scale as the margin and boost weights.
AdditiveBoost = Annotated[float, Field(ge=-10, le=10)]


class RulesError(ValueError):
    """The rules file is missing or invalid; the message names the file and the field."""


class _Rule(BaseModel):
    # Non-finite numbers refused everywhere: an Infinity boost made an unrenderable score.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)


class Cap(_Rule):
    """At most ``max`` items sharing a brand (or a category) among the first ``within`` results.

    Items with an empty brand (category) are not counted by a brand (category) cap.
    """

    field: Literal["brand", "category"]
    max: int = Field(..., ge=1, le=1000)
    within: int | None = Field(None, ge=1, le=1000, description="Positions counted; None = the whole list.")


class Pin(_Rule):
    """Item ``item_id`` at 1-based ``position``, when the conditions hold.

    ``query``: only for a search whose query equals this one (case and spacing ignored).
    ``category``: only when the request's category (a search's category filter, a similar-items
    request's own item category) is this category or below it. Neither: everywhere.
    """

    item_id: str = Field(..., min_length=1, max_length=256)
    position: int = Field(..., ge=1, le=1000)
    query: str | None = Field(None, min_length=1, max_length=512)
    category: str | None = Field(None, min_length=1, max_length=512)

    def applies(self, query: str | None, category: str | None) -> bool:
        if self.query is not None and (query is None or normalize_query(query) != normalize_query(self.query)):
            return False
        if self.category is not None and (category is None or not category_within(category, self.category)):
            return False
        return True


class Boosts(_Rule):
    """Additive score boosts: ``margin·m + boost·b + brands[brand] + Σ categories[prefix]``."""

    margin: float = Field(0.0, ge=-10, le=10, allow_inf_nan=False, description="Weight of the catalogue margin.")
    boost: float = Field(0.1, ge=-10, le=10, allow_inf_nan=False, description="Weight of the catalogue boost field.")
    brands: dict[str, AdditiveBoost] = Field(
        default_factory=dict, max_length=200, description="Brand → additive boost."
    )
    categories: dict[str, AdditiveBoost] = Field(
        default_factory=dict, max_length=200, description="Category path prefix → additive boost."
    )


class PriceBand(_Rule):
    """Penalty ``weight · min(1, octaves outside the user's band)`` for a price outside it."""

    weight: float = Field(0.1, ge=0, le=10, allow_inf_nan=False)


class Affinity(_Rule):
    """Boost ``category·a_c + brand·a_b`` by the user's category and brand affinities (each in [0, 1]).

    Bounded by ``category + brand``: a strong text match still beats a weak one of the user's
    favourite brand. Only personalized searches have affinities (``UserContext.affinity``).
    """

    category: float = Field(0.0, ge=0, le=10, allow_inf_nan=False)
    brand: float = Field(0.0, ge=0, le=10, allow_inf_nan=False)


class Diversity(_Rule):
    """MMR: ``λ = 1`` ranks by relevance alone; lower values trade relevance for variety.

    At least 0.01: the diversity weight is ``(1 − λ)/λ``, which grows without bound near 0.
    """

    lambda_: float = Field(1.0, alias="lambda", ge=0.01, le=1, allow_inf_nan=False)


class Exploration(_Rule):
    """A share of slots for items outside the user's strongest affinities (users with any).

    ``share · k`` slots on average (the fraction is drawn from the request's seeded generator),
    never the first position, each filled by a random pick among the ``pool`` most relevant
    candidates outside the affinities.
    """

    share: float = Field(0.1, ge=0, le=0.5, allow_inf_nan=False)
    pool: int = Field(20, ge=1, le=1000)


class RuleSet(_Rule):
    """The complete, effective rules of one ranked list."""

    in_stock_only: bool = True
    exclude_purchased: bool = True
    exclude_ids: tuple[str, ...] = ()
    caps: tuple[Cap, ...] = ()
    pins: tuple[Pin, ...] = ()
    boosts: Boosts = Boosts()
    price_band: PriceBand = PriceBand()
    affinity: Affinity = Affinity()
    diversity: Diversity = Diversity()
    exploration: Exploration = Exploration()
    distinct_pictures: bool = True

    def merged(self, override: RulesOverride | None) -> RuleSet:
        """These rules with ``override``'s fields on top (see the module docstring)."""
        if override is None:
            return self
        changes = override.model_dump(
            exclude_unset=True, exclude_none=True, by_alias=True, exclude={"surfaces", "campaigns"}
        )
        if not changes:
            return self
        values = self.model_dump(by_alias=True)
        for name, value in changes.items():
            # Objects merge field by field; lists, and the dicts inside boosts, are replaced.
            values[name] = {**values[name], **value} if isinstance(value, dict) else value
        return RuleSet.model_validate(values)

    def pins_for(self, query: str | None, category: str | None) -> list[Pin]:
        """The pins that apply to a request with this query and category."""
        return [pin for pin in self.pins if pin.applies(query, category)]


class BoostsOverride(_Rule):
    margin: float | None = Field(None, ge=-10, le=10, allow_inf_nan=False)
    boost: float | None = Field(None, ge=-10, le=10, allow_inf_nan=False)
    brands: dict[str, AdditiveBoost] | None = Field(None, max_length=200)
    categories: dict[str, AdditiveBoost] | None = Field(None, max_length=200)


class RulesOverride(_Rule):
    """Rules a request (or a section of the rules file) changes; everything optional."""

    in_stock_only: bool | None = None
    exclude_purchased: bool | None = None
    exclude_ids: list[str] | None = Field(None, max_length=1000)
    caps: list[Cap] | None = Field(None, max_length=20)
    pins: list[Pin] | None = Field(None, max_length=100)
    boosts: BoostsOverride | None = None
    price_band: PriceBand | None = None
    affinity: Affinity | None = None
    diversity: Diversity | None = None
    exploration: Exploration | None = None
    distinct_pictures: bool | None = None


class Campaign(_Rule):
    """Rules for a segment and/or a time window (``start`` inclusive, ``end`` exclusive)."""

    name: str = Field(..., min_length=1, max_length=128)
    start: datetime | None = None
    end: datetime | None = None
    segment: SegmentMatch | None = None
    surfaces: tuple[Surface, ...] | None = Field(None, description="None: every surface.")
    rules: RulesOverride

    @model_validator(mode="after")
    def _window_is_not_empty(self) -> Campaign:
        if self.start is not None and self.end is not None and _epoch(self.start) >= _epoch(self.end):
            raise ValueError(f"campaign '{self.name}': start must be before end")
        return self

    def active(self, surface: str, segment: Segment | None, now: float) -> bool:
        if self.surfaces is not None and surface not in self.surfaces:
            return False
        if self.start is not None and now < _epoch(self.start):
            return False
        if self.end is not None and now >= _epoch(self.end):
            return False
        return self.segment is None or (segment is not None and self.segment.matches(segment))


def _epoch(moment: datetime) -> float:
    """Unix seconds; a time without a zone is UTC, as event timestamps are."""
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)).timestamp()


class RulesFile(RulesOverride):
    """A rules file: a top-level override, one per surface, and campaigns."""

    surfaces: dict[Surface, RulesOverride] = Field(default_factory=dict)
    campaigns: list[Campaign] = Field(default_factory=list, max_length=200)


#: Weights of the affinity boost in search, chosen on the even half of the MovieLens tag cases
#: (genres as categories; ``benchmarks/results/recsys.json``). Brands weigh as categories do:
#: MovieLens has none to choose it on.
SEARCH_AFFINITY_CATEGORY = 0.05
SEARCH_AFFINITY_BRAND = 0.05

#: Built-in per-surface defaults: product pages and recommendations show more variety than a
#: search, whose user asked for something specific. Recommendations' lambda was chosen on the
#: Amazon Scientific train split (benchmarks/results/recsys.json): 0.8 cost more relevance than
#: the variety it bought.
DEFAULT_SURFACES: dict[str, RulesOverride] = {
    "search": RulesOverride(affinity=Affinity(category=SEARCH_AFFINITY_CATEGORY, brand=SEARCH_AFFINITY_BRAND)),
    "similar": RulesOverride(diversity=Diversity(lambda_=0.85)),
    "recommendations": RulesOverride(diversity=Diversity(lambda_=0.9)),
}


class RuleBook:
    """The effective rule set of every surface, computed once from the rules file."""

    def __init__(self, rules_file: RulesFile | None = None) -> None:
        rules_file = rules_file or RulesFile()
        self.campaigns: tuple[Campaign, ...] = tuple(rules_file.campaigns)
        top = rules_file.model_copy(update={"surfaces": {}, "campaigns": []})
        self.surfaces: dict[str, RuleSet] = {
            surface: RuleSet().merged(DEFAULT_SURFACES[surface]).merged(top).merged(rules_file.surfaces.get(surface))
            for surface in SURFACES
        }

    def for_surface(self, surface: str, override: RulesOverride | None = None) -> RuleSet:
        """The rules of ``surface`` with the request's ``override`` on top."""
        return self.surfaces[surface].merged(override)

    def for_request(self, surface: str, override: RulesOverride | None, segment: Segment | None, now: float) -> RuleSet:
        """The rules of ``surface`` with the active campaigns for ``segment``, then ``override``."""
        rules = self.surfaces[surface]
        for campaign in self.campaigns:
            if campaign.active(surface, segment, now):
                rules = rules.merged(campaign.rules)
        return rules.merged(override)


def load_rule_book(path: str | Path | None) -> RuleBook:
    """Reads a YAML rules file (``None``: the built-in defaults).

    Raises:
        RulesError: the file is missing, not YAML, or breaks the schema (naming the field).
    """
    if path is None:
        return RuleBook()
    import yaml

    path = Path(path)
    if not path.is_file():
        raise RulesError(f"rules file not found: {path}")
    try:
        payload: Any = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RulesError(f"rules file {path} is not readable YAML: {exc}") from None
    try:
        return RuleBook(RulesFile.model_validate(payload))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or '(top)'}: {error['msg']}" for error in exc.errors()[:10]
        )
        raise RulesError(f"rules file {path} is invalid: {problems}") from None


def normalize_query(query: str) -> str:
    """Case-folded with runs of whitespace collapsed: how pins match queries."""
    return re.sub(r"\s+", " ", query.casefold()).strip()


def category_parts(category: str) -> tuple[str, ...]:
    """A category path as case-folded components (``Home > Kitchen`` → ``("home", "kitchen")``)."""
    return tuple(part.strip().casefold() for part in category.split(">") if part.strip())


def category_within(category: str, prefix: str) -> bool:
    """Whether ``category`` is ``prefix`` or below it, component-wise."""
    wanted = category_parts(prefix)
    return category_parts(category)[: len(wanted)] == wanted
