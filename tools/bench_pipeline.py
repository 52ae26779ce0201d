"""The event pipeline against its parts, on the same servers in the same process tree:

- event append at concurrency 8 (`EventStore.append` in a transaction, one event) vs a raw
  INSERT of the same row in a transaction, and vs the `eventsourcing` library's PostgreSQL
  application recorder (`insert_events`, 8 threads, the same JSON as its state);
- the relay draining a backlog (read, publish, cursor) vs nats-py publishing the same envelopes
  with a window of 256 acks in flight (`publish_async`), with the CPU each side costs per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import statistics
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import nats
from checkout.invoice.v1 import events_pb2 as invoice_events
from checkout.invoice.v1 import invoice_pb2
from checkout.merchant.v1 import events_pb2
from nats.js.api import PubAck

from libs.common import events, ids, wakeups
from libs.common.config import Config
from libs.common.db import ShardPools, migrate_shard, migrations_for
from libs.common.eventstore import EventStore, json_dumps
from libs.common.messaging import Wire, ensure_stream, subject, wire_columns
from libs.common.partitions import PartitionedTable, ensure_partitions
from libs.common.protoconv import timestamp
from libs.common.relay import Relay
from tools.bench_support import interleaved, throughput
from tools.devservers import Servers

SCHEMA = "benchstore"
CHANNEL = "benchstore_events"
INSERT_ROW = (
    "INSERT INTO events (id, aggregate_id, aggregate_type, event_type, event_version, event_data, "
    "metadata, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
)


async def _store(servers: Servers, pool_size: int) -> tuple[Config, ShardPools]:
    config = Config(
        database_url=servers.database_url,
        database_prefix=f"bench_{uuid.uuid4().hex[:8]}",
        pool_max_size=pool_size,
        pool_min_size=pool_size,
    )
    with tempfile.TemporaryDirectory() as empty:
        await migrate_shard(config.shard_dsn(0), SCHEMA, migrations_for(Path(empty)))
    pools = ShardPools(config, SCHEMA)
    await pools.open([0])
    async with pools[0].acquire() as conn:
        await ensure_partitions(conn, PartitionedTable("events", "month"), ahead=1)
    return config, pools


def _recorder(dsn: str, pool_size: int) -> Any:
    """The eventsourcing library's PostgreSQL recorder on the same database (its own table)."""
    from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

    url = urlsplit(dsn)
    query = parse_qs(url.query)
    datastore = PostgresDatastore(
        dbname=url.path.lstrip("/"),
        host=query.get("host", [url.hostname or ""])[0],
        port=query.get("port", [str(url.port or 5432)])[0],
        user=url.username or "postgres",
        password=url.password or "",
        pool_size=pool_size,
    )
    recorder = PostgresApplicationRecorder(datastore)
    recorder.create_table()
    return recorder


