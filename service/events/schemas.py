"""The ``POST /events`` body: events with validated types and timestamps.

Timestamps are ISO-8601 (``2024-05-01T12:00:00Z``; no zone means UTC) or Unix seconds (a
number, or a string of one). Anything else, a value before 1970, or one more than
``MAX_FUTURE_S`` ahead of the server clock is refused with a 422 naming the event and saying
why (a value ~1000× too large is reported as probable milliseconds). A timestamp slightly ahead
(clock skew) is stored as the arrival time, so that no event ever counts more than a fresh one.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

EventType = Literal["view", "click", "add_to_cart", "purchase"]
#: How far ahead of the server clock a timestamp may be (clock skew) before it is refused.
MAX_FUTURE_S = 300.0


def parse_timestamp(value: Any, now: float | None = None) -> float:
    """Unix seconds from ISO-8601 text or a number.

    Raises:
        ValueError: with a message fit for the client.
    """
    if isinstance(value, bool):
        raise ValueError("must be an ISO-8601 string or Unix seconds, not a boolean")
    if isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                raise ValueError(
                    f"'{value[:64]}' is neither ISO-8601 (e.g. 2024-05-01T12:00:00Z) nor Unix seconds"
                ) from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            seconds = parsed.timestamp()
    elif isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:  # an integer beyond any float
            raise ValueError("is not a plausible Unix time (far beyond any date)") from None
    else:
        raise ValueError("must be an ISO-8601 string or Unix seconds")
    if not math.isfinite(seconds):
        raise ValueError("must be a finite number of seconds")
    if seconds < 0:
        raise ValueError("is before 1970-01-01")
    now = time.time() if now is None else now
    if seconds > now + MAX_FUTURE_S:
        hint = " (milliseconds? send Unix seconds)" if seconds > now * 100 else ""
        raise ValueError(f"is in the future{hint}")
    return seconds


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    event_id: str = Field(..., min_length=1, max_length=256, description="Unique per event; re-sending it is harmless.")
    user_id: str | None = Field(None, min_length=1, max_length=256)
    session_id: str | None = Field(None, min_length=1, max_length=256)
    item_id: str = Field(..., min_length=1, max_length=256)
    type: EventType
    #: Parsed to Unix seconds (a float) by the validator, whichever form was sent.
    timestamp: float | str | None = Field(None, description="ISO-8601 or Unix seconds; the arrival time when absent.")
    # Attribution (aisle.service.attribution): which response the shopper acted on.
    request_id: str | None = Field(
        None, min_length=1, max_length=128, description="The request_id of the ranked response acted on."
    )
    position: int | None = Field(
        None, ge=1, le=1000, description="1-based position of the item in that response (derived when absent)."
    )
    revenue: float | None = Field(
        None, ge=0, le=1e9, allow_inf_nan=False, description="A purchase's amount (finite, ≥ 0)."
    )

    @model_validator(mode="after")
    def _revenue_only_on_purchases(self) -> EventIn:
        if self.revenue is not None and self.type != "purchase":
            raise PydanticCustomError(
                "revenue", "revenue: only purchase events carry revenue, this one is a {kind}", {"kind": self.type}
            )
        return self

    @field_validator("timestamp", mode="before")
    @classmethod
    def _parse_timestamp(cls, value: Any) -> float | None:
        if value is None:
            return None
        try:
            return parse_timestamp(value)
        except ValueError as exc:  # a custom error keeps pydantic's "Value error, " prefix out
            raise PydanticCustomError("timestamp", str(exc)) from None

    def seconds(self, arrival: float) -> float:
        """The event time in Unix seconds, never later than its arrival (clock skew)."""
        return arrival if self.timestamp is None else min(float(self.timestamp), arrival)


class EventsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventIn] = Field(..., description="The batch; unknown item ids are reported, not fatal.")


class EventsResponse(BaseModel):
    accepted: int = Field(..., description="Events newly stored (durably, before this answer).")
    duplicates: int = Field(..., description="Events whose event_id was already stored; nothing changed.")
    unknown_items: list[str] = Field(
        default_factory=list,
        description="Item ids not in the served index version: stored, but they shape no profile until indexed.",
    )
    request_id: str | None = None
