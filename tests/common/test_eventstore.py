"""The event store against a real PostgreSQL: the concurrency guard across partitions,
snapshots, idempotent commands, and the no-skip relay into a real JetStream."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import pytest
from checkout.merchant.v1 import events_pb2
from nats.aio.client import Client as NatsClient

from libs.common import context, ids
from libs.common.commandlog import Commands
from libs.common.config import Config
from libs.common.db import Connection, ShardPools, migrate_shard, migrations_for
from libs.common.errors import Conflict
from libs.common.eventstore import (
    ConcurrencyError,
    EventStore,
    InlineWrite,
    Repository,
    StoredEvent,
    Stream,
)
from libs.common.grpc_errors import to_status
from libs.common.messaging import ensure_stream
from libs.common.partitions import PartitionedTable, ensure_partitions
from libs.common.relay import Relay
from tests.common.support import Counter, poll

SCHEMA = "estest"
CHANNEL = "estest_events"


@pytest.fixture
async def pool(config: Config, tmp_path: Path) -> AsyncIterator[asyncpg.Pool]:
    await migrate_shard(config.shard_dsn(0), SCHEMA, migrations_for(tmp_path))
    pools = ShardPools(config, SCHEMA)
    await pools.open([0])
    async with pools[0].acquire() as conn:
        await ensure_partitions(conn, PartitionedTable("events", "month"), ahead=1, behind=2)
    yield pools[0]
    await pools.close()


def created(name: str = "Acme") -> events_pb2.MerchantCreated:
    return events_pb2.MerchantCreated(business_name=name)


def renamed(name: str) -> events_pb2.MerchantUpdated:
    return events_pb2.MerchantUpdated(business_name=name)


async def test_append_with_stale_version_is_aborted_even_across_monthly_partitions(
    pool: asyncpg.Pool,
) -> None:
    aggregate = ids.new_id(7)
    last_month = dt.datetime.now(dt.UTC).replace(day=1) - dt.timedelta(days=3)
    old_store = EventStore(CHANNEL, clock=lambda: last_month)
    store = EventStore(CHANNEL)
    async with pool.acquire() as conn, conn.transaction():
        await old_store.append(
            conn, aggregate_id=aggregate, aggregate_type="T", expected_version=0, new_events=[created()]
        )

    # Two writers both read version 1; the first holds its transaction open while the second
    # tries, so the second really races the first rather than simply arriving late.
    first, second = await pool.acquire(), await pool.acquire()
    try:
        tx1 = first.transaction()
        await tx1.start()
        await store.append(
            first, aggregate_id=aggregate, aggregate_type="T", expected_version=1, new_events=[renamed("A")]
        )

        async def loser() -> None:
            async with second.transaction():
                await store.append(
                    second,
                    aggregate_id=aggregate,
                    aggregate_type="T",
                    expected_version=1,
                    new_events=[renamed("B")],
                )

        racing = asyncio.create_task(loser())
        await asyncio.sleep(0)  # let the loser reach the row lock; correctness does not depend on it
        await tx1.commit()
        with pytest.raises(ConcurrencyError):
            await racing
    finally:
        await pool.release(first)
        await pool.release(second)

    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT tableoid::regclass::text AS part, event_version FROM events WHERE aggregate_id = $1 "
            "ORDER BY event_version",
            aggregate,
        )
    assert [r["event_version"] for r in rows] == [1, 2]
    assert len({r["part"] for r in rows}) == 2, "the stream must span two monthly partitions"
    status = to_status(ConcurrencyError("lost"))
    assert status.code == grpc.StatusCode.ABORTED


async def test_a_second_stream_start_with_version_zero_is_aborted(pool: asyncpg.Pool) -> None:
    store = EventStore(CHANNEL)
    aggregate = ids.new_id(1)
    async with pool.acquire() as conn, conn.transaction():
        await store.append(
            conn, aggregate_id=aggregate, aggregate_type="T", expected_version=0, new_events=[created()]
        )
    with pytest.raises(ConcurrencyError):
        async with pool.acquire() as conn, conn.transaction():
            await store.append(
                conn, aggregate_id=aggregate, aggregate_type="T", expected_version=0, new_events=[created()]
            )


async def test_repository_loads_from_snapshot_plus_later_events(pool: asyncpg.Pool) -> None:
    store = EventStore(CHANNEL)
    repo = Repository(store, Counter, snapshot_every=3)
    counter = Counter(ids.new_id(3))
    for n in range(7):
        counter.rename(f"name-{n}")
        async with pool.acquire() as conn, conn.transaction():
            await repo.save(conn, counter)
    async with pool.acquire() as conn:
        snapshot = await store.load_snapshot(conn, counter.id)
        loaded = await repo.get(conn, counter.id)
    assert snapshot is not None and snapshot[0] == 6
    assert loaded is not None
    assert (loaded.version, loaded.name, loaded.renames) == (7, "name-6", 7)


async def test_retried_command_with_the_same_key_appends_nothing_and_returns_the_first_result(
    pool: asyncpg.Pool,
) -> None:
    store = EventStore(CHANNEL)
    calls = 0

    async def handler(conn: Connection) -> str:
        nonlocal calls
        calls += 1
        aggregate = ids.new_id(2)
        await store.append(
            conn, aggregate_id=aggregate, aggregate_type="T", expected_version=0, new_events=[created()]
        )
        return str(aggregate)

    token = context.use(
        context.RequestContext(request_id="r1", idempotency_key="key-1", idempotency_hash="h1")
    )
    try:
        results = await asyncio.gather(
            *(Commands.run(pool, "merchant:x", handler, str.encode, bytes.decode) for _ in range(5))
        )
    finally:
        context.reset(token)
    assert calls == 1
    assert len(set(results)) == 1
    async with pool.acquire() as conn:
        assert (
            await conn.fetchval("SELECT count(*) FROM events WHERE aggregate_id = $1", uuid.UUID(results[0]))
            == 1
        )

    token = context.use(context.RequestContext(idempotency_key="key-1", idempotency_hash="other-body"))
    try:
        with pytest.raises(Conflict):
            await Commands.run(pool, "merchant:x", handler, str.encode, bytes.decode)
    finally:
        context.reset(token)
    assert calls == 1


async def test_events_metadata_carries_request_actor_and_correlation(pool: asyncpg.Pool) -> None:
    store = EventStore(CHANNEL)
    token = context.use(
        context.RequestContext(request_id="req-9", actor="merchant:k1", trace={"traceparent": "00-x"})
    )
    try:
        async with pool.acquire() as conn, conn.transaction():
            [event] = await store.append(
                conn,
                aggregate_id=ids.new_id(4),
                aggregate_type="T",
                expected_version=0,
                new_events=[created()],
            )
    finally:
        context.reset(token)
    assert event.metadata["request_id"] == "req-9"
    assert event.metadata["correlation_id"] == "req-9"
    assert event.metadata["actor"] == "merchant:k1"
    assert event.metadata["trace"] == {"traceparent": "00-x"}


async def test_relay_never_skips_a_transaction_that_commits_after_a_later_sequence(
    pool: asyncpg.Pool, config: Config, nats_client: NatsClient
) -> None:
    js = nats_client.jetstream()
    await ensure_stream(js, config.stream_name, config.subject_prefix)
    relay = Relay(
        pool, js, schema=SCHEMA, shard=0, notify_channel=CHANNEL, subject_prefix=config.subject_prefix
    )
    store = EventStore(CHANNEL)
    early, late = ids.new_id(5), ids.new_id(5)

    slow = await pool.acquire()
    try:
        slow_tx = slow.transaction()
        await slow_tx.start()
        # `early` takes the lower sequence number but commits last.
        await store.append(
            slow, aggregate_id=early, aggregate_type="T", expected_version=0, new_events=[created("early")]
        )
        async with pool.acquire() as conn, conn.transaction():
            await store.append(
                conn, aggregate_id=late, aggregate_type="T", expected_version=0, new_events=[created("late")]
            )
        assert await relay.publish_pending() == 1  # `late` is visible, `early` is not yet
        await slow_tx.commit()
    finally:
        await pool.release(slow)
    assert await relay.publish_pending() == 1
    assert await relay.publish_pending() == 0

    sub = await js.pull_subscribe(f"{config.subject_prefix}.>", stream=config.stream_name)
    messages = await sub.fetch(10, timeout=2)
    names = [json.loads(m.data)["data"]["business_name"] for m in messages]
    assert names == ["late", "early"], "published in commit order, each exactly once"
    assert (await js.stream_info(config.stream_name)).state.messages == 2


async def test_relay_delivers_every_event_of_many_concurrent_writers_exactly_once(
    pool: asyncpg.Pool, config: Config, nats_client: NatsClient
) -> None:
    js = nats_client.jetstream()
    await ensure_stream(js, config.stream_name, config.subject_prefix)
    relay = Relay(
        pool,
        js,
        schema=SCHEMA,
        shard=0,
        notify_channel=CHANNEL,
        subject_prefix=config.subject_prefix,
        poll_seconds=0.05,
    )
    store = EventStore(CHANNEL)
    running = asyncio.create_task(relay.run())

    async def writer(n: int) -> None:
        async with pool.acquire() as conn, conn.transaction():
            await store.append(
                conn,
                aggregate_id=ids.new_id(n % 4096),
                aggregate_type="T",
                expected_version=0,
                new_events=[created(f"m{n}")],
            )
            await asyncio.sleep(0.001 * (n % 7))  # commits interleave out of sequence order

    try:
        await asyncio.gather(*(writer(n) for n in range(200)))
        await poll(lambda: relay.published == 200, timeout=20, what="relay to publish 200 events")
    finally:
        running.cancel()
    info = await js.stream_info(config.stream_name)
    assert info.state.messages == 200
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM relay_published") <= 200


async def test_an_inline_write_rides_in_the_append_and_is_not_written_when_the_head_refuses(
    pool: asyncpg.Pool,
) -> None:
    store = EventStore(CHANNEL)
    aggregate = ids.new_id(3)
    await pool.execute("CREATE TABLE IF NOT EXISTS inline_rows (event_id uuid PRIMARY KEY, name text)")

    def row_of(events: list[StoredEvent]) -> InlineWrite:
        ctes = "written AS (INSERT INTO inline_rows SELECT $1, $2 FROM head RETURNING *)"
        return InlineWrite(ctes, [events[0].id, events[0].data["business_name"]], "written")

    async with pool.acquire() as conn:  # no transaction: the one statement is atomic alone
        stored, row = await store.append_inline(conn, Stream(aggregate, "T", 0), [created("Acme")], row_of)
        assert (row["event_id"], row["name"]) == (stored[0].id, "Acme")
        assert stored[0].version == 1 and stored[0].sequence_number > 0
        with pytest.raises(ConcurrencyError):
            await store.append_inline(conn, Stream(aggregate, "T", 0), [created("Again")], row_of)
        assert await conn.fetchval("SELECT count(*) FROM inline_rows") == 1
        assert [e.version for e in await store.load(conn, aggregate)] == [1]
