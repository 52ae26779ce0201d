"""`make bench` section slot_move (issue 15): how fast the slot mover copies a shard's rows, and
how long writes wait at its fence.

Shard 0 is filled with a realistic shard (tools/scale_data.py: invoices, payments, audit entries,
daily metrics) and half its slots are moved to shard 1 and back, round after round, while a
writer appends events to an aggregate in the moving slots (redirected to the new owner when its
write finds the slot moved, as a service is). Each round also runs the peer: PostgreSQL's own
COPY of the same rows from the owner into scratch copies of the tables (with their indexes) on the
other shard: a plain transfer, without the mover's snapshot, batches, upserts and capture. Reported: the mover's bulk-copy rows/s, the peer's, their ratio
(medians over the rounds), the fence time the mover measured and the longest wait of a write.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import nats
from checkout.merchant.v1 import events_pb2

from libs.common import ids, slotmove_catalog, slotmove_control, slotmover
from libs.common.config import SERVICES, Config
from libs.common.db import init_connection
from libs.common.eventstore import EventStore
from libs.common.messaging import ensure_stream
from libs.common.partitions import PartitionedTable, ensure_partitions
from libs.common.relay import Relay
from libs.common.schema import upgrade_shard
from libs.common.shardstore import ensure_control
from libs.common.slotmove_catalog import SlotRange
from libs.common.slotmoved import is_slot_moved
from tools import scale_data
from tools.devservers import Servers

ROOT = Path(__file__).resolve().parent.parent
MOVING = SlotRange(0, 2047)
PEER_SCHEMA = "bench_copy_peer"
EVENTS = PartitionedTable("events", "month")


class Writer:
    """Appends one event at a time to a merchant aggregate in the moving slots; a write that
    finds its slot moved goes to the other shard. Keeps the longest a write took."""

    def __init__(self, dsns: list[str], owner: int) -> None:
        self.dsns = dsns
        self.owner = owner
        self.aggregate = ids.new_id(MOVING.first)
        self.version = 0
        self.longest = 0.0
        self.writes = 0
        self.store = EventStore("bench_moves")

    async def run(self, stop: asyncio.Event) -> None:
        conns = [await asyncpg.connect(d, server_settings={"search_path": "merchant"}) for d in self.dsns]
        try:
            while not stop.is_set():
                started = time.perf_counter()
                while True:
                    try:
                        async with conns[self.owner].transaction():
                            await self.store.append(
                                conns[self.owner],
                                aggregate_id=self.aggregate,
                                aggregate_type="Merchant",
                                expected_version=self.version,
                                new_events=[events_pb2.MerchantUpdated(business_name=f"n{self.version}")],
                            )
                        break
                    except asyncpg.PostgresError as error:
                        if not is_slot_moved(error):
                            raise
                        self.owner = 1 - self.owner
                self.version += 1
                self.writes += 1
                self.longest = max(self.longest, time.perf_counter() - started)
                await asyncio.sleep(0.005)
        finally:
            for conn in conns:
                await conn.close()


async def _peer(source_dsn: str, target_dsn: str) -> tuple[int, float]:
    """COPY of every catalog table's rows in the slots, source to scratch tables on the target."""
    source, target = await asyncpg.connect(source_dsn), await asyncpg.connect(target_dsn)
    try:
        rows, started = 0, time.perf_counter()
        for schema in SERVICES:
            for table in await slotmove_catalog.describe(source, schema):
                scratch = f'"{PEER_SCHEMA}"."{schema}_{table.name}"'
                await target.execute(f"DROP TABLE IF EXISTS {scratch}")
                # The same indexes as the real table: the peer pays their upkeep as the mover does.
                await target.execute(f"CREATE TABLE {scratch} (LIKE {table.qualified} INCLUDING INDEXES)")
                buffer = io.BytesIO()
                query = (
                    f"SELECT * FROM {table.qualified} t WHERE {table.slot_of('t')} "
                    f"BETWEEN {MOVING.first} AND {MOVING.last}"
                )
                await source.copy_from_query(query, output=buffer, format="binary")
                buffer.seek(0)
                status = await target.copy_to_table(
                    f"{schema}_{table.name}", source=buffer, schema_name=PEER_SCHEMA, format="binary"
                )
                rows += int(status.split()[-1])
        return rows, time.perf_counter() - started
    finally:
        await source.close()
        await target.close()


