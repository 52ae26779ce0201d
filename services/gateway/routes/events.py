"""/v1/events: a merchant's event feed (merchant key) — its invoice events in a gapless order,
with the bodies its webhooks carry, so a receiver that was down catches up by reading on from
the last event it handled. `wait` long-polls: the merchant service answers as soon as an event
is recorded (services/merchant/feed)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from checkout.merchant.v1 import merchant_pb2

from libs.common import events, limits
from services.gateway.errors import ApiError
from services.gateway.operations import Args, Operation, Rule
from services.gateway.schemas.base import timestamp_of
from services.gateway.schemas.events import EventPage, EventsQuery, FeedEvent
from services.gateway.state import state_of

TAG = "Events"
_PREFIX = b"feed:"
# Beyond its wait, how long the gateway gives the service to answer.
WAIT_MARGIN_SECONDS = 10.0


def cursor_of(sequence: int) -> str:
    """Opaque to clients: they pass back what they were given."""
    return base64.urlsafe_b64encode(_PREFIX + str(sequence).encode()).decode().rstrip("=")


def sequence_of(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    number = raw.removeprefix(_PREFIX)
    if not raw.startswith(_PREFIX) or not number.isdigit() or len(number) > 18:
        raise ApiError.invalid("after", "is not a cursor of this feed: pass an event's `cursor`")
    return int(number)


def _types(raw: str | None) -> list[str]:
    if not raw:
        return []
    wanted = [t.strip() for t in raw.split(",") if t.strip()]
    unknown = [t for t in wanted if t not in events.WEBHOOK_EVENT_TYPES]
    if unknown:
        raise ApiError.invalid("types", f"unknown event type {unknown[0]!r}")
    return list(dict.fromkeys(wanted))


def _event(e: merchant_pb2.FeedEvent) -> FeedEvent:
    body: dict[str, Any] = orjson.loads(e.body)
    return FeedEvent(
        cursor=cursor_of(e.sequence),
        sequence=e.sequence,
        id=e.id,
        type=e.type,
        created_at=body["created_at"],
        recorded_at=timestamp_of(e, "recorded_at") or "",
        data=body["data"],
    )


async def list_events(args: Args[None, EventsQuery]) -> EventPage:
    q = args.query
    after = sequence_of(q.after) if q.after else 0
    backends = state_of(args.request).backends
    listed = await backends.call(
        backends.merchants(backends.shard_of(args.merchant_id)).ListEvents,
        merchant_pb2.ListEventsRequest(
            merchant_id=str(args.merchant_id),
            after_sequence=after,
            types=_types(q.types),
            limit=q.limit,
            wait_seconds=q.wait,
        ),
        args.context(),
        deadline=backends.deadline + q.wait + WAIT_MARGIN_SECONDS if q.wait else None,
    )
    data = [_event(e) for e in listed.events]
    return EventPage(data=data, next_cursor=data[-1].cursor if listed.more else None)


operations = [
    Operation(
        "GET", "/v1/events", list_events, "Your event feed, in order, from a cursor", TAG, "merchant",
        response=EventPage, permission="webhooks:read", query=EventsQuery, errors=(409,),
        rules=(
            Rule(r"after", r".+", "after: an event's `cursor` from this feed."),
            Rule(r"types", r"unknown event type .+", "types: event types webhooks can subscribe to."),
        ),
        description="Every invoice event of yours, numbered 1, 2, 3, ... in the order it was recorded "
        "for you, with the `data` its webhook carries; kept for CHECKOUT_EVENT_FEED_RETENTION_DAYS "
        "(default 90). Read on from the `cursor` of the last event you handled: nothing is skipped "
        "and nothing comes twice; a cursor whose next events were already deleted by the retention is "
        "409 `failed_precondition` on `after` rather than a silent skip. With `wait` (at most "
        f"{limits.EVENTS_WAIT_MAX_SECONDS} s) an empty answer waits for the next event.",
    ),
]  # fmt: skip
