"""Projection consumers: durable JetStream pull consumers that apply another service's events
to a local read model.

The read-model change and the `processed_events` row are written in one transaction and the
message is acked only after that commit. A crash before the ack means redelivery; the
`processed_events` row makes the second delivery a no-op, so an event is applied exactly once.

Each fetched batch is applied in one transaction, in stream order (which is each aggregate's
order): one connection, one commit and one `processed_events` statement for up to `batch`
events. If any event of the batch fails, the transaction is rolled back and the batch is applied
again one event per transaction, so only the failing event is held back (`_failed`), with the
later events of its aggregate, which must not overtake it.

An event whose apply keeps failing (not an outage: libs/common/deadletters.Parking decides) is
parked in `dead_letters` after `max_attempts` tries and acked, so the events after it flow on;
the operator retries it later (`retry_parked`). A rebuild skips parked and failing events and
reports them instead of aborting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import asyncpg
import nats.js.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StatusCode
from nats.js.errors import NotFoundError
from opentelemetry import trace

from libs.common import context, deadletters, ids, metrics, telemetry
from libs.common.db import Connection
from libs.common.eventstore import utcnow
from libs.common.messaging import Envelope, subject
from libs.common.outages import is_outage, is_transient
from libs.common.slotmoved import is_slot_moved

log = logging.getLogger("checkout.consumer")
tracer = trace.get_tracer("checkout.consumer")


class Projection(Protocol):
    """A read model fed by events. `apply` runs inside the consumer's transaction.

    A projection whose `apply` only calls `conn.execute` and ignores what it returns may say so
    with a class attribute `writes_only = True`: a batch's statements are then sent in runs of the
    same SQL with `executemany` (pipelined, one round trip per run) instead of one by one.

    A batched projection (`writes_only`, `BatchProjection`) gets a span and a request context
    only for the events whose trace is sampled; the others get one for every event."""

    name: str
    event_types: Sequence[str]

    async def apply(self, conn: Connection, event: Envelope) -> None: ...


class BatchProjection(Projection, Protocol):
    """A projection that can also apply a consumer's batch at once, in a few statements for the
    whole batch instead of some per event. `apply_batch(conn, events)` must leave the read model
    as `apply` of each event in turn would (the rebuild and the one-by-one retry of a failed
    batch use `apply`); it runs in the consumer's transaction, the events in stream order and
    none of them applied before."""

    async def apply_batch(self, conn: Connection, events: Sequence[Envelope]) -> None: ...


class _Writes:
    """The connection a `writes_only` projection gets in a batch: its statements are kept, in
    order, and sent when the batch is done; consecutive ones with the same SQL go together."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._runs: list[tuple[str, list[tuple[object, ...]]]] = []

    async def execute(self, query: str, *args: object) -> str:
        if self._runs and self._runs[-1][0] == query:
            self._runs[-1][1].append(args)
        else:
            self._runs.append((query, [args]))
        return ""

    async def flush(self) -> None:
        runs, self._runs = self._runs, []
        for query, rows in runs:
            if len(rows) == 1:
                await self._conn.execute(query, *rows[0])
            else:
                await self._conn.executemany(query, rows)

    def __getattr__(self, name: str) -> object:
        raise AttributeError(f"a writes_only projection may only call execute(), not {name}()")


# Run after each event's commit, before its ack. One whose work for a batch is less than for its
# events one by one may also have `after_batch(events)`, run once after a batch's commit instead.
AfterCommit = Callable[[Envelope], Awaitable[None]]
# How long past its expiry a pull request may stay silent before it is taken for lost (a reconnect
# drops the server's side of it) and asked for again.
LOST_REQUEST_GRACE_SECONDS = 1.0