async def bench_appends(servers: Servers, writers: int, per_writer: int, rounds: int) -> dict[str, Any]:
    from eventsourcing.persistence import StoredEvent as LibraryEvent

    config, pools = await _store(servers, writers)
    pool = pools[0]
    store = EventStore(CHANNEL)
    event = events_pb2.MerchantCreated(business_name="bench", contact_email="bench@example.com")
    data = events.encode(event)
    state = json_dumps(data).encode()
    recorder = _recorder(config.shard_dsn(0), writers)
    total = writers * per_writer
    # As in a service process, whose relay serves the shard: a commit wakes it in-process.
    wakes = 0

    def relay_wake() -> None:
        nonlocal wakes
        wakes += 1

    wakeups.serve(pool, CHANNEL, relay_wake)

    def appends(in_transaction: bool) -> Callable[[], Awaitable[float]]:
        async def writer(n: int) -> None:
            for _ in range(per_writer):
                async with pool.acquire() as conn, _maybe_transaction(conn, in_transaction):
                    await store.append(
                        conn,
                        aggregate_id=ids.new_id(n),
                        aggregate_type="Bench",
                        expected_version=0,
                        new_events=[event],
                    )

        return lambda: throughput(total, lambda: _gather(writer(n) for n in range(writers)))

    def inserts(in_transaction: bool) -> Callable[[], Awaitable[float]]:
        async def writer(n: int) -> None:
            for _ in range(per_writer):
                async with pool.acquire() as conn, _maybe_transaction(conn, in_transaction):
                    await conn.execute(
                        INSERT_ROW,
                        ids.new_id(n),
                        ids.new_id(n),
                        "Bench",
                        "merchant.created",
                        1,
                        data,
                        {},
                        dt.datetime.now(dt.UTC),
                    )

        return lambda: throughput(total, lambda: _gather(writer(n) for n in range(writers)))

    executor = ThreadPoolExecutor(writers, thread_name_prefix="eventsourcing")

    def library_writer() -> None:
        for _ in range(per_writer):
            recorder.insert_events(
                [
                    LibraryEvent(
                        originator_id=uuid.uuid4(),
                        originator_version=1,
                        topic="merchant.created",
                        state=state,
                    )
                ]
            )

    async def library() -> float:
        loop = asyncio.get_running_loop()
        return await throughput(
            total, lambda: _gather(loop.run_in_executor(executor, library_writer) for _ in range(writers))
        )

    try:
        # An append on its own is one statement and its own transaction, like an INSERT in
        # autocommit and like the library's insert_events; inside a caller's transaction (as the
        # services append, with their read models) it is measured against the INSERT in one too.
        alone = await interleaved(
            appends(False), {"raw_insert": inserts(False), "eventsourcing": library}, rounds
        )
        in_transaction = await interleaved(appends(True), {"raw_insert": inserts(True)}, rounds)
    finally:
        wakeups.unserve(pool, CHANNEL, relay_wake)
        executor.shutdown()
        recorder.datastore.close()
        await pools.close()
    return {
        "writers": writers,
        "appends_per_round": total,
        "in_process_relay_wakes": wakes,
        "alone": alone,
        "in_transaction": in_transaction,
    }


async def _gather(awaitables: Any) -> None:
    await asyncio.gather(*awaitables)


def _maybe_transaction(conn: Any, wanted: bool) -> contextlib.AbstractAsyncContextManager[Any]:
    return conn.transaction() if wanted else contextlib.nullcontext()


def _sized_invoice_event(n: int) -> invoice_events.InvoiceCreated:
    """An invoice.created of about 1.3 KB as an envelope, like a real one with a few items."""
    merchant = ids.new_id(7)
    return invoice_events.InvoiceCreated(
        invoice_id=str(ids.new_id(7)),
        merchant_id=str(merchant),
        title=f"Order {n}",
        description="Bench order with several items",
        items=[
            invoice_pb2.LineItem(name=f"Item {i} of the bench order", quantity="2", unit_price="12.50")
            for i in range(6)
        ],
        subtotal="150.00",
        tax="0",
        total="150.00",
        currency="USD",
        crypto_currency="ETH",
        crypto_amount="0.062500000000000000",
        network="ethereum",
        payment_address="0x9858EfFD232B4033E47d90003D41EC34EcaEda94",
        payment_uri="ethereum:0x9858EfFD232B4033E47d90003D41EC34EcaEda94@1?value=62500000000000000",
        customer_email="payer@example.com",
        created_at=timestamp(dt.datetime.now(dt.UTC)),
    )


