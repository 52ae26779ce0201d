"""The relay's cursor, window and envelopes against a real PostgreSQL and JetStream, and the relay
with the batched consumer through crashes at their worst moments."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import asyncpg
import nats.js.errors
import pytest
from checkout.merchant.v1 import events_pb2
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from libs.common import context, ids
from libs.common.config import Config
from libs.common.consumer import ProjectionConsumer
from libs.common.db import Connection, ShardPools, migrate_shard, migrations_for
from libs.common.eventstore import EventStore, StoredEvent
from libs.common.jspublish import AckWindow
from libs.common.messaging import Envelope, ensure_stream
from libs.common.partitions import PartitionedTable, ensure_partitions
from libs.common.relay import Relay
from tests.common.support import poll

SCHEMA = "relaytest"
CHANNEL = "relaytest_events"
NAMES_SQL = """
CREATE TABLE names (aggregate_id UUID PRIMARY KEY, name TEXT NOT NULL, changes INTEGER NOT NULL);
"""


class Names:
    """Each aggregate's latest name and how many events changed it (one too many = applied twice)."""

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
    async with pools[0].acquire() as conn:
        await ensure_partitions(conn, PartitionedTable("events", "month"), ahead=1)
    yield pools[0]
    await pools.close()


@pytest.fixture
async def js(config: Config, nats_client: NatsClient) -> JetStreamContext:
    jetstream = nats_client.jetstream()
    await ensure_stream(jetstream, config.stream_name, config.subject_prefix)
    return jetstream


def relay(
    pool: asyncpg.Pool, js: JetStreamContext, config: Config, *, batch_events: int = 1000, window: int = 256
) -> Relay:
    return Relay(pool, js, schema=SCHEMA, shard=0, notify_channel=CHANNEL, subject_prefix=config.subject_prefix,
                 poll_seconds=0.05, batch_events=batch_events, window=window)  # fmt: skip


async def append(pool: asyncpg.Pool, aggregate: uuid.UUID, version: int, *names: str) -> list[StoredEvent]:
    messages = [
        events_pb2.MerchantCreated(business_name=n)
        if version + k == 0
        else events_pb2.MerchantUpdated(business_name=n)
        for k, n in enumerate(names)
    ]
    async with pool.acquire() as conn, conn.transaction():
        return await EventStore(CHANNEL).append(
            conn, aggregate_id=aggregate, aggregate_type="T", expected_version=version, new_events=messages
        )


async def published(js: JetStreamContext, config: Config) -> list[dict[str, object]]:
    """Every message in the stream, in stream order."""
    count = (await js.stream_info(config.stream_name)).state.messages
    if not count:
        return []
    sub = await js.pull_subscribe(f"{config.subject_prefix}.>", stream=config.stream_name)
    try:
        found: list[dict[str, object]] = []
        while len(found) < count:
            found += [json.loads(m.data) for m in await sub.fetch(count - len(found), timeout=5)]
        return found
    finally:
        await sub.unsubscribe()


async def test_the_published_envelope_decodes_to_the_stored_event(
    pool: asyncpg.Pool, js: JetStreamContext, config: Config
) -> None:
    token = context.use(
        context.RequestContext(request_id="req-1", actor="merchant:k", trace={"traceparent": "00-a"})
    )
    try:
        [stored] = await append(pool, ids.new_id(7), 0, 'Acme "Ltd" \\ ünïcode')
    finally:
        context.reset(token)
    assert await relay(pool, js, config).publish_pending() == 1
    sub = await js.pull_subscribe(f"{config.subject_prefix}.>", stream=config.stream_name)
    [msg] = await sub.fetch(1, timeout=5)
    assert Envelope.from_bytes(msg.data) == Envelope.of(stored, 0)
    assert msg.headers is not None
    assert msg.headers["Nats-Msg-Id"] == str(stored.id)
    assert msg.headers["traceparent"] == "00-a"


async def test_a_backlog_larger_than_a_batch_is_published_in_slices_each_event_once_in_order(
    pool: asyncpg.Pool, js: JetStreamContext, config: Config
) -> None:
    aggregates = [ids.new_id(7) for _ in range(5)]
    for version in range(6):
        for aggregate in aggregates:
            await append(pool, aggregate, version, f"v{version + 1}")
    # A transaction that took its sequence numbers early and commits in the middle of the slices.
    late_aggregate = ids.new_id(7)
    slow = await pool.acquire()
    try:
        late = slow.transaction()
        await late.start()
        await EventStore(CHANNEL).append(
            slow, aggregate_id=late_aggregate, aggregate_type="T", expected_version=0,
            new_events=[events_pb2.MerchantCreated(business_name="late")],
        )  # fmt: skip
        more = [ids.new_id(7) for _ in range(4)]
        for aggregate in more:
            await append(pool, aggregate, 0, "v1")
        small = relay(pool, js, config, batch_events=7)
        assert await small.publish_pending() == 7
        await late.commit()
    finally:
        await pool.release(slow)
    while await small.publish_pending():
        pass
    messages = await published(js, config)
    assert len(messages) == 30 + 1 + 4
    assert len({m["id"] for m in messages}) == len(messages), "each event once"
    for aggregate in aggregates:
        versions = [m["version"] for m in messages if m["aggregate_id"] == str(aggregate)]
        assert versions == [1, 2, 3, 4, 5, 6], "an aggregate's events in version order"
    assert [m["data"] for m in messages if m["aggregate_id"] == str(late_aggregate)] == [
        {"business_name": "late"}
    ]
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT cut FROM relay_state") == 0, "back to the plain cursor"


