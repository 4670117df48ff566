"""The running experiments of a service: the served-response log, assignment, recording.

``Experiments.open`` opens the served-response log (``served.sqlite3`` under the data directory,
or PostgreSQL with ``database_url``); the app closes it after the last request. ``plan`` decides, once per ranked request, its segment, experiment and
variant and what the variant changes; ``record`` remembers the response for attribution and
counts it in ``aisle_ranked_responses_total{surface, experiment, variant}``.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from aisle.index.profile import personal_share
from aisle.service.attribution.resolve import ClickFinder, open_click_finder
from aisle.service.attribution.served import Served, ServedLog, open_served_log
from aisle.service.engine import Engine, Hit
from aisle.service.events.identity import IdHasher
from aisle.service.experiments.assign import Assignment, assign
from aisle.service.experiments.config import ExperimentConfig
from aisle.service.personal.config import PersonalConfig
from aisle.service.personal.context import user_context
from aisle.service.personal.profiles import ProfileView
from aisle.service.ranking.hybrid import FusionParams
from aisle.service.ranking.rules import RuleBook, RuleSet, RulesOverride, normalize_query
from aisle.service.ranking.segments import RequestContext, Segment
from aisle.service.ranking.types import ANONYMOUS, UserContext
from aisle.service.settings import ServiceSettings

log = logging.getLogger(__name__)
#: Label of responses outside any experiment.
NONE_LABEL = "none"


@dataclass(frozen=True)
class Plan:
    """How one ranked request is served: its visitor, segment, variant and their effects."""

    surface: str
    now: float
    user_key: str | None
    session_key: str | None
    segment: Segment
    view: ProfileView | None
    assignment: Assignment | None = None

    @property
    def personalized(self) -> bool:
        return self.assignment is None or self.assignment.variant.personalized

    @property
    def labels(self) -> dict[str, str]:
        """``{"experiment", "variant"}`` for the response body (empty outside experiments)."""
        if self.assignment is None:
            return {}
        return {"experiment": self.assignment.experiment.name, "variant": self.assignment.variant.name}

    def rules(self, rule_book: RuleBook, override: RulesOverride | None = None) -> RuleSet:
        """Surface rules → active campaigns for the segment → the variant's rules → the request's."""
        rules = rule_book.for_request(self.surface, None, self.segment, self.now)
        if self.assignment is not None and self.assignment.variant.rules is not None:
            rules = rules.merged(self.assignment.variant.rules)
        return rules.merged(override)

    def context(self, engine: Engine, purchase_window_s: float) -> UserContext:
        """The ranking context: the visitor's profile, stripped for a variant without personalization."""
        ctx = user_context(self.view, engine, purchase_window_s) if self.view is not None else ANONYMOUS
        if not self.personalized:
            # Purchases still leave lists (a business rule); the taste does not shape them.
            return UserContext(purchased_recently=ctx.purchased_recently)
        blend = self.assignment.variant.settings.blend if self.assignment is not None else None
        if blend is not None and ctx.profile is not None:
            ctx = replace(ctx, personal_share=personal_share(ctx.mass, cap=blend))
        return ctx

    def fusion(self, fusion: FusionParams) -> FusionParams:
        if self.assignment is None:
            return fusion
        settings = self.assignment.variant.settings
        changes: dict[str, Any] = {
            name: value
            for name, value in (
                ("method", settings.fusion_method),
                ("dense_weight", settings.fusion_dense_weight),
                ("lexical_weight", settings.fusion_lexical_weight),
            )
            if value is not None
        }
        return replace(fusion, **changes) if changes else fusion

    def retrieval(self, requested: str, explicit: bool) -> str:
        """The request's retrieval when it named one, else the variant's, else the default."""
        if explicit or self.assignment is None or self.assignment.variant.settings.retrieval is None:
            return requested
        return self.assignment.variant.settings.retrieval

    def personal_config(self, config: PersonalConfig) -> PersonalConfig:
        if self.assignment is None:
            return config
        settings = self.assignment.variant.settings
        changes: dict[str, Any] = {}
        if settings.blend is not None:
            changes["profile_cap"] = settings.blend
        if settings.bought_together_weight is not None:
            changes["bought_together_weight"] = settings.bought_together_weight
        return replace(config, **changes) if changes else config


