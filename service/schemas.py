"""Request and response bodies of the HTTP API (shared/CONTRACT.md). Unknown fields are refused."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aisle.service.ranking.rules import RulesOverride
from aisle.service.ranking.segments import RequestContext

#: Most values one filter may list.
MAX_FILTER_VALUES = 1000


class StrictModel(BaseModel):
    """Unknown fields and non-finite numbers (``Infinity``, ``NaN``) are refused with a 422."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class SearchFilters(StrictModel):
    category: str | None = Field(None, max_length=512, description="Category path prefix, e.g. 'Home > Kitchen'.")
    # Capped inside the union: a cap on the union itself let pydantic validate all of a huge list.
    brand: str | Annotated[list[str], Field(max_length=MAX_FILTER_VALUES)] | None = Field(
        None, description="One brand or a list of brands."
    )
    price_min: float | None = Field(None, ge=0, allow_inf_nan=False, description="Lowest price (inclusive).")
    price_max: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="Highest price (inclusive); not below price_min (else 422)."
    )
    in_stock: bool | None = None

    @model_validator(mode="after")
    def _price_range_is_not_empty(self) -> SearchFilters:
        # An inverted range matches nothing: almost surely swapped bounds, so say so instead of [].
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise ValueError(f"price_min ({self.price_min:g}) is above price_max ({self.price_max:g})")
        return self


class SearchRequest(StrictModel):
    query: str = Field(..., min_length=1, max_length=512)
    user_id: str | None = Field(None, min_length=1, max_length=256)
    session_id: str | None = Field(None, min_length=1, max_length=256)
    k: int = Field(10, ge=1, le=100)
    filters: SearchFilters | None = None
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
