"""The event feed's use cases: reading a merchant's feed (waiting for its next event when asked),
and the upkeep that drops events past the retention.

A long poll waits on a per-shard wake that the webhooks projection's consumer sets after each
commit in this process, so a waiting reader answers as soon as an event is recorded here; a
recording by another replica of the service is seen at the next FALLBACK_POLL_SECONDS.

A read takes an `EventsQuery` and answers with an `EventsPage` (plain values, each with the
fields of its API message); grpc_api.py maps them to and from protobuf."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from libs.common import ids
from libs.common.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from libs.common.events import WEBHOOK_EVENT_TYPES
from libs.common.eventstore import utcnow
from libs.common.limits import EVENTS_WAIT_MAX_SECONDS, PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX
from libs.common.messaging import Envelope
from libs.common.service import Runtime
from libs.common.supervise import Loop, LoopFactory
from services.merchant.feed import repository

log = logging.getLogger("checkout.merchant.feed")
FALLBACK_POLL_SECONDS = 0.5
RETENTION_ROUND_SECONDS = 3600.0
RETENTION_BATCH = 5000


@dataclass(frozen=True)
class EventsQuery:
    """Up to `limit` of a merchant's events after `after_sequence` (0: from the start), of
    `types` (empty: every type), waiting up to `wait_seconds` for the first when there is none."""

    merchant_id: str
    after_sequence: int
    types: Sequence[str]
    limit: int  # 0: the default page
    wait_seconds: int


@dataclass(frozen=True)
class FeedEvent:
    sequence: int
    id: str
    type: str
    body: str
    recorded_at: dt.datetime | None


@dataclass(frozen=True)
class EventsPage:
    events: tuple[FeedEvent, ...]
    more: bool  # there are more after the last of these


class Feed:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.retention = dt.timedelta(days=runtime.config.event_feed_retention_days)
        # One event per shard, replaced at each wake: a reader takes it before reading, so a
        # commit between its read and its wait is not missed.
        self._wakes: dict[int, asyncio.Event] = {}

    def keeps(self, occurred_at: dt.datetime) -> bool:
        """Whether an event of that age belongs in the feed (a replay of old events adds none)."""
        return occurred_at > utcnow() - self.retention

    async def after_commit(self, event: Envelope) -> None:
        wake = self._wakes.pop(event.shard, None)
        if wake is not None:
            wake.set()

    async def list_events(self, request: EventsQuery) -> EventsPage:
        merchant_id = ids.parse_id(request.merchant_id)
        if merchant_id is None:
            raise NotFound("merchant not found")
        limit = request.limit or PAGE_LIMIT_DEFAULT
        if not 1 <= limit <= PAGE_LIMIT_MAX:
            raise InvalidArgument.field("limit", f"must be between 1 and {PAGE_LIMIT_MAX}")
        if not 0 <= request.wait_seconds <= EVENTS_WAIT_MAX_SECONDS:
            raise InvalidArgument.field("wait", f"must be between 0 and {EVENTS_WAIT_MAX_SECONDS}")
        unknown = sorted(set(request.types) - set(WEBHOOK_EVENT_TYPES))
        if unknown:
            raise InvalidArgument.field("types", f"unknown event type {unknown[0]!r}")
        if request.after_sequence < 0:
            raise InvalidArgument.field("after", "is not a cursor of this feed")
        # UNAVAILABLE for a shard served elsewhere (the gateway's table is behind), as everywhere.
        pool, shard = self.rt.pool_for(merchant_id), self.rt.shard_of(merchant_id)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + request.wait_seconds
        checked = request.after_sequence == 0
        while True:
            wake = self._wakes.get(shard) or self._wakes.setdefault(shard, asyncio.Event())
            rows = await repository.events_after(
                pool, merchant_id, request.after_sequence, request.types, limit + 1
            )
            if not checked:
                checked = True
                # The very next number read back is the common case, and proves nothing was cut.
                if not (rows and rows[0]["sequence"] == request.after_sequence + 1):
                    await self._refuse_if_cut(pool, merchant_id, request.after_sequence)
            left = deadline - loop.time()
            if rows or left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, FALLBACK_POLL_SECONDS)):
                    await wake.wait()
        page = rows[:limit]
        return EventsPage(
            events=tuple(
                FeedEvent(
                    sequence=r["sequence"],
                    id=str(r["event_id"]),
                    type=r["event_type"],
                    body=r["body"],
                    recorded_at=r["recorded_at"],
                )
                for r in page
            ),
            more=len(rows) > limit,
        )

    async def _refuse_if_cut(self, pool: asyncpg.Pool, merchant_id: uuid.UUID, after: int) -> None:
        oldest = await repository.oldest_kept(pool, merchant_id)
        if oldest is not None and oldest > after + 1:
            # Reading on would skip what the retention deleted, and the receiver would never
            # know: it must catch up another way (the API's lists, or an export) and start again.
            raise FailedPrecondition(
                f"after: the events following this cursor were older than the feed's retention "
                f"({self.retention.days} days) and have been deleted; catch up from the invoices "
                "list or an export, then read the feed from its start (no `after`)",
                [FieldViolation("after", "past the feed's retention")],
            )

    # -- upkeep ---------------------------------------------------------------------------------
    def shard_loops(self, shard: int) -> list[Loop]:
        return [Loop(f"event-feed-retention-s{shard}", self._retention_loop(shard))]

    def _retention_loop(self, shard: int) -> LoopFactory:
        async def run() -> None:
            while True:
                try:
                    await prune(self.rt.pools[shard], utcnow() - self.retention)
                except (asyncpg.PostgresError, OSError) as error:
                    log.warning("event feed retention (shard %d) failed, will retry: %s", shard, error)
                await asyncio.sleep(RETENTION_ROUND_SECONDS)

        return run


async def prune(pool: asyncpg.Pool, cutoff: dt.datetime) -> int:
    """Deletes a shard's events recorded before `cutoff`, in batches (short transactions); how
    many. Only a feed's oldest end goes: a later number is never recorded earlier."""
    deleted = 0
    while True:
        done = await repository.delete_recorded_before(pool, cutoff, RETENTION_BATCH)
        deleted += done
        if done < RETENTION_BATCH:
            return deleted
