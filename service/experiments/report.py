"""``GET /experiments/{name}`` and ``aisle experiments report NAME``: what an experiment measured.

Per variant: visitors (enrolled units), impressions (ranked responses shown to them under the
experiment), clicks on those responses, and the add-to-carts, purchases and revenue of the
visitors from their first exposure to the experiment's end (every one, attributed or not: the
experiment randomised visitors, so their whole behaviour is the outcome). Rates, each with a
95 % interval (``aisle.service.experiments.stats``):

* ``ctr``: clicks / impressions (a ratio of per-visitor sums, delta method);
* ``add_to_cart_rate``, ``conversion``: shares of visitors with one or more add-to-carts or
  purchases (Wilson);
* ``revenue_per_visitor``: mean revenue per visitor (normal interval).

Each non-control variant has its lift over control per metric (interval and fixed-horizon
p-value) and, for conversion and revenue, the always-valid sequential p-value (mSPRT, running
minimum over every look at the report, each look stored). ``sample_ratio`` checks the visitors
per variant against the configured shares; ``plan`` says how many visitors per variant the
fixed-horizon test needs for the experiment's ``minimum_effect``; ``segments`` repeats the
variant metrics per segment field and value (the segment of each visitor's first exposure).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from aisle.service.attribution.served import ServedLog
from aisle.service.experiments.config import ExperimentConfig
from aisle.service.experiments.stats import (
    Estimate,
    Lift,
    lift,
    mean_estimate,
    msprt_p_value,
    pooled_share_variance,
    ratio_estimate,
    sample_ratio_p_value,
    share_estimate,
    share_visitors_needed,
    visitors_needed,
)
from aisle.service.ranking.segments import SEGMENT_FIELDS

#: Seconds an outcome may precede the first exposure (client clocks run a little ahead).
CLOCK_SLACK_S = 60.0
#: SRM alarm level: a p-value this small is a broken assignment or logging, not bad luck.
SRM_ALPHA = 0.001
METRICS = ("ctr", "add_to_cart_rate", "conversion", "revenue_per_visitor")
SEQUENTIAL_METRICS = ("conversion", "revenue_per_visitor")
SHARE_METRICS = ("add_to_cart_rate", "conversion")
PEEKING = (
    "p_value is a fixed-horizon test: it is valid when read once, after every variant has reached "
    "plan.visitors_needed_per_variant; reading it repeatedly and stopping at the first p < 0.05 inflates "
    "false positives. sequential_p_value (mSPRT, the running minimum over every look at this report) is "
    "valid whenever it is read: stop early only on it."
)


@dataclass
class VisitorOutcomes:
    """One row per enrolled visitor of a variant."""

    impressions: np.ndarray
    clicks: np.ndarray
    carts: np.ndarray
    purchases: np.ndarray
    revenue: np.ndarray

    @classmethod
    def from_rows(cls, rows: list[tuple]) -> VisitorOutcomes:
        columns = np.array([row[:5] for row in rows], dtype=np.float64).reshape(-1, 5)
        return cls(*(columns[:, i] for i in range(5)))

    def __len__(self) -> int:
        return len(self.impressions)

    def subset(self, mask: np.ndarray) -> VisitorOutcomes:
        return VisitorOutcomes(
            self.impressions[mask], self.clicks[mask], self.carts[mask], self.purchases[mask], self.revenue[mask]
        )

    def estimates(self) -> dict[str, Estimate]:
        n = len(self)
        return {
            "ctr": ratio_estimate(self.clicks, self.impressions),
            "add_to_cart_rate": share_estimate(int((self.carts > 0).sum()), n),
            "conversion": share_estimate(int((self.purchases > 0).sum()), n),
            "revenue_per_visitor": mean_estimate(self.revenue),
        }

    def converted(self, metric: str) -> int:
        """Visitors with one or more add-to-carts (``add_to_cart_rate``) or purchases (``conversion``)."""
        return int(((self.carts if metric == "add_to_cart_rate" else self.purchases) > 0).sum())

    def totals(self) -> dict[str, float | int]:
        return {
            "visitors": len(self),
            "impressions": int(self.impressions.sum()),
            "clicks": int(self.clicks.sum()),
            "add_to_carts": int(self.carts.sum()),
            "purchases": int(self.purchases.sum()),
            "revenue": round(float(self.revenue.sum()), 2),
        }


# One SQL text for both backends (ServedLog.query names the tables): no boolean sums, and every
# selected exposure column grouped (PostgreSQL requires it).
_OUTCOMES = (
    "SELECT e.variant, e.impressions,"
    " coalesce(sum(CASE WHEN a.type = 'click' AND a.experiment = :name THEN 1 ELSE 0 END), 0),"
    " coalesce(sum(CASE WHEN a.type = 'add_to_cart' THEN 1 ELSE 0 END), 0),"
    " coalesce(sum(CASE WHEN a.type = 'purchase' THEN 1 ELSE 0 END), 0),"
    " coalesce(sum(CASE WHEN a.type = 'purchase' THEN coalesce(a.revenue, 0) END), 0),"
    " e.segment"
    " FROM {exposures} e LEFT JOIN {attributions} a"
    " ON (a.user_key = e.unit_key OR a.session_key = e.unit_key)"
    " AND a.ts >= e.first_ts - :slack AND a.ts < :end"
    " WHERE e.experiment = :name GROUP BY e.experiment, e.unit_key, e.variant, e.impressions, e.segment"
)


def load_outcomes(experiment: ExperimentConfig, served: ServedLog) -> dict[str, tuple[VisitorOutcomes, list[dict]]]:
    """Per variant: the visitors' outcomes and their segments (every replica's, on PostgreSQL)."""
    _, end = experiment.window()
    found: dict[str, list[tuple]] = {variant.name: [] for variant in experiment.variants}
    params = {"name": experiment.name, "slack": CLOCK_SLACK_S, "end": end if math.isfinite(end) else 1e18}
    for variant, impressions, clicks, carts, purchases, revenue, segment in served.query(_OUTCOMES, params):
        if variant in found:
            found[variant].append((int(impressions), int(clicks), int(carts), int(purchases), float(revenue), segment))
    return {
        name: (VisitorOutcomes.from_rows(rows), [json.loads(row[5]) if row[5] else {} for row in rows])
        for name, rows in found.items()
    }


def experiment_report(
    experiment: ExperimentConfig,
    served: ServedLog,
    *,
    now: float | None = None,
    record_looks: bool = True,
) -> dict[str, Any]:
    """The report (see the module docstring); ``record_looks`` stores this look for mSPRT."""
    now = time.time() if now is None else now
    data = load_outcomes(experiment, served)
    control = experiment.control
    control_outcomes = data[control.name][0]
    control_estimates = control_outcomes.estimates()
    variants = []
    for variant in experiment.variants:
        outcomes = data[variant.name][0]
        estimates = control_estimates if variant.control else outcomes.estimates()
        entry: dict[str, Any] = {
            "name": variant.name,
            "control": variant.control,
            "share": variant.share,
            **outcomes.totals(),
            "metrics": {metric: estimates[metric].as_dict() for metric in METRICS},
        }
        if not variant.control:
            entry["lift"] = _lifts(experiment, variant.name, outcomes, control_outcomes, served, now, record_looks)
        variants.append(entry)
    visitors = [len(data[variant.name][0]) for variant in experiment.variants]
    srm_p = sample_ratio_p_value(visitors, [variant.share for variant in experiment.variants])
    return {
        "experiment": experiment.name,
        "status": _status(experiment, now),
        "surfaces": list(experiment.surfaces),
        "unit": experiment.unit,
        "generated_at": round(now, 3),
        "variants": variants,
        "sample_ratio": {
            "visitors": dict(zip((variant.name for variant in experiment.variants), visitors)),
            "expected_shares": {variant.name: variant.share for variant in experiment.variants},
            "p_value": round(srm_p, 6),
            "mismatch": srm_p < SRM_ALPHA,
            "alpha": SRM_ALPHA,
        },
        "plan": _plan(experiment, control_outcomes, control_estimates, min(visitors) if visitors else 0),
        "peeking": PEEKING,
        "segments": _segments(experiment, data),
    }


def variant_lifts(treatment: VisitorOutcomes, control: VisitorOutcomes) -> dict[str, Lift]:
    """Lift over control per metric; shares are tested with the pooled (two-proportion) z-test."""
    estimates, control_estimates = treatment.estimates(), control.estimates()
    out = {}
    for metric in METRICS:
        null_variance = None
        if metric in SHARE_METRICS:
            null_variance = pooled_share_variance(
                [treatment.converted(metric), control.converted(metric)], [len(treatment), len(control)]
            )
        out[metric] = lift(estimates[metric], control_estimates[metric], null_variance)
    return out


def _lifts(
    experiment: ExperimentConfig,
    variant: str,
    treatment: VisitorOutcomes,
    control_outcomes: VisitorOutcomes,
    served: ServedLog,
    now: float,
    record_looks: bool,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    control = control_outcomes.estimates()
    for metric, result in variant_lifts(treatment, control_outcomes).items():
        entry: dict[str, Any] = result.as_dict()
        if metric in SEQUENTIAL_METRICS:
            tau = experiment.minimum_effect * control[metric].value
            look = msprt_p_value(result.difference, result.difference_variance, tau * tau if math.isfinite(tau) else 0)
            if record_looks:
                look = served.record_look(experiment.name, metric, variant, now, look)
            entry["sequential_p_value"] = round(look, 6)
        out[metric] = entry
    return out


def _plan(
    experiment: ExperimentConfig, control: VisitorOutcomes, estimates: dict[str, Estimate], smallest_arm: int
) -> dict[str, Any]:
    """Visitors per variant for 80 % power at ``minimum_effect`` (two-sided, α = 0.05)."""
    effect = experiment.minimum_effect
    conversion = estimates["conversion"].value
    needed_conversion = share_visitors_needed(conversion, effect) if math.isfinite(conversion) else None
    revenue = control.revenue
    needed_revenue = (
        visitors_needed(float(revenue.mean()), float(revenue.var(ddof=1)), effect) if len(revenue) > 1 else None
    )
    return {
        "minimum_effect": effect,
        "alpha": 0.05,
        "power": 0.8,
        "visitors_needed_per_variant": {"conversion": needed_conversion, "revenue_per_visitor": needed_revenue},
        "smallest_variant_visitors": smallest_arm,
        "ready": needed_conversion is not None and smallest_arm >= needed_conversion,
        "basis": "the control's observed conversion and revenue so far",
    }


def _segments(experiment: ExperimentConfig, data: dict[str, tuple[VisitorOutcomes, list[dict]]]) -> dict[str, Any]:
    control = experiment.control.name
    out: dict[str, Any] = {}
    for field in SEGMENT_FIELDS:
        values = sorted({str(segment.get(field)) for _, segments in data.values() for segment in segments})
        if not values or values == ["None"]:
            continue
        per_value: dict[str, Any] = {}
        for value in values:
            parts: dict[str, VisitorOutcomes] = {}
            for variant in experiment.variants:
                outcomes, segments = data[variant.name]
                mask = np.array([str(segment.get(field)) == value for segment in segments], dtype=bool)
                parts[variant.name] = outcomes.subset(mask) if len(mask) else outcomes
            entries: dict[str, Any] = {}
            for name, part in parts.items():
                estimates = part.estimates()
                entries[name] = {
                    "visitors": len(part),
                    "metrics": {metric: estimates[metric].as_dict() for metric in METRICS},
                }
                if name != control:
                    entries[name]["conversion_lift"] = variant_lifts(part, parts[control])["conversion"].as_dict()
            per_value["unknown" if value == "None" else value] = entries
        out[field] = per_value
    return out


def _status(experiment: ExperimentConfig, now: float) -> str:
    if not experiment.enabled:
        return "stopped"
    start, end = experiment.window()
    if now < start:
        return "scheduled"
    return "ended" if now >= end else "running"
