"""Experiments as the config file declares them (``experiments:``, see docs/CONTRACT.md).

Example::

    experiments:
      - name: home-recs
        surfaces: [recommendations, search, similar]
        start: 2026-12-01T00:00:00Z        # optional; also ``end`` and ``enabled: false``
        variants:
          - {name: control, share: 0.5, control: true}   # no personalization
          - name: personal
            share: 0.5
            settings: {blend: 0.9, retrieval: hybrid}
            rules: {diversity: {lambda: 0.7}, exploration: {share: 0.1}}

A variant is an overlay: ``settings`` change how the request is ranked (see
``VariantSettings``), ``rules`` are merged over the surface's rules like a request's own. The
``control`` variant serves without personalization (the popular list, plain search), unless its
``settings`` turn it back on.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aisle.service.ranking.rules import RulesOverride, Surface
from aisle.service.ranking.segments import SegmentMatch

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VariantSettings(_Config):
    """Settings a variant changes; each unset one keeps the service's own.

    ``blend`` is the profile's largest share of a score (``recommend_profile_cap`` for
    recommendations, the same cap on the personal share of search and similar items).
    """

    personalization: bool | None = Field(None, description="False serves as to an anonymous visitor.")
    blend: float | None = Field(None, ge=0, le=1, allow_inf_nan=False)
    retrieval: Literal["hybrid", "dense", "lexical"] | None = Field(
        None, description="Search retrieval unless the request names one."
    )
    fusion_method: Literal["weighted", "rrf"] | None = None
    fusion_dense_weight: float | None = Field(None, ge=0, le=10, allow_inf_nan=False)
    fusion_lexical_weight: float | None = Field(None, ge=0, le=10, allow_inf_nan=False)
    bought_together_weight: float | None = Field(None, ge=0, le=10, allow_inf_nan=False)


class Variant(_Config):
    name: str = Field(..., pattern=_NAME)
    share: float = Field(..., gt=0, le=1, allow_inf_nan=False, description="Share of the experiment's visitors.")
    control: bool = False
    settings: VariantSettings = VariantSettings()
    rules: RulesOverride | None = None

    @property
    def personalized(self) -> bool:
        """Control defaults to no personalization; every other variant to personalization."""
        if self.settings.personalization is not None:
            return self.settings.personalization
        return not self.control


class ExperimentConfig(_Config):
    """One experiment: which surfaces it covers, who is in it, its variants and when it runs."""

    name: str = Field(..., pattern=_NAME)
    surfaces: tuple[Surface, ...] = Field(..., min_length=1)
    variants: tuple[Variant, ...] = Field(..., min_length=2, max_length=20)
    enabled: bool = True
    start: datetime | None = None
    end: datetime | None = None
    salt: str | None = Field(
        None, max_length=128, description="Hash salt of the assignment (default: the name); change it to reshuffle."
    )
    unit: Literal["user", "session"] = Field(
        "user", description="user: by user id, else session id; session: by session id only."
    )
    segment: SegmentMatch | None = Field(None, description="Only requests of this segment enter the experiment.")
    minimum_effect: float = Field(
        0.1, gt=0, le=10, allow_inf_nan=False, description="Relative lift the report plans its traffic for."
    )

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        names = [variant.name for variant in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"experiment '{self.name}': variant names must be unique, got {names}")
        controls = [variant.name for variant in self.variants if variant.control]
        if len(controls) != 1:
            raise ValueError(f"experiment '{self.name}': exactly one variant must be the control, got {controls}")
        total = sum(variant.share for variant in self.variants)
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"experiment '{self.name}': variant shares must add up to 1, got {total:g}")
        if self.start is not None and self.end is not None and epoch(self.start) >= epoch(self.end):
            raise ValueError(f"experiment '{self.name}': start must be before end")
        return self

    @property
    def control(self) -> Variant:
        return next(variant for variant in self.variants if variant.control)

    @property
    def salt_text(self) -> str:
        return self.salt if self.salt is not None else self.name

    def running(self, now: float) -> bool:
        """Enabled and within ``[start, end)``."""
        if not self.enabled:
            return False
        if self.start is not None and now < epoch(self.start):
            return False
        return self.end is None or now < epoch(self.end)

    def window(self) -> tuple[float, float]:
        """``(start, end)`` in Unix seconds (open bounds as ±inf)."""
        start = epoch(self.start) if self.start is not None else -math.inf
        end = epoch(self.end) if self.end is not None else math.inf
        return start, end

    def variant(self, name: str) -> Variant | None:
        return next((variant for variant in self.variants if variant.name == name), None)


def epoch(moment: datetime) -> float:
    """Unix seconds; a time without a zone is UTC."""
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)).timestamp()


def check_unique_names(experiments: list[ExperimentConfig]) -> list[ExperimentConfig]:
    """Refuses two experiments with one name (their reports would mix).

    Experiments may overlap on a surface: a request enters the first running one, in file order.
    """
    names = [experiment.name for experiment in experiments]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"experiments: names must be unique, repeated: {duplicates}")
    return experiments