async def test_a_window_of_acks_keeps_each_aggregates_events_in_version_order(
    pool: asyncpg.Pool, js: JetStreamContext, config: Config
) -> None:
    aggregates = [ids.new_id(7) for _ in range(3)]
    for aggregate in aggregates:
        await append(pool, aggregate, 0, *(f"v{n}" for n in range(1, 41)))
    assert await relay(pool, js, config, window=16).publish_all() == 120
    messages = await published(js, config)
    for aggregate in aggregates:
        assert [m["version"] for m in messages if m["aggregate_id"] == str(aggregate)] == list(range(1, 41))


async def test_a_crash_between_publish_and_cursor_write_then_a_consumer_crash_before_ack_lose_nothing_and_apply_nothing_twice(
    pool: asyncpg.Pool, js: JetStreamContext, config: Config
) -> None:
    first_relay = relay(pool, js, config)
    assert await first_relay.publish_pending() == 0  # its cursor row exists now, so it can be held
    aggregates = [ids.new_id(7) for _ in range(10)]
    for aggregate in aggregates:
        await append(pool, aggregate, 0, "created", "renamed")
    blocker = await pool.acquire()
    try:
        hold = blocker.transaction()
        await hold.start()
        # The cursor write waits on this row lock: the relay is stopped exactly after JetStream
        # acknowledged the batch and before its cursor moved.
        await blocker.execute("SELECT 1 FROM relay_state WHERE name = 'jetstream' FOR UPDATE")
        crashing = asyncio.create_task(first_relay.publish_all())

        async def stored() -> bool:
            return (await js.stream_info(config.stream_name)).state.messages == 20

        await poll(stored, what="the batch to be acknowledged")
        assert not crashing.done()
        crashing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await crashing
        await hold.rollback()
    finally:
        await pool.release(blocker)

    # A consumer that commits its first batch and dies before acking it.
    committed = asyncio.Event()

    async def die_after_commit(event: Envelope) -> None:
        committed.set()
        await asyncio.Event().wait()

    def consumer(after_commit: object = None) -> ProjectionConsumer:
        return ProjectionConsumer(
            pool, js, Names(), service=SCHEMA, shard=0, stream=config.stream_name,
            subject_prefix=config.subject_prefix, ack_wait_seconds=1, fetch_timeout=0.2,
            after_commit=after_commit,  # type: ignore[arg-type]
        )  # fmt: skip

    dying = asyncio.create_task(consumer(die_after_commit).run())
    await asyncio.wait_for(committed.wait(), timeout=10)
    dying.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await dying

    # Both restart: the relay publishes the batch again (JetStream drops the copies) and more
    # events; the consumer gets the unacked ones again and applies only what is new.
    second_relay = relay(pool, js, config)
    survivor = consumer()
    relaying = asyncio.create_task(second_relay.run())
    consuming = asyncio.create_task(survivor.run())
    try:
        for aggregate in aggregates[:5]:
            await append(pool, aggregate, 2, "again")

        async def caught_up() -> bool:
            count = await pool.fetchval("SELECT count(*) FROM processed_events")
            info = await js.consumer_info(config.stream_name, survivor.durable)
            return bool(count == 25 and info.num_pending == 0 and info.num_ack_pending == 0)

        await poll(caught_up, timeout=20, what="the restarted consumer to catch up")
    finally:
        for task in (relaying, consuming):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert (await js.stream_info(config.stream_name)).state.messages == 25, "nothing published twice"
    rows = {r["aggregate_id"]: (r["name"], r["changes"]) for r in await pool.fetch("SELECT * FROM names")}
    assert rows == {
        **{a: ("again", 3) for a in aggregates[:5]},
        **{a: ("renamed", 2) for a in aggregates[5:]},
    }, "every event applied exactly once"


async def test_the_ack_window_fails_on_a_stream_error_or_no_stream_and_starts_clean_after_a_reset(
    js: JetStreamContext, config: Config, nats_client: NatsClient
) -> None:
    acks = AckWindow(nats_client)
    try:
        topic = f"{config.subject_prefix}.s0.t.ok"
        ok = await acks.publish(topic, b"{}", {"Nats-Msg-Id": str(uuid.uuid4())}, None)
        await acks.acked(ok)
        assert not acks.pending(ok) and acks.in_flight == 0
        # The stream refuses a message whose expected stream is another: an error ack.
        refused = await acks.publish(topic, b"{}", {"Nats-Expected-Stream": "NOT_THIS_ONE"}, None)
        with pytest.raises(nats.js.errors.APIError):
            await acks.all_acked(ok, refused)
        with pytest.raises(nats.js.errors.APIError):
            await acks.publish(topic, b"{}", {}, None)  # a failed window sends nothing more
        acks.reset()
        # No stream takes the subject: "no responders".
        lost = await acks.publish("nostream.t", b"{}", {"Nats-Msg-Id": str(uuid.uuid4())}, None)
        with pytest.raises(nats.js.errors.NoStreamResponseError):
            await acks.acked(lost)
        acks.reset()
        again = await acks.publish(topic, b"{}", {"Nats-Msg-Id": str(uuid.uuid4())}, None)
        await acks.acked(again)
    finally:
        await acks.close()
    assert (await js.stream_info(config.stream_name)).state.messages == 2
