"""The projection consumer against a real JetStream and PostgreSQL: at-least-once delivery made
exactly-once by `processed_events`, and a rebuilt read model equal to the live one."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import asyncpg
import pytest
from checkout.merchant.v1 import events_pb2

from libs.common import ids
from libs.common.config import Config
from libs.common.consumer import AfterCommit, ProjectionConsumer, rebuild
from libs.common.db import Connection, ShardPools, migrate_shard, migrations_for
from libs.common.messaging import Envelope
from tests.common.eventsource import EventSource, event_source
from tests.common.support import poll

SCHEMA = "contest"
NAMES_SQL = """
CREATE TABLE names (
    aggregate_id UUID PRIMARY KEY,
    name TEXT NOT NULL,
    changes INTEGER NOT NULL
);
"""


class Names:
    """A tiny read model: each aggregate's latest name and how many events changed it. Applying
    an event twice would show as one change too many."""

    name = "names"
    event_types: Sequence[str] = ("merchant.created", "merchant.updated")

    async def apply(self, conn: Connection, event: Envelope) -> None:
        message = event.message()
        assert isinstance(message, events_pb2.MerchantCreated | events_pb2.MerchantUpdated)
        await conn.execute(
            """INSERT INTO names (aggregate_id, name, changes) VALUES ($1, $2, 1)
               ON CONFLICT (aggregate_id) DO UPDATE SET name = EXCLUDED.name, changes = names.changes + 1""",
            event.aggregate_id,
            message.business_name,
        )


@pytest.fixture
async def pool(config: Config, tmp_path: Path) -> AsyncIterator[asyncpg.Pool]:
    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "1001_names.sql").write_text(NAMES_SQL)
    await migrate_shard(config.shard_dsn(0), SCHEMA, migrations_for(tmp_path))
    pools = ShardPools(config, SCHEMA)
    await pools.open([0])
    yield pools[0]
    await pools.close()


@pytest.fixture
async def source(config: Config) -> AsyncIterator[EventSource]:
    async with event_source(config) as started:
        yield started


def consumer(
    pool: asyncpg.Pool, source: EventSource, after_commit: AfterCommit | None = None
) -> ProjectionConsumer:
    return ProjectionConsumer(
        pool,
        source.js,
        Names(),
        service=SCHEMA,
        shard=0,
        stream=source.config.stream_name,
        subject_prefix=source.config.subject_prefix,
        ack_wait_seconds=1,
        fetch_timeout=0.2,
        after_commit=after_commit,
    )


def on_shard_0() -> uuid.UUID:
    return ids.new_id(7)  # slot 7 is on shard 0 of the even two-shard map


def created(name: str) -> events_pb2.MerchantCreated:
    return events_pb2.MerchantCreated(business_name=name)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def read_model(pool: asyncpg.Pool) -> list[tuple[uuid.UUID, str, int]]:
    rows = await pool.fetch("SELECT aggregate_id, name, changes FROM names ORDER BY aggregate_id")
    return [(r["aggregate_id"], r["name"], r["changes"]) for r in rows]


async def processed(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM processed_events WHERE projection = 'names'"))


async def test_a_consumer_that_crashes_before_ack_gets_the_event_again_and_applies_it_once(
    pool: asyncpg.Pool, source: EventSource
) -> None:
    deliveries: list[uuid.UUID] = []

    async def crash_once(event: Envelope) -> None:
        deliveries.append(event.id)
        if len(deliveries) == 1:
            raise OSError("crashed after the commit, before the ack")

    live = consumer(pool, source, crash_once)
    task = asyncio.create_task(live.run())
    try:
        aggregate = on_shard_0()
        [event] = await source.append(aggregate, "T", created("Acme"))
        await poll(lambda: len(deliveries) == 2, timeout=10, what="the unacked event to come back")
        await poll(lambda: source.consumer_acked_through(live.durable, 1), what="the redelivery to be acked")
    finally:
        await stop(task)
    assert deliveries == [event.id, event.id]
    assert await read_model(pool) == [(aggregate, "Acme", 1)]
    assert await processed(pool) == 1


async def test_a_consumer_stopped_before_ack_leaves_the_event_to_its_successor_which_applies_it_once(
    pool: asyncpg.Pool, source: EventSource
) -> None:
    committed = asyncio.Event()
    seen: list[str] = []

    async def die_after_commit(event: Envelope) -> None:
        seen.append("first")
        committed.set()
        await asyncio.Event().wait()  # the process stalls here until it is killed

    async def record(event: Envelope) -> None:
        seen.append("second")

    first = consumer(pool, source, die_after_commit)
    task = asyncio.create_task(first.run())
    try:
        aggregate = on_shard_0()
        await source.append(aggregate, "T", created("Acme"))
        await asyncio.wait_for(committed.wait(), timeout=10)
    finally:
        await stop(task)
    assert await read_model(pool) == [(aggregate, "Acme", 1)], "committed before the crash"

    second = consumer(pool, source, record)
    assert second.durable == first.durable
    task = asyncio.create_task(second.run())
    try:
        await poll(lambda: seen == ["first", "second"], timeout=10, what="redelivery after ack_wait")
        await poll(lambda: source.consumer_acked_through(second.durable, 1), what="the successor's ack")
    finally:
        await stop(task)
    assert await read_model(pool) == [(aggregate, "Acme", 1)]
    assert await processed(pool) == 1
    assert second.applied == 0, "the successor saw a duplicate, not a new event"


async def test_a_batch_of_events_applied_before_and_new_ones_applies_each_new_one_once(
    pool: asyncpg.Pool, source: EventSource
) -> None:
    live = consumer(pool, source)  # not run: its batches are handed to it here
    acme, bolt = on_shard_0(), on_shard_0()
    [first] = [Envelope.of(e, 0) for e in await source.append(acme, "T", created("Acme"))]
    [second] = [Envelope.of(e, 0) for e in await source.append(bolt, "T", created("Bolt"))]
    assert await live._apply_all([first], [None]) == 1
    assert await live._apply_all([first, second, second], [None] * 3) == 1, "a redelivery in a batch"
    assert await live._apply_all([second, first], [None] * 2) == 0
    assert await read_model(pool) == sorted([(acme, "Acme", 1), (bolt, "Bolt", 1)])
    assert await processed(pool) == 2


async def test_rebuilding_a_read_model_from_events_equals_the_live_one(
    pool: asyncpg.Pool, source: EventSource
) -> None:
    live = consumer(pool, source)
    task = asyncio.create_task(live.run())
    aggregates = [on_shard_0() for _ in range(5)]
    try:
        stored = []
        for n, aggregate in enumerate(aggregates):
            stored += await source.append(aggregate, "T", created(f"shop-{n}"))
            for rename in range(n):
                stored += await source.append(
                    aggregate, "T", events_pb2.MerchantUpdated(business_name=f"shop-{n}-v{rename + 2}")
                )
        last = await source.redeliver(stored[3])  # a duplicate on the live side only
        await poll(lambda: source.consumer_acked_through(live.durable, last), what="live to catch up")
    finally:
        await stop(task)
    live_rows = await read_model(pool)
    assert sorted(changes for _, _, changes in live_rows) == [1, 2, 3, 4, 5]
    assert await processed(pool) == len(stored)

    events = await source.envelopes(0)
    assert len(events) == len(stored)
    await rebuild(pool, Names(), events, "TRUNCATE names")

    assert await read_model(pool) == live_rows
    assert await processed(pool) == len(stored)
    assert {name for _, name, _ in live_rows} == {"shop-0", *(f"shop-{n}-v{n + 1}" for n in range(1, 5))}


class CreatedOnly(Names):
    event_types: Sequence[str] = ("merchant.created",)


async def test_a_projection_that_learns_a_new_event_type_gets_it_from_its_existing_durable(
    pool: asyncpg.Pool, source: EventSource
) -> None:
    old = ProjectionConsumer(
        pool,
        source.js,
        CreatedOnly(),
        service=SCHEMA,
        shard=0,
        stream=source.config.stream_name,
        subject_prefix=source.config.subject_prefix,
        fetch_timeout=0.2,
    )
    task = asyncio.create_task(old.run())
    aggregate = on_shard_0()
    try:
        await source.append(aggregate, "T", created("Acme"))
        await poll(lambda: source.consumer_acked_through(old.durable, 1), what="the first event")
    finally:
        await stop(task)
    # The next release's projection also wants merchant.updated, under the same durable name.
    live = consumer(pool, source)
    assert live.durable == old.durable
    task = asyncio.create_task(live.run())
    try:
        await source.append(aggregate, "T", events_pb2.MerchantUpdated(business_name="Acme Ltd"))

        async def renamed() -> bool:
            return await read_model(pool) == [(aggregate, "Acme Ltd", 2)]

        await poll(renamed, what="the update to reach the widened consumer")
    finally:
        await stop(task)


class Poisoned(Names):
    """Names that cannot apply an event named "poison" while `sick` is set."""

    def __init__(self) -> None:
        self.sick = True

    async def apply(self, conn: Connection, event: Envelope) -> None:
        message = event.message()
        assert isinstance(message, events_pb2.MerchantCreated | events_pb2.MerchantUpdated)
        if self.sick and message.business_name == "poison":
            raise ValueError("cannot apply this one yet")
        await super().apply(conn, event)


async def test_a_failing_event_in_a_batch_holds_back_only_itself_and_the_later_events_of_its_aggregate(
    pool: asyncpg.Pool, source: EventSource
) -> None:
    healthy, sick, other = on_shard_0(), on_shard_0(), on_shard_0()
    await source.append(healthy, "T", created("A"))
    await source.append(sick, "T", created("poison"))
    await source.append(sick, "T", events_pb2.MerchantUpdated(business_name="after poison"))
    await source.append(other, "T", created("C"))
    projection = Poisoned()
    live = ProjectionConsumer(
        pool,
        source.js,
        projection,
        service=SCHEMA,
        shard=0,
        stream=source.config.stream_name,
        subject_prefix=source.config.subject_prefix,
        fetch_timeout=0.2,
    )

    async def relayed() -> bool:
        return (await source.js.stream_info(source.config.stream_name)).state.messages == 4

    await poll(relayed, what="the four events to be on the stream, for one batch")
    task = asyncio.create_task(live.run())
    try:

        async def others_applied() -> bool:
            return {a for a, _, _ in await read_model(pool)} == {healthy, other}

        await poll(others_applied, what="the healthy events of the batch")
        assert await processed(pool) == 2, "the failing event and the one behind it wait"
        projection.sick = False

        async def all_applied() -> bool:
            # All four processed: three rows exist as soon as "poison" is, before the update
            # behind it is applied, so counting rows would stop a moment too early.
            return await processed(pool) == 4

        await poll(all_applied, timeout=15, what="the held-back events after the cure")
    finally:
        await stop(task)
    rows = {a: (name, changes) for a, name, changes in await read_model(pool)}
    assert rows[sick] == ("after poison", 2), "its aggregate's events in order, each once"
    assert rows[healthy] == ("A", 1) and rows[other] == ("C", 1)


class PipelinedNames(Names):
    writes_only = True


async def test_a_writes_only_projection_gets_every_event_of_a_batch_once_and_in_order(
    pool: asyncpg.Pool, source: EventSource
) -> None:
    aggregates = [on_shard_0() for _ in range(4)]
    for aggregate in aggregates:
        await source.append(aggregate, "T", created("v1"))
    for version in range(2, 6):
        for aggregate in aggregates:
            await source.append(aggregate, "T", events_pb2.MerchantUpdated(business_name=f"v{version}"))

    async def relayed() -> bool:
        return (await source.js.stream_info(source.config.stream_name)).state.messages == 20

    await poll(relayed, what="the events to be on the stream, for one batch")
    live = ProjectionConsumer(
        pool,
        source.js,
        PipelinedNames(),
        service=SCHEMA,
        shard=0,
        stream=source.config.stream_name,
        subject_prefix=source.config.subject_prefix,
        fetch_timeout=0.2,
    )
    task = asyncio.create_task(live.run())
    try:

        async def applied() -> bool:
            return await processed(pool) == 20

        await poll(applied, what="the batch to be applied")
        await poll(lambda: source.consumer_acked_through(live.durable, 20), what="the batch to be acked")
    finally:
        await stop(task)
    assert await read_model(pool) == sorted((a, "v5", 5) for a in aggregates)
    assert live.applied == 20


async def test_a_stopped_consumer_hands_back_the_events_it_had_not_taken_so_its_successor_need_not_wait(
    pool: asyncpg.Pool, source: EventSource
) -> None:
    stalled = asyncio.Event()

    async def stall_on_the_first(event: Envelope) -> None:
        stalled.set()
        await asyncio.Event().wait()  # stuck after the commit of the first batch until stopped

    def slow_to_redeliver(after_commit: AfterCommit | None) -> ProjectionConsumer:
        return ProjectionConsumer(
            pool, source.js, Names(), service=SCHEMA, shard=0, stream=source.config.stream_name,
            subject_prefix=source.config.subject_prefix, ack_wait_seconds=60, after_commit=after_commit,
        )  # fmt: skip

    first = slow_to_redeliver(stall_on_the_first)
    task = asyncio.create_task(first.run())
    waiting = [on_shard_0() for _ in range(3)]
    try:
        await source.append(on_shard_0(), "T", created("first"))
        await asyncio.wait_for(stalled.wait(), timeout=10)
        for aggregate in waiting:
            await source.append(aggregate, "T", created("waiting"))

        async def delivered() -> bool:
            info = await source.js.consumer_info(source.config.stream_name, first.durable)
            return bool(info.num_ack_pending == 4)  # the stuck one and the three in its pull

        await poll(delivered, what="the three later events to reach the stuck consumer")
    finally:
        await stop(task)

    successor = slow_to_redeliver(None)
    task = asyncio.create_task(successor.run())
    try:

        async def applied() -> bool:
            return {a for a, name, _ in await read_model(pool) if name == "waiting"} == set(waiting)

        # Well inside the 60 s ack_wait: the three were handed back, not left to time out.
        await poll(applied, timeout=15, what="the handed-back events at the successor")
    finally:
        await stop(task)
    assert successor.applied == 3
