"""Audience segments: who a request comes from, and the rules that match a segment.

A request's segment is the storefront's context (``channel``, ``device``, ``region``, sent in
the body's ``context`` or as query parameters) plus ``visitor``: ``new`` or ``returning``,
derived from the visitor's own history (see ``aisle.service.experiments.context``). Rules files
and experiments name segments with ``SegmentMatch``; reports break results down by them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Visitor = Literal["new", "returning"]
SEGMENT_FIELDS: tuple[str, ...] = ("channel", "device", "region", "visitor")
_LABEL = r"^[A-Za-z0-9][A-Za-z0-9_.:/ -]{0,63}$"


class RequestContext(BaseModel):
    """What the storefront says about the request (each optional, free labels of ≤ 64 chars)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: str | None = Field(None, pattern=_LABEL, description="Traffic source, e.g. web, app, email, ads.")
    device: str | None = Field(None, pattern=_LABEL, description="e.g. mobile, desktop, tablet.")
    region: str | None = Field(None, pattern=_LABEL, description="e.g. a country or market code.")


@dataclass(frozen=True)
class Segment:
    """The segment of one request; labels are case-folded so that ``Mobile`` and ``mobile`` agree."""

    channel: str | None = None
    device: str | None = None
    region: str | None = None
    visitor: Visitor = "new"

    @classmethod
    def of(cls, context: RequestContext | None, visitor: Visitor) -> Segment:
        if context is None:
            return cls(visitor=visitor)
        return cls(_fold(context.channel), _fold(context.device), _fold(context.region), visitor)

    def as_dict(self) -> dict[str, str | None]:
        return {name: getattr(self, name) for name in SEGMENT_FIELDS}


def _fold(label: str | None) -> str | None:
    return label.strip().casefold() if label else None


class SegmentMatch(BaseModel):
    """A segment condition: every field given must match (a label or any of a list)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channel: str | list[str] | None = None
    device: str | list[str] | None = None
    region: str | list[str] | None = None
    visitor: Visitor | None = None

    def matches(self, segment: Segment) -> bool:
        for name in ("channel", "device", "region"):
            wanted = getattr(self, name)
            if wanted is None:
                continue
            labels = {_fold(label) for label in ([wanted] if isinstance(wanted, str) else wanted)}
            if getattr(segment, name) not in labels:
                return False
        return self.visitor is None or self.visitor == segment.visitor