async def _move(config: Config, to_shard: int) -> slotmove_control.SlotMove:
    control = await asyncpg.connect(config.control_database())
    try:
        move = await slotmove_control.create_move(control, MOVING, to_shard)
    finally:
        await control.close()
    mover = slotmover.SlotMover(config)
    for _ in range(3):  # a fence lifted after its timeout is tried again, as the mover's loop does
        done = await mover.run_once()
        assert done is not None and done.id == move.id, done
        if done.phase == "done":
            return done
    raise AssertionError(f"the move did not finish: {done}")


async def run(servers: Servers, invoices: int, rounds: int) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    config = Config(
        database_url=servers.database_url,
        database_prefix=f"bench_moves_{tag}",
        shard_count=2,
        nats_url=servers.nats_url,
        stream_name=f"BENCH_MOVES_{tag.upper()}",
        subject_prefix=f"benchmoves{tag}",
    )
    dsns = [config.shard_dsn(0), config.shard_dsn(1)]
    sizes = scale_data.Sizes(invoices=invoices, merchants=100, largest=invoices // 10, days=60)
    await scale_data.build(dsns[0], sizes, log=False)
    for dsn in dsns:
        for service in SERVICES:
            await upgrade_shard(dsn, service, ROOT / "services" / service)
    for dsn in dsns:
        conn = await asyncpg.connect(dsn, server_settings={"search_path": "merchant"})
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{PEER_SCHEMA}"')
        await ensure_partitions(conn, EVENTS, ahead=1)  # the writer's, as the services make them
        await conn.close()
    await ensure_control(config)
    async with _relays(config, dsns):
        return await _rounds(config, dsns, invoices, rounds)


@contextlib.asynccontextmanager
async def _relays(config: Config, dsns: list[str]) -> AsyncIterator[None]:
    """The merchant schema's relay on both shards, as the service runs it: the fence waits for
    the source's to publish what the writer appended."""
    nc = await nats.connect(config.nats_url)
    pools = [
        await asyncpg.create_pool(
            d, min_size=1, max_size=2, server_settings={"search_path": "merchant"}, init=init_connection
        )
        for d in dsns
    ]
    js = nc.jetstream()
    await ensure_stream(js, config.stream_name, config.subject_prefix)
    relays = [
        Relay(pool, js, schema="merchant", shard=n, notify_channel="bench_moves",
              subject_prefix=config.subject_prefix, poll_seconds=0.05)
        for n, pool in enumerate(pools)
    ]  # fmt: skip
    tasks = [asyncio.create_task(r.run()) for r in relays]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for pool in pools:
            await pool.close()
        await nc.close()


async def _rounds(config: Config, dsns: list[str], invoices: int, rounds: int) -> dict[str, Any]:
    mover_rates, peer_rates, fences, waits, moved_rows = [], [], [], [], []
    owner = 0
    for _ in range(rounds):
        writer, stop = Writer(dsns, owner), asyncio.Event()
        writing = asyncio.create_task(writer.run(stop))
        await asyncio.sleep(0.2)  # the writer is appending before the move begins
        done = await _move(config, 1 - owner)
        stop.set()
        await writing
        copied = sum(done.rows_copied.values())
        assert done.copy_seconds and done.fence_ms is not None
        mover_rates.append(done.rows_total / done.copy_seconds)
        fences.append(done.fence_ms)
        waits.append(writer.longest * 1000)
        moved_rows.append(copied)
        owner = 1 - owner
        rows, seconds = await _peer(dsns[owner], dsns[1 - owner])
        peer_rates.append(rows / seconds)
    mover, peer = statistics.median(mover_rates), statistics.median(peer_rates)
    return {
        "invoices": invoices,
        "rows_moved_median": int(statistics.median(moved_rows)),
        "rounds": rounds,
        "mover_rows_per_second_median": round(mover, 1),
        "copy_peer_rows_per_second_median": round(peer, 1),
        "mover_to_copy_ratio": round(mover / peer, 3),
        "fence_ms_median": round(statistics.median(fences), 1),
        "fence_ms_max": round(max(fences), 1),
        "longest_write_ms_median": round(statistics.median(waits), 1),
        "note": "mover: the bulk copy (one snapshot, keyset batches of 1000, upserts, triggers); peer: "
        "binary COPY of the same rows into copies of the tables with their indexes. The writer appends "
        "to the moving slots throughout; its longest write includes the fence and the redirect.",
    }
