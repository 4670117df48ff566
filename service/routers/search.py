"""``/search``: the search bar and the storefront's listing pages (filters, facets, sort, pages).

``POST /search`` takes a JSON body (``aisle.service.schemas.SearchRequest``); ``GET /search`` the
same as query parameters, for a plain form or a link:

* ``q``, ``k``, ``offset``, ``user_id``, ``session_id``, ``explain``, ``sort=price:asc``,
  ``facets=gender,baseColour`` (comma-separated or repeated);
* ``filter.FIELD=value`` (equals; repeated: any of), ``filter.FIELD.min=`` / ``filter.FIELD.max=``
  (range), ``filter.FIELD.not=value`` (repeated: none of), ``filter.price_min=`` and
  ``filter.price_max=``.

A parameter it does not know is refused (422 naming it), never silently ignored.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import TypeAdapter, ValidationError

from aisle.index.filters import FilterError, Filters, parse_filters
from aisle.service.deps import EngineDep, SettingsDep, check_k
from aisle.service.engine import Engine, RulesConflict, SortOrder
from aisle.service.errors import ApiError
from aisle.service.experiments.deps import plan_context, plan_for, record_served
from aisle.service.json_body import FastJsonRoute
from aisle.service.ranking.config import RankingConfig
from aisle.service.ranking.listing import LIST_DEPTH
from aisle.service.routers.responses import listing_response
from aisle.service.schemas import FilterValue, SearchRequest, SearchResponse, filters_as_dict

router = APIRouter(route_class=FastJsonRoute, tags=["search"])


async def get_ranking(request: Request) -> RankingConfig:
    """The app's ranking configuration (built from the settings at start-up)."""
    return ranking_of(request)


def ranking_of(request: Request) -> RankingConfig:
    """``get_ranking`` for a route that reads its request itself."""
    state = request.app.state
    ranking = getattr(state, "ranking", None)
    if ranking is None:
        ranking = state.ranking = RankingConfig.from_settings(state.settings)
    return ranking


RankingDep = Annotated[RankingConfig, Depends(get_ranking)]


def to_filters(engine: Engine, raw: dict[str, Any] | None) -> Filters | None:
    """The request's filters checked against the served version's schema (422 naming the field)."""
    try:
        return parse_filters(raw, engine.index.items.fields)
    except FilterError as exc:
        raise ApiError(422, str(exc)) from None


_FILTERS_JSON = TypeAdapter(dict[str, FilterValue])


def filters_from_json(text: str | None, engine: Engine) -> Filters | None:
    """The search body's ``filters`` given as JSON text (GET surfaces, ``aisle recommend``).

    Raises:
        ValueError: naming what is wrong (not JSON, a bad value, an unknown or non-filterable field).
    """
    if text is None or not text.strip():
        return None
    try:
        raw = _FILTERS_JSON.validate_python(json.loads(text))
    except json.JSONDecodeError as exc:
        raise ValueError(f"filters: not JSON ({exc})") from None
    except ValidationError as exc:
        detail = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'filters'}: {error['msg']}" for error in exc.errors()
        )
        raise ValueError(f"filters: {detail}") from None
    return parse_filters(filters_as_dict(raw), engine.index.items.fields)


def filters_from_query(filters: str | None, engine: Engine) -> Filters | None:
    """The ``filters`` query parameter of GET surfaces (422 naming what is wrong)."""
    try:
        return filters_from_json(filters, engine)
    except ValueError as exc:  # FilterError included: its message starts with "filters."
        raise ApiError(422, str(exc)) from None


FiltersQuery = Annotated[
    str | None,
    Query(
        max_length=4096,
        description='The search filter syntax as JSON, e.g. {"category": "Kitchen", "gender": ["Men"], '
        '"price": {"max": 50}}.',
    ),
]


def check_facets(engine: Engine, facets: list[str]) -> list[str]:
    """The asked facets, each a facetable field of the version (else 422 naming it)."""
    fields = engine.index.items.fields
    for name in facets:
        spec = fields.schema.get(name)
        if spec is None or not spec.facetable or name not in fields:
            facetable = [s.name for s in fields.schema.fields if s.facetable and s.name in fields]
            what = "unknown field" if spec is None else "not facetable (configure it in the fields: setting)"
            raise ApiError(422, f"facets: '{name}' is {what}; facetable fields are {', '.join(facetable)}")
    return list(dict.fromkeys(facets))


