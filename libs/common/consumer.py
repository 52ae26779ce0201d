"""Projection consumers: durable JetStream pull consumers that apply another service's events
to a local read model.

The read-model change and the `processed_events` row are written in one transaction and the
message is acked only after that commit. A crash before the ack means redelivery; the
`processed_events` row makes the second delivery a no-op, so an event is applied exactly once.

An event whose apply keeps failing (not an outage: libs/common/deadletters.Parking decides) is
parked in `dead_letters` after `max_attempts` tries and acked, so the events after it flow on;
the operator retries it later (`retry_parked`). A rebuild skips parked and failing events and
reports them instead of aborting.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import asyncpg
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from opentelemetry import trace

from libs.common import context, deadletters, ids, telemetry
from libs.common.db import Connection
from libs.common.eventstore import utcnow
from libs.common.messaging import Envelope, subject
from libs.common.outages import is_outage, is_transient

log = logging.getLogger("checkout.consumer")
tracer = trace.get_tracer("checkout.consumer")


class Projection(Protocol):
    """A read model fed by events. `apply` runs inside the consumer's transaction."""

    name: str
    event_types: Sequence[str]

    async def apply(self, conn: Connection, event: Envelope) -> None: ...


AfterCommit = Callable[[Envelope], Awaitable[None]]


class ProjectionConsumer:
    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        projection: Projection,
        *,
        service: str,
        shard: int,
        stream: str,
        subject_prefix: str = "events",
        ack_wait_seconds: float = 30.0,
        batch: int = 50,
        fetch_timeout: float = 1.0,
        after_commit: AfterCommit | None = None,
        max_attempts: int = 5,
        retry_seconds: float = 2.0,
        dead_letter_slot: int | None = None,
    ) -> None:
        self.pool = pool
        self.js = js
        self.projection = projection
        self.shard = shard
        self.stream = stream
        self.durable = f"{service}-{projection.name}-s{shard}"
        self.filters = [subject(subject_prefix, shard, t) for t in projection.event_types]
        self.ack_wait = ack_wait_seconds
        self.batch = batch
        self.fetch_timeout = fetch_timeout
        self.after_commit = after_commit
        self.service = service
        self.retry_seconds = retry_seconds
        self.parking = deadletters.Parking(max_attempts)
        # Dead-letter ids carry a slot of this shard (so the operator's retry routes here);
        # by default the event's own, which lives on the shard whose subject it came from.
        self.dead_letter_slot = dead_letter_slot
        self.applied = 0
        self.parked = 0

    async def _subscription(self) -> JetStreamContext.PullSubscription:
        config = ConsumerConfig(
            durable_name=self.durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self.ack_wait,
            max_deliver=-1,
            filter_subjects=self.filters if len(self.filters) > 1 else None,
            filter_subject=self.filters[0] if len(self.filters) == 1 else None,
        )
        try:
            info = await self.js.consumer_info(self.stream, self.durable)
        except NotFoundError:
            await self.js.add_consumer(self.stream, config)
        else:
            # A projection that learnt new event types: widen the durable's filter in place (it
            # keeps its position; events of the new types it had already passed are not replayed).
            existing = info.config.filter_subjects or (
                [info.config.filter_subject] if info.config.filter_subject else []
            )
            if set(existing) != set(self.filters):
                log.info("consumer %s: filter %s -> %s", self.durable, existing, self.filters)
                await self.js.add_consumer(self.stream, config)
        return await self.js.pull_subscribe_bind(durable=self.durable, stream=self.stream)

    async def handle(self, msg: Msg) -> bool:
        """Applies one message; returns whether it changed the read model. An apply that fails
        raises (the caller naks it for a retry) until the event is parked, then it is acked."""
        event = Envelope.from_bytes(msg.data)
        # Continue the trace of the request that wrote the event (traceparent in the headers).
        parent = telemetry.extract(dict(msg.headers or {}))
        span = tracer.start_span(f"consume {event.type}", context=parent, kind=trace.SpanKind.CONSUMER)  # type: ignore[arg-type]
        token = context.use(
            context.RequestContext(
                request_id=str(event.metadata.get("request_id") or ""),
                correlation_id=str(event.metadata.get("correlation_id") or ""),
                causation_id=str(event.id),
                actor=f"projection:{self.projection.name}",
            )
        )
        try:
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    fresh = await self._apply_once(conn, event)
            except Exception as error:
                failure = self.parking.failed(event.id, error)
                if failure is None:
                    raise
                await self._park(event, failure)
                self.parking.forget(event.id)
                await msg.ack()
                return False
            self.parking.forget(event.id)
            if self.after_commit:
                await self.after_commit(event)
        finally:
            context.reset(token)
            span.end()
        await msg.ack()
        if fresh:
            self.applied += 1
        return bool(fresh)

    async def _apply_once(self, conn: Connection, event: Envelope) -> bool:
        fresh = await conn.fetchval(
            "INSERT INTO processed_events (projection, event_id) VALUES ($1, $2) "
            "ON CONFLICT DO NOTHING RETURNING true",
            self.projection.name,
            event.id,
        )
        if fresh:
            await self.projection.apply(conn, event)
        return bool(fresh)

    async def _park(self, event: Envelope, failure: deadletters.Failure) -> None:
        async with self.pool.acquire() as conn:
            letter = await deadletters.park(
                conn,
                consumer=self.durable,
                projection=self.projection.name,
                event=event,
                failure=failure,
                slot=self.dead_letter_slot
                if self.dead_letter_slot is not None
                else ids.slot_of(event.aggregate_id),
                service=self.service,
            )
        self.parked += 1
        log.error(
            "consumer %s parked event %s (%s) after %d attempts as dead letter %s: %s",
            self.durable,
            event.id,
            event.type,
            failure.attempts,
            letter,
            failure.error,
        )

    async def retry_parked(self, letter_id: uuid.UUID) -> RetryResult | None:
        """Applies a parked event through the projection, as a first delivery would. On success
        the dead letter is gone; on failure it stays with one attempt more. None: not one of
        this consumer's."""
        async with self.pool.acquire() as conn, conn.transaction():
            letter = await deadletters.fetch(conn, letter_id, lock=True)
            if letter is None or letter.projection != self.projection.name:
                return None
            event = letter.event()
            try:
                async with conn.transaction():  # a savepoint: the failure is recorded below
                    await self._apply_once(conn, event)
            except Exception as error:
                if is_transient(error):
                    raise
                log.warning("retry of dead letter %s failed again: %s", letter_id, error)
                again = await deadletters.failed_again(conn, letter_id, deadletters.describe(error))
                return RetryResult(applied=False, letter=again or letter)
            await deadletters.remove(conn, letter_id)
        if self.after_commit:
            await self.after_commit(event)
        log.info("dead letter %s (event %s) applied by %s", letter_id, event.id, self.durable)
        return RetryResult(applied=True, letter=letter)

    async def run(self) -> None:
        """Consumes until cancelled; a failing event is retried later and, if it keeps failing
        for reasons other than an outage, parked."""
        sub = await self._subscription()
        log.info("consumer %s started (%s)", self.durable, ", ".join(self.filters))
        try:
            while True:
                try:
                    messages = await sub.fetch(self.batch, timeout=self.fetch_timeout)
                except (TimeoutError, NatsTimeoutError):
                    continue
                for msg in messages:
                    try:
                        await self.handle(msg)
                    except Exception as error:  # a bad event must not stop the projection
                        if is_outage(error):
                            log.warning(
                                "consumer %s: %s; will retry", self.durable, deadletters.describe(error)
                            )
                        else:
                            log.exception(
                                "consumer %s failed on a message, will retry: %s", self.durable, error
                            )
                        with contextlib.suppress(Exception):
                            await msg.nak(delay=self.retry_seconds)
        finally:
            with contextlib.suppress(Exception):  # NATS may be the reason we are stopping
                await sub.unsubscribe()