class _Pull:
    """The durable's messages as they arrive. One pull request for up to `batch` messages is kept
    open on the server and asked for again as soon as it is used up or expires; `next()` returns
    whatever has arrived the moment there is one message, and asks for the next batch before the
    caller applies this one, so the server sends it meanwhile.

    nats-py's `fetch(n)` cannot do this: after a no-wait probe that finds nothing it waits for all
    n messages or its timeout, so a trickle of events sat in each fetch for its whole timeout (the
    follow-up fetch it needed was 50 ms of every event's projection lag). The request is the
    JetStream API's own (`CONSUMER.MSG.NEXT` with the reply going to our inbox); nats-py keeps the
    connection and the API prefix only on private attributes."""

    def __init__(
        self, js: JetStreamContext, stream: str, durable: str, *, batch: int, expires: float
    ) -> None:
        self._nc = js._nc
        self._subject = f"{js._prefix}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = self._nc.new_inbox()
        self._request = json.dumps({"batch": batch, "expires": int(expires * 1e9)}).encode()
        self._batch, self._expires = batch, expires
        self._arrived: deque[Msg] = deque()
        self._woken = asyncio.Event()
        self._open = 0  # messages the open request may still bring; 0: none is open
        self._asked_at = 0.0
        self._failure: Msg | None = None
        self._sub: Subscription | None = None

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(self._inbox, cb=self._received)

    async def _received(self, msg: Msg) -> None:
        status = JetStreamContext.is_status_msg(msg)
        if status is None:
            self._arrived.append(msg)
            self._open = max(0, self._open - 1)
        elif status == StatusCode.CONTROL_MESSAGE:
            return
        else:
            # 408: the request expired; anything else (409 consumer deleted, ...) is raised by
            # next(), and the supervisor starts the consumer afresh.
            self._open = 0
            if status != StatusCode.REQUEST_TIMEOUT:
                self._failure = msg
        self._woken.set()

    async def _ask(self) -> None:
        self._open, self._asked_at = self._batch, time.monotonic()
        await self._nc.publish(self._subject, self._request, reply=self._inbox)

    def _deadline(self) -> float:
        """When the open request, silent until then, is taken for lost."""
        return self._asked_at + self._expires + LOST_REQUEST_GRACE_SECONDS

    async def next(self) -> list[Msg]:
        """The messages that have arrived, waiting up to the request's expiry for a first one
        ([] if none came)."""
        if not self._arrived:
            if not self._open or time.monotonic() > self._deadline():
                await self._ask()
            self._woken.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, self._deadline() - time.monotonic())):
                    await self._woken.wait()
                    await asyncio.sleep(0)  # the rest of a burst read with the first message
        if self._failure is not None:
            nats.js.errors.APIError.from_msg(self._failure)
        messages = list(self._arrived)
        self._arrived.clear()
        if messages and not self._open:
            await self._ask()  # the next batch comes while this one is applied
        return messages

    async def stop(self) -> None:
        """Gives back what arrived and was not taken: redelivered at once, not after ack_wait."""
        if self._sub is not None:
            await self._sub.unsubscribe()
        for msg in self._arrived:
            await msg.nak()
        self._arrived.clear()


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
        carrier = _carrier(event, headers)
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
                context=telemetry.extract(dict(carrier)),
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
        async with self.pool.acquire() as conn, conn.transaction():
            new = {
                r["event_id"]
                for r in await conn.fetch(
                    "INSERT INTO processed_events (projection, event_id) SELECT $1, unnest($2::uuid[]) "
                    "ON CONFLICT DO NOTHING RETURNING event_id",
                    self.projection.name,
                    [e.id for e in events],
                )
            }
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
            traced = [telemetry.sampled(_carrier(event, sent)) for event, sent in fresh]
            if apply_batch is not None and not any(traced):
                await apply_batch(conn, [event for event, _ in fresh])
                return len(fresh)
            writes = _Writes(conn) if writes_only else None
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
        pull = _Pull(self.js, self.stream, self.durable, batch=self.batch, expires=self.fetch_timeout)
        await pull.start()
        log.info("consumer %s started (%s)", self.durable, ", ".join(self.filters))
        try:
            while True:
                if messages := await pull.next():
                    await self.handle_batch(messages)
        finally:
            with contextlib.suppress(Exception):  # NATS may be the reason we are stopping
                await pull.stop()


def _carrier(event: Envelope, headers: Mapping[str, str] | None) -> Mapping[str, str]:
    """The trace context an event is applied in: the relay's publish span from the message's
    headers or, without them (a redelivery, a retried dead letter), the writer's from its metadata."""
    if headers and "traceparent" in headers:
        return headers
    return {k: str(v) for k, v in (event.metadata.get("trace") or {}).items()}


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
    progress: Callable[[int], None] | None = None,
) -> RebuildReport:
    """Drops a read model (`reset_sql`) and re-applies `events` in order, in one transaction.
    `progress(n)` is told of each event done (applied or skipped): checkout-admin's progress bar.

    Events parked as dead letters are skipped, as the live consumer skipped them, so the result
    equals the live read model. An event that fails now is parked (and skipped) rather than
    aborting the rebuild; an outage still aborts it (nothing is changed then)."""
    report = RebuildReport()
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(reset_sql)
        await conn.execute("DELETE FROM processed_events WHERE projection = $1", projection.name)
        parked = await deadletters.parked_event_ids(conn, projection.name)
        for event in events:
            if progress is not None:
                progress(1)
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
