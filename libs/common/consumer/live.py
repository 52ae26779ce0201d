"""The live consumer of one projection on one shard: a durable JetStream pull consumer that
applies batches in one transaction each (the package's docstring has the guarantees)."""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import asyncpg
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from opentelemetry import trace

from libs.common import context, deadletters, ids, metrics, telemetry
from libs.common.consumer.projection import AfterCommit, Projection, Writes, carrier
from libs.common.consumer.pull import Pull
from libs.common.db import Connection
from libs.common.messaging import Envelope, subject
from libs.common.outages import is_outage, is_transient
from libs.common.slotmoved import is_slot_moved

log = logging.getLogger("checkout.consumer")
tracer = trace.get_tracer("checkout.consumer")
_PLAIN = re.compile(r"[A-Za-z0-9_.:-]+")


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
        # aggregate -> its event that failed and is being redelivered: the aggregate's later
        # events wait behind it, in this batch and the next ones, until it is applied (kept in
        # memory: after a restart the stream's redelivery order is all there is).
        self._holding: dict[uuid.UUID, uuid.UUID] = {}
        self.parked = 0
        self._lag: Any = None  # the lag histogram's child for this durable, once looked up
        # The projection's name as the SQL literal `_begin` writes in; "" (bind it) if it is not
        # made of the characters a literal needs no escaping for.
        self._name_literal = f"'{projection.name}'" if _PLAIN.fullmatch(projection.name) else ""

    async def _ensure_durable(self) -> None:
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

    @contextlib.contextmanager
    def _context(self, event: Envelope, headers: Mapping[str, str] | None = None) -> Iterator[None]:
        """The event's span and request context while it is applied. The span continues the
        trace of the request that wrote the event: from the relay's publish span in the message's
        headers, or (a redelivery without them, a retried dead letter) the writer's context in
        the event's metadata."""
        trace_context = carrier(event, headers)
        token = context.use(
            context.RequestContext(
                request_id=str(event.metadata.get("request_id") or ""),
                correlation_id=str(event.metadata.get("correlation_id") or ""),
                causation_id=str(event.id),
                actor=f"projection:{self.projection.name}",
            )
        )
        try:
            with tracer.start_as_current_span(
                f"consume {event.type}",
                context=telemetry.extract(dict(trace_context)),
                kind=trace.SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "nats",
                    "messaging.operation.type": "process",
                    "messaging.consumer.group.name": self.durable,
                    "messaging.message.id": str(event.id),
                    "checkout.projection": self.projection.name,
                },
            ):
                yield
        finally:
            context.reset(token)

    async def handle(self, msg: Msg) -> bool:
        """Applies one message in its own transaction; returns whether it changed the read model.
        An apply that fails raises (the caller naks it for a retry) until the event is parked,
        then it is acked."""
        event = Envelope.from_bytes(msg.data)
        with self._context(event, msg.headers):
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    fresh = await self._apply_once(conn, event)
            except Exception as error:
                if is_slot_moved(error):
                    # A redelivery to the shard that gave the slot away: every event it was sent
                    # was applied before the move's switch (the fence waits for that), and the
                    # new owner has the result. Nothing is left to do here.
                    log.info("consumer %s: event %s is of a moved slot; acked", self.durable, event.id)
                    await msg.ack()
                    return False
                failure = self.parking.failed(event.id, error)
                if failure is None:
                    raise
                await self._park(event, failure)
                self.parking.forget(event.id)
                await msg.ack()
                return False
            self.parking.forget(event.id)
            self._observe_lag((event,))
            if self.after_commit:
                await self.after_commit(event)
        await msg.ack()
        if fresh:
            self.applied += 1
        return bool(fresh)

    async def handle_batch(self, messages: Sequence[Msg]) -> None:
        """Applies a fetched batch in one transaction, then acks each message; a batch that
        fails is applied again one message at a time."""
        try:
            events = [Envelope.from_bytes(m.data) for m in messages]
            if self._holding and any(e.aggregate_id in self._holding for e in events):
                raise LookupError("an aggregate of this batch waits for a held-back event")
            fresh = await self._apply_all(events, [m.headers for m in messages])
        except Exception as error:  # which event it was is found out one by one
            log.info("consumer %s: a batch failed (%s); applying it one by one", self.durable, error)
            await self._one_by_one(messages)
            return
        self.applied += fresh
        self._observe_lag(events)
        after_batch = getattr(self.after_commit, "after_batch", None)
        if after_batch is not None:
            try:
                await after_batch(events)
            except Exception as error:  # as below, for the whole batch
                for msg in messages:
                    await self._failed(msg, error)
                return
            for msg in messages:
                await msg.ack()
            return
        for msg, event in zip(messages, events, strict=True):
            try:
                if self.after_commit:
                    await self.after_commit(event)
            except Exception as error:
                # Committed but not acked: the redelivery is a no-op for the read model and
                # runs after_commit again.
                await self._failed(msg, error)
                continue
            await msg.ack()

    def _observe_lag(self, events: Sequence[Envelope]) -> None:
        now = time.time()
        lag = self._lag or metrics.PROJECTION_LAG.labels(self.service, self.durable)
        self._lag = lag
        for event in events:
            lag.observe(max(0.0, now - event.occurred_at.timestamp()))

    async def _apply_all(
        self, events: Sequence[Envelope], headers: Sequence[Mapping[str, str] | None]
    ) -> int:
        async with self.pool.acquire() as conn:
            try:
                new = await self._begin(conn, events)
                fresh = await self._apply_new(conn, events, headers, new)
                await conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):  # a connection that broke is discarded
                    await conn.execute("ROLLBACK")
                raise
        return fresh

    async def _begin(self, conn: Connection, events: Sequence[Envelope]) -> set[uuid.UUID]:
        """Opens the batch's transaction with its `processed_events` rows written; returns the
        ids of the events not applied before. BEGIN and the INSERT go as one simple query (the
        event ids written in as UUID literals, the projection's name as a checked literal): one
        round trip fewer of the batch's four or so (each one a send and a wake-up on both sides,
        the largest part of a consumer's CPU under the lag load). Only when some event was
        applied before (a redelivery) is the transaction begun again to learn which. The
        transaction is opened by hand, so an `apply` may not open one of its own
        (`conn.transaction()` raises): such a batch is applied one by one, in `handle`."""
        unique = {event.id for event in events}
        if self._name_literal:
            values = ",".join(f"({self._name_literal},'{event_id}')" for event_id in unique)
            status = await conn.execute(
                "BEGIN; INSERT INTO processed_events (projection, event_id) "
                f"VALUES {values} ON CONFLICT DO NOTHING"
            )
            if status == f"INSERT 0 {len(unique)}":
                return unique
            await conn.execute("ROLLBACK")
        await conn.execute("BEGIN")
        rows = await conn.fetch(
            "INSERT INTO processed_events (projection, event_id) SELECT $1, unnest($2::uuid[]) "
            "ON CONFLICT DO NOTHING RETURNING event_id",
            self.projection.name,
            list(unique),
        )
        return {row["event_id"] for row in rows}

    async def _apply_new(
        self,
        conn: Connection,
        events: Sequence[Envelope],
        headers: Sequence[Mapping[str, str] | None],
        new: set[uuid.UUID],
    ) -> int:
        """Applies the batch's events whose ids are in `new`, each once, in stream order."""
        fresh: list[tuple[Envelope, Mapping[str, str] | None]] = []
        for event, sent in zip(events, headers, strict=True):
            if event.id in new:
                new.discard(event.id)  # not applied before, nor earlier in this batch
                fresh.append((event, sent))
        apply_batch = getattr(self.projection, "apply_batch", None)
        writes_only = getattr(self.projection, "writes_only", False)
        if apply_batch is None and not writes_only:
            for event, sent in fresh:
                with self._context(event, sent):
                    await self.projection.apply(conn, event)
            return len(fresh)
        # A batched projection makes spans only for traced events: with none of them the
        # whole batch goes at once (a span and a request context per event cost as much as
        # the writes); a traced one is applied with its span, and its SQL under it.
        traced = [telemetry.sampled(carrier(event, sent)) for event, sent in fresh]
        if apply_batch is not None and not any(traced):
            await apply_batch(conn, [event for event, _ in fresh])
            return len(fresh)
        writes = Writes(conn) if writes_only else None
        target = cast(Connection, writes) if writes is not None else conn
        for (event, sent), spanned in zip(fresh, traced, strict=True):
            with self._context(event, sent) if spanned else contextlib.nullcontext():
                await self.projection.apply(target, event)
        if writes is not None:
            await writes.flush()
        return len(fresh)

    async def _one_by_one(self, messages: Sequence[Msg]) -> None:
        for msg in messages:
            try:
                event = Envelope.from_bytes(msg.data)
            except Exception as error:
                await self._failed(msg, error)
                continue
            if self._holding.get(event.aggregate_id, event.id) != event.id:
                await self._failed(msg, None)  # behind its aggregate's held-back event
                continue
            try:
                await self.handle(msg)
            except Exception as error:  # a bad event must not stop the projection
                self._holding.setdefault(event.aggregate_id, event.id)
                await self._failed(msg, error)
            else:
                self._holding.pop(event.aggregate_id, None)

    async def _failed(self, msg: Msg, error: Exception | None) -> None:
        """Where an event that could not be applied (or must wait behind one of its aggregate
        that could not, `error` None) goes: redelivered later, never dropped."""
        if error is not None and is_outage(error):
            log.warning("consumer %s: %s; will retry", self.durable, deadletters.describe(error))
        elif error is not None:
            log.error("consumer %s failed on a message, will retry: %s", self.durable, error, exc_info=error)
        with contextlib.suppress(Exception):
            await msg.nak(delay=self.retry_seconds)

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
        await self._ensure_durable()
        pull = Pull(self.js, self.stream, self.durable, batch=self.batch, expires=self.fetch_timeout)
        await pull.start()
        log.info("consumer %s started (%s)", self.durable, ", ".join(self.filters))
        try:
            while True:
                if messages := await pull.next():
                    await self.handle_batch(messages)
        finally:
            with contextlib.suppress(Exception):  # NATS may be the reason we are stopping
                await pull.stop()


@dataclass(frozen=True)
class RetryResult:
    applied: bool
    letter: deadletters.DeadLetter
