"""Projection consumers: durable JetStream pull consumers that apply another service's events
to a local read model.

The read-model change and the `processed_events` row are written in one transaction and the
message is acked only after that commit. A crash before the ack means redelivery; the
`processed_events` row makes the second delivery a no-op, so an event is applied exactly once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import asyncpg
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from opentelemetry import trace

from libs.common import context, telemetry
from libs.common.db import Connection
from libs.common.messaging import Envelope, subject

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
        self.applied = 0

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
        """Applies one message; returns whether it changed the read model."""
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
            async with self.pool.acquire() as conn, conn.transaction():
                fresh = await conn.fetchval(
                    "INSERT INTO processed_events (projection, event_id) VALUES ($1, $2) "
                    "ON CONFLICT DO NOTHING RETURNING true",
                    self.projection.name,
                    event.id,
                )
                if fresh:
                    await self.projection.apply(conn, event)
            if self.after_commit:
                await self.after_commit(event)
        finally:
            context.reset(token)
            span.end()
        await msg.ack()
        if fresh:
            self.applied += 1
        return bool(fresh)

    async def run(self) -> None:
        """Consumes until cancelled; a failing event is retried later, not dropped."""
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
                        log.exception("consumer %s failed on a message, will retry: %s", self.durable, error)
                        with contextlib.suppress(Exception):
                            await msg.nak(delay=2.0)
        finally:
            await sub.unsubscribe()


async def rebuild(
    pool: asyncpg.Pool,
    projection: Projection,
    events: Sequence[Envelope],
    reset_sql: str,
) -> None:
    """Drops a read model (`reset_sql`) and re-applies `events` in order, in one transaction."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(reset_sql)
        await conn.execute("DELETE FROM processed_events WHERE projection = $1", projection.name)
        for event in events:
            await conn.execute(
                "INSERT INTO processed_events (projection, event_id) VALUES ($1, $2)",
                projection.name,
                event.id,
            )
            await projection.apply(conn, event)
