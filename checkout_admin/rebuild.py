"""A projection's read model dropped and rebuilt from the events it consumes, on one shard, with
`libs.common.consumer.rebuild` (one transaction: a failure changes nothing). This talks to the
databases directly (the service's own configuration, `CHECKOUT_*`), like `checkout-service
<name> migrate`: the gateway has no endpoint that may rewrite a read model."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from libs.common.composition import ServiceSpec
from libs.common.config import SERVICES, Config
from libs.common.consumer import Projection, RebuildReport, rebuild
from libs.common.db import Connection, ShardPools
from libs.common.eventstore import EventStore
from libs.common.messaging import Envelope
from libs.common.service import Runtime
from libs.common.shardstore import registered_shards

READ_BATCH = 1000


class RebuildError(Exception):
    """The projection cannot be rebuilt this way; the message says why."""


@dataclass(frozen=True)
class Plan:
    service: str
    projection: Projection
    reset_sql: str
    source: str  # the service whose event store holds what the projection consumes


def spec_of(service: str) -> ServiceSpec:
    if service not in SERVICES:
        raise RebuildError(f"service is one of {', '.join(SERVICES)}, not {service!r}")
    spec = importlib.import_module(f"services.{service}.service").SPEC
    assert isinstance(spec, ServiceSpec)
    return spec


def rebuildable(config: Config, service: str) -> dict[str, Plan]:
    """The service's consumed projections that say how to drop their read model (`reset_sql`),
    each with the one event store its events come from."""
    spec = spec_of(service)
    plans = {}
    for projection in Runtime(spec, config).build().projections:
        reset_sql = getattr(projection, "reset_sql", None)
        sources = {t.partition(".")[0] for t in projection.event_types}
        if reset_sql and len(sources) == 1 and (source := sources.pop()) in SERVICES:
            plans[projection.name] = Plan(service, projection, reset_sql, source)
    return plans


async def count_events(conn: Connection, types: list[str]) -> int:
    total = await conn.fetchval("SELECT count(*) FROM events WHERE event_type = ANY($1::text[])", types)
    return int(total)


async def run(
    config: Config,
    plan: Plan,
    shard: int,
    on_total: Callable[[int], None],
    on_progress: Callable[[int], None],
) -> RebuildReport:
    """Reads the shard's events of the projection's types, then applies them."""
    shards = await registered_shards(config)
    if shard not in shards:
        raise RebuildError(f"shard {shard} is not registered (shards: {', '.join(map(str, sorted(shards)))})")

    def dsn_of(number: int) -> str:
        return shards[number].dsn

    source = ShardPools(config, plan.source, dsn_of=dsn_of)
    target = ShardPools(config, plan.service, dsn_of=dsn_of)
    try:
        await source.open([shard])
        await target.open([shard])
        types = list(plan.projection.event_types)
        store = EventStore(notify_channel="")  # reads only: nothing to announce
        events: list[Envelope] = []
        async with source[shard].acquire() as conn:
            on_total(await count_events(conn, types))
            after = 0
            while batch := await store.read_all(conn, after_sequence=after, limit=READ_BATCH):
                events += [Envelope.of(e, shard) for e in batch if e.event_type in types]
                after = batch[-1].sequence_number
        return await rebuild(
            target[shard], plan.projection, events, plan.reset_sql, service=plan.service, progress=on_progress
        )
    finally:
        await source.close()
        await target.close()
