"""Read models equal a rebuild from the events: each one is dropped and replayed from the event
store inside a transaction that is rolled back afterwards, and compared row for row with what
the live services built under the faults. Nothing the services see changes.

Inline read models are rebuilt by their service's own `rebuild`; projections of another
service's events by `libs.common.consumer.rebuild` (which skips parked events, as the live
consumer did). The merchant service's webhook queue is left out: it is delivery state, not a
model of the events.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import asyncpg

from libs.common import consumer
from libs.common.config import Config
from libs.common.consumer import Projection
from libs.common.db import init_connection
from libs.common.eventstore import EventStore
from libs.common.messaging import Envelope
from services.analytics.projections import DailyMetricsProjection, MerchantsProjection
from services.customer.projections import CustomersProjection, PaymentHistoryProjection
from services.invoice import projections as invoice_projections
from services.invoice.projections import MerchantProfiles
from services.merchant import projections as merchant_projections

# Columns the service writes from outside the events (kept out of the comparison).
OPERATIONAL_COLUMNS = {("merchant", "api_keys"): {"last_used_at"}}

Rebuild = Callable[[asyncpg.Connection, Config, int], Awaitable[object]]


@dataclass(frozen=True)
class ReadModel:
    service: str
    tables: tuple[str, ...]
    rebuild: Rebuild


class _OneConnection:
    """What `consumer.rebuild` takes a pool for, on one connection already in a transaction (its
    own transaction becomes a savepoint of ours, which we roll back)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[asyncpg.Connection]:
        yield self.conn


async def _events(config: Config, shard: int, producer: str, types: set[str]) -> list[Envelope]:
    conn = await _connect(config, shard, producer)
    try:
        stored = await EventStore("faults").read_all(conn, limit=10_000_000)
    finally:
        await conn.close()
    return [Envelope.of(e, shard) for e in stored if e.event_type in types]


def _from_events(projection: Projection, producer: str, reset_sql: str) -> Rebuild:
    async def rebuild(conn: asyncpg.Connection, config: Config, shard: int) -> object:
        events = await _events(config, shard, producer, set(projection.event_types))
        return await consumer.rebuild(cast(asyncpg.Pool, _OneConnection(conn)), projection, events, reset_sql)

    return rebuild


async def _invoice_inline(conn: asyncpg.Connection, config: Config, shard: int) -> object:
    return await invoice_projections.rebuild(conn, EventStore("faults"))


async def _merchant_inline(conn: asyncpg.Connection, config: Config, shard: int) -> object:
    await conn.execute("TRUNCATE merchants, api_keys, webhook_endpoints, notification_templates CASCADE")
    return await merchant_projections.rebuild(conn, EventStore("faults"))


READ_MODELS = (
    ReadModel("invoice", ("invoices", "payments", "audit_entries"), _invoice_inline),
    ReadModel(
        "merchant", ("merchants", "api_keys", "webhook_endpoints", "notification_templates"), _merchant_inline
    ),
    ReadModel(
        "invoice",
        ("merchant_profiles",),
        _from_events(MerchantProfiles(), "merchant", "TRUNCATE merchant_profiles"),
    ),
    ReadModel(
        "customer",
        ("customers",),
        _from_events(CustomersProjection(), "invoice", CustomersProjection.reset_sql),
    ),
    ReadModel(
        "customer",
        ("payment_history",),
        _from_events(PaymentHistoryProjection(), "invoice", PaymentHistoryProjection.reset_sql),
    ),
    ReadModel(
        "analytics",
        ("daily_metrics", "paid_invoices"),
        _from_events(DailyMetricsProjection(), "invoice", DailyMetricsProjection.reset_sql),
    ),
    ReadModel(
        "analytics",
        ("merchant_directory",),
        _from_events(MerchantsProjection(), "merchant", MerchantsProjection.reset_sql),
    ),
)


async def _connect(config: Config, shard: int, schema: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(config.shard_dsn(shard), server_settings={"search_path": f"{schema},public"})
    await init_connection(conn)
    return conn


def _row(row: asyncpg.Record, skip: set[str]) -> str:
    return json.dumps({k: v for k, v in row.items() if k not in skip}, sort_keys=True, default=str)


async def _snapshot(conn: asyncpg.Connection, service: str, table: str) -> Counter[str]:
    skip = OPERATIONAL_COLUMNS.get((service, table), set())
    return Counter(_row(r, skip) for r in await conn.fetch(f"SELECT * FROM {table}"))


@dataclass
class Mismatch:
    service: str
    shard: int
    table: str
    only_live: int
    only_rebuilt: int
    example: str


async def compare(config: Config) -> tuple[int, list[Mismatch]]:
    """(read models compared, those that differ from their rebuild)."""
    mismatches: list[Mismatch] = []
    compared = 0
    for shard in config.shards:
        for model in READ_MODELS:
            conn = await _connect(config, shard, model.service)
            try:
                transaction = conn.transaction()
                await transaction.start()
                try:
                    live = {t: await _snapshot(conn, model.service, t) for t in model.tables}
                    await model.rebuild(conn, config, shard)
                    rebuilt = {t: await _snapshot(conn, model.service, t) for t in model.tables}
                finally:
                    await transaction.rollback()
            finally:
                await conn.close()
            for table in model.tables:
                compared += 1
                only_live, only_rebuilt = live[table] - rebuilt[table], rebuilt[table] - live[table]
                if only_live or only_rebuilt:
                    example: Any = next(iter(only_live or only_rebuilt))
                    mismatches.append(
                        Mismatch(
                            model.service,
                            shard,
                            table,
                            sum(only_live.values()),
                            sum(only_rebuilt.values()),
                            str(example)[:500],
                        )
                    )
    return compared, mismatches