class Experiments:
    """Configured experiments plus the served-response log they are measured with."""

    def __init__(
        self,
        experiments: list[ExperimentConfig],
        hasher: IdHasher,
        served: ServedLog,
        clicks: ClickFinder,
        *,
        attribution_window_s: float,
        returning_after_s: float,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.configs = experiments
        self.hasher = hasher
        self.served = served
        self.clicks = clicks
        self.attribution_window_s = attribution_window_s
        self.returning_after_s = returning_after_s
        self.responses = Counter(
            "aisle_ranked_responses_total",
            "Ranked responses by surface, experiment and variant ('none' outside experiments).",
            ["surface", "experiment", "variant"],
            registry=registry,
        )
        self._counters: dict[tuple[str, str, str], Any] = {}

    @classmethod
    def open(cls, settings: ServiceSettings, hasher: IdHasher, registry: CollectorRegistry | None) -> Experiments:
        """Opens the served-response log and the attributed clicks' store the settings name."""
        served = open_served_log(settings)
        running = [experiment.name for experiment in settings.experiments if experiment.running(time.time())]
        log.info("experiments: %d configured, running now: %s", len(settings.experiments), running or "none")
        return cls(
            list(settings.experiments),
            hasher,
            served,
            open_click_finder(settings),
            attribution_window_s=settings.attribution_window_days * 86400,
            returning_after_s=settings.returning_after_s,
            registry=registry,
        )

    def config(self, name: str) -> ExperimentConfig | None:
        return next((experiment for experiment in self.configs if experiment.name == name), None)

    def plan(
        self,
        surface: str,
        user_id: str | None,
        session_id: str | None,
        context: RequestContext | None,
        view: ProfileView | None,
    ) -> Plan:
        """Segment and assignment of one request (``view``: the visitor's profile, if any)."""
        now = time.time()
        user_key = self.hasher.user(user_id) if user_id else None
        session_key = self.hasher.session(session_id) if session_id else None
        returning = view is not None and view.first_ts is not None and view.first_ts <= now - self.returning_after_s
        segment = Segment.of(context, "returning" if returning else "new")
        assignment = assign(self.configs, surface, user_key, session_key, segment, now) if self.configs else None
        return Plan(surface, now, user_key, session_key, segment, view, assignment)

    def record(self, plan: Plan, request_id: str, engine: Engine, hits: list[Hit], query: str | None = None) -> None:
        """Remembers a served response for attribution, and counts it."""
        ids = engine.index.items.ids
        assignment = plan.assignment
        self.served.record(
            Served(
                request_id=request_id,
                ts=plan.now,
                surface=plan.surface,
                items=tuple(ids[hit.row] for hit in hits),
                query=normalize_query(query) if query is not None else None,
                user_key=plan.user_key,
                session_key=plan.session_key,
                experiment=assignment.experiment.name if assignment else None,
                variant=assignment.variant.name if assignment else None,
                unit_key=assignment.unit_key if assignment else None,
                segment=segment_text(plan.segment),
                index_version=engine.version,
            )
        )
        labels = (
            plan.surface,
            assignment.experiment.name if assignment else NONE_LABEL,
            assignment.variant.name if assignment else NONE_LABEL,
        )
        counter = self._counters.get(labels)
        if counter is None:
            counter = self._counters[labels] = self.responses.labels(*labels)
        counter.inc()

    def close(self) -> None:
        self.served.close()
        self.clicks.shutdown()


@functools.lru_cache(maxsize=4096)
def segment_text(segment: Segment) -> str:
    """A segment as stored: compact JSON of its fields (cached: few distinct segments recur)."""
    return json.dumps(segment.as_dict(), separators=(",", ":"), sort_keys=True)
