"""Sticky, salted assignment of visitors to variants.

A visitor's bucket is ``sha256(salt ‖ unit key)`` read as a number in [0, 1); the variants
take consecutive slices of [0, 1) in file order, sized by their shares. The unit key is the
visitor's keyed hash (``aisle.service.events.identity``): the same user id lands in the same
variant on every request, replica and restart, and no raw id is needed. Changing the salt
reshuffles every visitor; changing shares moves only the visitors at the slices' edges.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from aisle.service.experiments.config import ExperimentConfig, Variant
from aisle.service.ranking.segments import Segment


@dataclass(frozen=True)
class Assignment:
    """The experiment and variant serving one request, and the visitor unit it was drawn for."""

    experiment: ExperimentConfig
    variant: Variant
    unit_key: str


def bucket(salt: str, unit_key: str) -> float:
    """A uniform number in [0, 1) fixed by the salt and the unit."""
    digest = hashlib.sha256(salt.encode("utf-8") + b"\x00" + unit_key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def choose_variant(experiment: ExperimentConfig, unit_key: str) -> Variant:
    point = bucket(experiment.salt_text, unit_key)
    edge = 0.0
    for variant in experiment.variants:
        edge += variant.share
        if point < edge:
            return variant
    return experiment.variants[-1]  # shares add up to 1 within rounding


def unit_of(experiment: ExperimentConfig, user_key: str | None, session_key: str | None) -> str | None:
    """The key a visitor is randomised by; None (not enrolled) without the needed id."""
    if experiment.unit == "session":
        return session_key
    return user_key or session_key


def assign(
    experiments: Sequence[ExperimentConfig],
    surface: str,
    user_key: str | None,
    session_key: str | None,
    segment: Segment,
    now: float,
) -> Assignment | None:
    """The first running experiment covering ``surface`` and ``segment`` that can enrol the visitor."""
    for experiment in experiments:
        if surface not in experiment.surfaces or not experiment.running(now):
            continue
        if experiment.segment is not None and not experiment.segment.matches(segment):
            continue
        unit_key = unit_of(experiment, user_key, session_key)
        if unit_key is None:
            continue
        return Assignment(experiment, choose_variant(experiment, unit_key), unit_key)
    return None
