"""Request and response bodies of the HTTP API (shared/CONTRACT.md). Unknown fields are refused."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from aisle.service.ranking.rules import RulesOverride
from aisle.service.ranking.segments import RequestContext

#: Most values one filter may list.
MAX_FILTER_VALUES = 1000


class StrictModel(BaseModel):
    """Unknown fields and non-finite numbers (``Infinity``, ``NaN``) are refused with a 422."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


FilterScalar = (
    StrictBool
    | StrictInt
    | Annotated[float, Field(strict=True, allow_inf_nan=False)]
    | Annotated[str, Field(max_length=512)]
)
FilterList = Annotated[list[FilterScalar], Field(min_length=1, max_length=MAX_FILTER_VALUES)]


class RangeFilter(StrictModel):
    """``{"min": x, "max": y}``: a number field within bounds (inclusive; either may be left out)."""

    min: float | None = Field(None, allow_inf_nan=False)
    max: float | None = Field(None, allow_inf_nan=False)


class NotFilter(StrictModel):
    """``{"not": value or [values]}``: a field equal to none of the values."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    not_: FilterScalar | FilterList = Field(..., alias="not")


FilterValue = FilterScalar | FilterList | RangeFilter | NotFilter


def filters_as_dict(filters: dict[str, FilterValue] | None) -> dict[str, Any] | None:
    """The request's filters as plain values (``aisle.index.filters.parse_filters`` reads them)."""
    if filters is None:
        return None
    plain: dict[str, Any] = {}
    for name, value in filters.items():
        if isinstance(value, RangeFilter):
            plain[name] = {"min": value.min, "max": value.max}
        elif isinstance(value, NotFilter):
            plain[name] = {"not": value.not_}
        else:
            plain[name] = value
    return plain


class SearchRequest(StrictModel):
    query: str = Field(
        "", max_length=512, description="The query text; empty or absent: a browse (category) page of every match."
    )
    user_id: str | None = Field(None, min_length=1, max_length=256)
    session_id: str | None = Field(None, min_length=1, max_length=256)
    k: int = Field(10, ge=1, le=100)
    offset: int = Field(0, ge=0, le=999, description="The page's first position (0-based); offset + k ≤ 1000.")
    filters: dict[str, FilterValue] | None = Field(
        None,
        max_length=64,
        description="Field → value (equals), [values] (any of), {min, max} (range) or {not: value or [values]}; "
        "keys combine with AND. Any filterable field, plus price_min and price_max. A category matches its "
        "sub-categories too.",
    )
    facets: list[str] = Field(
        default_factory=list, max_length=32, description="Facetable fields whose values to count over every match."
    )
    sort: str | None = Field(
        None,
        pattern=r"^[^:]{1,128}:(asc|desc)$",
        description="field:asc or field:desc over a sortable field; relevance breaks ties.",
    )
    exclude_ids: list[str] = Field(default_factory=list, max_length=1000)
    explain: bool = Field(
        False,
        description="Attach to each result the parts of its score (semantic, lexical, personal, "
        "boosts, penalties, diversity, final) and the rules that moved it.",
    )
    rules: RulesOverride | None = Field(
        None,
        description="This request's changes to the configured rules: in_stock_only, exclude_purchased, "
        "caps, pins, boosts, price_band, diversity ({'lambda': ...}), exploration. Each given list replaces "
        "the configured one; each given object changes only the fields it sets.",
    )
    retrieval: Literal["hybrid", "dense", "lexical"] = Field(
        "hybrid", description="Candidate retrieval: dense and BM25 fused (default), dense only or BM25 only."
    )
    highlight: bool = Field(
        False,
        description="Attach to each result which query words matched in which field: "
        '{"title": {"value": "<em>Adidas</em> running shoes", "words": ["addidas"]}} (values HTML-escaped).',
    )
    context: RequestContext | None = Field(
        None, description="The storefront's context (channel, device, region): segment rules and reports."
    )


class Result(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    score: float
    title: str
    explain: dict[str, Any] | None = None


class RankedResponse(BaseModel):
    request_id: str
    index_version: str
    took_ms: float
    results: list[Result]
    corrected_query: str | None = Field(
        None, description="The query as searched, when misspelled words were replaced by catalogue words."
    )
    did_you_mean: str | None = Field(
        None,
        description="A spelling of the query that finds far more products (the results are for the query as typed).",
    )
    experiment: str | None = Field(None, description="The experiment covering this request, if any.")
    variant: str | None = Field(None, description="The variant that served it, with the experiment.")


class SearchResponse(RankedResponse):
    total: int = Field(..., description="How many items match (see docs/CONTRACT.md, 'A match').")
    matched: bool = Field(..., description="False when nothing matched the query (then total is 0).")
    facets: dict[str, dict[str, int]] | None = Field(None, description="Per asked facet, value → matches.")


class Suggestion(BaseModel):
    model_config = ConfigDict(extra="allow")

    text: str
    source: Literal["queries", "catalogue"] = Field(
        description="queries: searched often in this shop; catalogue: the last word completed from the products' words."
    )


class SuggestResponse(BaseModel):
    request_id: str
    index_version: str
    took_ms: float
    suggestions: list[Suggestion]
    results: list[Result]
    corrected_query: str | None = None


class HealthResponse(BaseModel):
    status: str
    index_version: str | None
    items: int
