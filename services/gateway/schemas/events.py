"""The event feed (GET /v1/events): its query and its page."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from libs.common import events, limits
from services.gateway.pagination import Limit
from services.gateway.schemas.base import QueryModel, ResponseModel, TimestampOut
from services.gateway.schemas.types import text

# Long enough for every event type at once, comma-separated.
TYPES_MAX_CHARS = sum(len(t) + 1 for t in events.WEBHOOK_EVENT_TYPES)


class EventsQuery(QueryModel):
    after: (
        Annotated[
            str, text(limits.CURSOR_MAX_CHARS, description="The `cursor` of the last event you handled.")
        ]
        | None
    ) = None
    types: (
        Annotated[
            str,
            text(
                TYPES_MAX_CHARS,
                description="Only these event types, comma-separated (e.g. `invoice.paid,invoice.expired`).",
            ),
        ]
        | None
    ) = None
    limit: Limit = limits.PAGE_LIMIT_DEFAULT
    wait: int = Field(
        default=0,
        ge=0,
        le=limits.EVENTS_WAIT_MAX_SECONDS,
        description="Seconds to wait for an event when there is none yet after `after` (long poll).",
    )


class FeedEvent(ResponseModel):
    cursor: str = Field(description="Pass as `after` to read the events after this one.")
    sequence: int = Field(description="The event's number in your feed: 1, 2, 3, ... without gaps.")
    id: str = Field(description="The event id (a webhook's `Checkout-Event-Id`).")
    type: str
    created_at: TimestampOut
    recorded_at: TimestampOut
    data: dict[str, Any] = Field(description="The event's data, as in its webhook's body.")


class EventPage(ResponseModel):
    data: list[FeedEvent]
    next_cursor: str | None = Field(
        description="Pass as `after` for the next page; null once you have reached the end (then "
        "carry on from the last event's `cursor`)."
    )