@dataclass(frozen=True)
class RetryResult:
    applied: bool
    letter: deadletters.DeadLetter


@dataclass(frozen=True)
class Skipped:
    event_id: uuid.UUID
    event_type: str
    reason: str


@dataclass
class RebuildReport:
    applied: int = 0
    skipped: list[Skipped] = field(default_factory=list)


async def rebuild(
    pool: asyncpg.Pool,
    projection: Projection,
    events: Sequence[Envelope],
    reset_sql: str,
    *,
    service: str = "",
) -> RebuildReport:
    """Drops a read model (`reset_sql`) and re-applies `events` in order, in one transaction.

    Events parked as dead letters are skipped, as the live consumer skipped them, so the result
    equals the live read model. An event that fails now is parked (and skipped) rather than
    aborting the rebuild; an outage still aborts it (nothing is changed then)."""
    report = RebuildReport()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(reset_sql)
        await conn.execute("DELETE FROM processed_events WHERE projection = $1", projection.name)
        parked = await deadletters.parked_event_ids(conn, projection.name)
        for event in events:
            if event.id in parked:
                report.skipped.append(Skipped(event.id, event.type, "parked as a dead letter"))
                continue
            try:
                async with conn.transaction():  # a savepoint per event
                    await conn.execute(
                        "INSERT INTO processed_events (projection, event_id) VALUES ($1, $2)",
                        projection.name,
                        event.id,
                    )
                    await projection.apply(conn, event)
            except Exception as error:
                if is_transient(error):
                    raise
                failure = deadletters.Failure(utcnow(), 1, deadletters.describe(error))
                await deadletters.park(
                    conn,
                    consumer=f"rebuild:{projection.name}",
                    projection=projection.name,
                    event=event,
                    failure=failure,
                    slot=ids.slot_of(event.aggregate_id),
                    service=service,
                )
                parked.add(event.id)
                report.skipped.append(Skipped(event.id, event.type, failure.error))
                log.warning("rebuild of %s skipped event %s: %s", projection.name, event.id, failure.error)
                continue
            report.applied += 1
    return report