def process_tree_cpu(pids: Sequence[int]) -> float:
    """CPU seconds (user + system) so far of `pids` and all their descendants, from /proc."""
    parent_of: dict[int, int] = {}
    used: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # After the command's closing parenthesis: state, ppid, ... utime (14th), stime (15th).
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # ended meanwhile
        parent_of[int(entry.name)] = int(fields[1])
        used[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    roots, total = set(pids), 0.0
    for pid, seconds in used.items():
        ancestor: int | None = pid
        while ancestor is not None and ancestor not in roots:
            ancestor = parent_of.get(ancestor)
        if ancestor is not None:
            total += seconds
    return total


async def bench_relay(
    servers: Servers,
    events_per_round: int,
    rounds: int,
    window: int,
    server_pids: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The relay draining a backlog of `events_per_round` vs nats-py's `publish_async` with the same
    window publishing the same envelopes (the bytes the relay published, read back from the store
    outside the timing, each with a fresh `Nats-Msg-Id` so JetStream stores it rather than drops
    it as a duplicate), to the same stream on the same server, in interleaved rounds after one
    warm-up round of each. Beside the rates: CPU microseconds per event of this process and, when
    `server_pids` names them, of PostgreSQL's and nats-server's process trees, for each side."""
    _, pools = await _store(servers, 8)
    pool = pools[0]
    store = EventStore(CHANNEL)
    nc = await nats.connect(servers.nats_url)
    js = nc.jetstream()
    tag = uuid.uuid4().hex[:8]
    stream, prefix = f"BENCH_{tag.upper()}", f"bench{tag}"
    await ensure_stream(js, stream, prefix)
    relay = Relay(
        pool, js, schema=SCHEMA, shard=0, notify_channel=CHANNEL, subject_prefix=prefix, window=window
    )
    pids = server_pids or {}
    cpu: dict[str, list[dict[str, float]]] = {"ours": [], "nats_py_windowed": []}

    async def fill() -> None:
        async def one(n: int) -> None:
            async with pool.acquire() as conn, conn.transaction():
                await store.append(
                    conn,
                    aggregate_id=ids.new_id(7),
                    aggregate_type="Invoice",
                    expected_version=0,
                    new_events=[_sized_invoice_event(n)],
                )

        for start in range(0, events_per_round, 8):
            await asyncio.gather(*(one(start + k) for k in range(min(8, events_per_round - start))))

    async def timed(side: str, run: Callable[[], Awaitable[object]]) -> float:
        before = (time.process_time(), *(process_tree_cpu([pid]) for pid in pids.values()))
        rate = await throughput(events_per_round, run)
        after = (time.process_time(), *(process_tree_cpu([pid]) for pid in pids.values()))
        names = ["bench_process", *pids]
        cpu[side].append(
            {n: (b - a) / events_per_round * 1e6 for n, a, b in zip(names, before, after, strict=True)}
        )
        return rate

    async def ours() -> float:
        await fill()

        async def drain() -> None:
            published = 0
            while published < events_per_round:
                published += await relay.publish_all()

        return await timed("ours", drain)

    async def nats_windowed() -> float:
        # The relay's own read of the newest backlog, outside the timing: the same bytes.
        rows = await pool.fetch(
            f"SELECT {wire_columns('$1')} FROM events ORDER BY sequence_number DESC LIMIT $2",
            0,
            events_per_round,
        )
        messages = [
            (subject(prefix, 0, w.type), w.payload, {**w.headers, "Nats-Msg-Id": str(uuid.uuid4())})
            for w in map(Wire.from_row, reversed(rows))
        ]

        async def publish() -> None:
            in_flight: deque[asyncio.Future[PubAck]] = deque()
            for subj, payload, headers in messages:
                if len(in_flight) >= window:
                    await in_flight.popleft()
                in_flight.append(await js.publish_async(subj, payload, headers=headers))
            for future in in_flight:
                await future

        return await timed("nats_py_windowed", publish)

    try:
        await ours()  # warm-up: connections, plans, the stream's first blocks
        await nats_windowed()
        for samples in cpu.values():
            samples.clear()
        result = await interleaved(ours, {"nats_py_windowed": nats_windowed}, rounds)
        size = await pool.fetchval(
            f"SELECT octet_length(payload) FROM (SELECT {wire_columns('$1')} FROM events LIMIT 1) e", 0
        )
    finally:
        await nc.drain()
        await pools.close()
    ratios = result["ratio_to_nats_py_windowed_rounds"]
    return {
        "events_per_round": events_per_round,
        "window": window,
        "envelope_bytes": size,
        **result,
        "ratio_spread": [min(ratios), max(ratios)],
        "cpu_us_per_event_median": {
            side: {name: round(statistics.median(r[name] for r in samples), 1) for name in samples[0]}
            for side, samples in cpu.items()
        },
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