def check_sort(engine: Engine, sort: str | None) -> SortOrder | None:
    """``field:asc|desc`` over a sortable field (else 422 naming it)."""
    if not sort:
        return None
    name, _, direction = sort.rpartition(":")
    if direction not in ("asc", "desc") or not name:
        raise ApiError(422, f"sort: expected field:asc or field:desc, got '{sort}'")
    fields = engine.index.items.fields
    spec = fields.schema.get(name)
    if spec is None or not spec.sortable or name not in fields:
        sortable = [s.name for s in fields.schema.fields if s.sortable and s.name in fields]
        what = "unknown field" if spec is None else "not sortable (configure it in the fields: setting)"
        raise ApiError(422, f"sort: '{name}' is {what}; sortable fields are {', '.join(sortable)}")
    return SortOrder(name, direction == "desc")


def popularity_of(request: Request, engine: Engine) -> np.ndarray | None:
    """Each row's popularity (0..1) for a browse page, when the service has counted any."""
    personal = getattr(request.app.state, "personal", None)
    if personal is None:
        return None
    current = personal.profiles.popularity()
    if current is None or current[0] is not engine:
        return None
    return current[1].scores_of(np.arange(len(engine.index), dtype=np.int64))


def run_search(
    request: Request, engine: Engine, settings: SettingsDep, ranking: RankingConfig, body: SearchRequest
) -> Response:
    started = time.perf_counter()
    check_k(settings, body.k)
    if len(body.query) > settings.max_query_chars:
        raise ApiError(422, f"query: at most {settings.max_query_chars} characters, got {len(body.query)}")
    if body.offset + body.k > LIST_DEPTH:
        raise ApiError(422, f"offset + k: at most {LIST_DEPTH}, got {body.offset + body.k}")
    filters = to_filters(engine, filters_as_dict(body.filters))
    facets = check_facets(engine, body.facets)
    sort = check_sort(engine, body.sort)
    plan = plan_for(request, "search", body.user_id, body.session_id, body.context)
    browse = not body.query.strip()
    try:
        listing = engine.listing(
            body.query,
            body.k,
            offset=body.offset,
            filters=filters,
            facets=facets,
            sort=sort,
            exclude_ids=body.exclude_ids,
            explain=body.explain,
            ctx=plan_context(request, plan, engine),
            rules=plan.rules(ranking.rule_book, body.rules),
            fusion=plan.fusion(ranking.fusion),
            matching=ranking.matching,
            retrieval=plan.retrieval(body.retrieval, "retrieval" in body.model_fields_set),  # type: ignore[arg-type]
            popularity=popularity_of(request, engine) if browse else None,
            visitor=(body.user_id, body.session_id),
        )
    except RulesConflict as exc:
        raise ApiError(422, str(exc)) from None
    record_served(request, plan, engine, listing.hits, body.query)
    query_log = request.app.state.query_log
    if listing.hits and query_log is not None and not browse:
        query_log.record(body.query)
    matcher = engine.matcher(body.query) if body.highlight and not browse else None
    return listing_response(
        request,
        engine,
        listing,
        started,
        facets_asked=bool(body.facets),
        labels=plan.labels,
        extra=engine.spelling(body.query) if not browse else None,
        matcher=matcher,
    )


@router.post("/search", response_model=SearchResponse, response_model_exclude_none=True)
def search(
    request: Request, engine: EngineDep, settings: SettingsDep, ranking: RankingDep, body: SearchRequest
) -> Response:
    """Ranked products for a query, or a browse page when the query is empty.

    Hybrid (dense + BM25) retrieval, then business rules; filters on any filterable field,
    facet counts over every match, ``total``, ``sort`` and ``offset`` pages.
    ``explain: true`` returns the parts of every score.
    """
    return run_search(request, engine, settings, ranking, body)


#: Plain query parameters of ``GET /search`` (besides ``filter.*``).
_GET_PARAMETERS = (
    "q",
    "k",
    "offset",
    "user_id",
    "session_id",
    "explain",
    "highlight",
    "sort",
    "facets",
    "retrieval",
)
#: The storefront context (``aisle.service.ranking.segments.RequestContext``) as query parameters.
_CONTEXT_PARAMETERS = ("channel", "device", "region")


@router.get("/search", response_model=SearchResponse, response_model_exclude_none=True)
def search_get(request: Request, engine: EngineDep, settings: SettingsDep, ranking: RankingDep) -> Response:
    """The same search for a plain form or a link: ``q``, ``k``, ``offset``, ``sort``, ``facets``,
    ``user_id``, ``session_id``, ``explain`` and ``filter.FIELD[.min|.max|.not]=value`` (see the
    module docstring), and the storefront context ``channel``, ``device``, ``region``. Unknown
    parameters are refused."""
    try:
        body = SearchRequest(**get_parameters(request))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'query'}: {error['msg']}" for error in exc.errors()
        )
        raise ApiError(422, problems) from None
    return run_search(request, engine, settings, ranking, body)


def get_parameters(request: Request) -> dict[str, Any]:
    """``SearchRequest`` fields from ``GET /search``'s query string (422 naming a bad parameter)."""
    params = request.query_params
    values: dict[str, Any] = {}
    filters: dict[str, Any] = {}
    for name in dict.fromkeys(params.keys()):
        given = params.getlist(name)
        if name.startswith("filter."):
            _add_filter(filters, name, given)
            continue
        if name not in _GET_PARAMETERS and name not in _CONTEXT_PARAMETERS:
            known = ", ".join(_GET_PARAMETERS + _CONTEXT_PARAMETERS)
            raise ApiError(422, f"unknown query parameter '{name}'; GET /search takes {known} and filter.FIELD")
        if name == "facets":
            values["facets"] = [part.strip() for value in given for part in value.split(",") if part.strip()]
        elif len(given) > 1:
            raise ApiError(422, f"query parameter '{name}' is given {len(given)} times")
        elif name in _CONTEXT_PARAMETERS:
            values.setdefault("context", {})[name] = given[0]
        else:
            values["query" if name == "q" else name] = given[0]
    if filters:
        values["filters"] = filters
    for name in ("k", "offset"):
        if name in values:
            try:
                values[name] = int(values[name])
            except ValueError:
                raise ApiError(422, f"{name}: expected an integer, got {values[name]!r}") from None
    for name in ("explain", "highlight"):
        if name in values:
            values[name] = _bool(name, values[name])
    return values


def _add_filter(filters: dict[str, Any], name: str, given: list[str]) -> None:
    field, _, part = name[len("filter.") :].rpartition(".")
    if part not in ("min", "max", "not"):
        field, part = name[len("filter.") :], ""
    if not field:
        raise ApiError(422, f"query parameter '{name}': expected filter.FIELD, filter.FIELD.min, .max or .not")
    if part in ("min", "max"):
        if len(given) > 1:
            raise ApiError(422, f"query parameter '{name}' is given {len(given)} times")
        bound = filters.setdefault(field, {})
        if not isinstance(bound, dict) or "not" in bound:
            raise ApiError(422, f"filter.{field}: a range cannot be combined with other forms of the same filter")
        bound[part] = _number(name, given[0])
    elif part == "not":
        if field in filters:
            raise ApiError(422, f"filter.{field}: .not cannot be combined with other forms of the same filter")
        filters[field] = {"not": given if len(given) > 1 else given[0]}
    else:
        if field in filters:
            raise ApiError(422, f"filter.{field}: equals cannot be combined with other forms of the same filter")
        typed = [_typed(field, value) for value in given]
        filters[field] = typed if len(typed) > 1 else typed[0]


def _typed(field: str, value: str) -> Any:
    # Booleans are spelt out in a URL; the legacy stock and price keys take typed values.
    if field == "in_stock":
        return _bool(f"filter.{field}", value)
    if field in ("price_min", "price_max"):
        return _number(f"filter.{field}", value)
    return value


def _number(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ApiError(422, f"{name}: expected a number, got {value!r}") from None
    if not np.isfinite(number):
        raise ApiError(422, f"{name}: expected a finite number, got {value!r}")
    return number


def _bool(name: str, value: str) -> bool:
    text = value.strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ApiError(422, f"{name}: expected true or false, got {value!r}")
