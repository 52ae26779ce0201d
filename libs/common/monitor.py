"""Operational levels a service reports (seed: "Key Metrics to Monitor"): pool use per shard,
relay lag (events not yet on JetStream, and how old the oldest is), projection lag (messages a
consumer has not acked yet), partition rows and bytes, rows per shard and their balance, dead
letters, and the archive's sizes (replica lag is libs/common/replicas.py's). Values that need I/O
are refreshed by one background loop; a scrape reads the last ones (libs/common/metrics.py),
never waiting on a database."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from libs.common import balance, metrics
from libs.common.archive import archive_sizes
from libs.common.partitions import partition_sizes

if TYPE_CHECKING:
    from libs.common.service import Runtime

log = logging.getLogger("checkout.monitor")


class Monitor:
    def __init__(self, runtime: Runtime, interval: float = 15.0) -> None:
        self.rt = runtime
        self.interval = interval
        self.relay_lag: dict[int, int] = {}
        self.relay_lag_seconds: dict[int, float] = {}
        self.consumer_pending: dict[str, int] = {}
        self.partition_rows: dict[tuple[int, str], int] = {}
        self.partition_bytes: dict[tuple[int, str], int] = {}
        self.archive_bytes: dict[tuple[int, str], int] = {}
        self.dead_letters: dict[int, int] = {}
        self.schema_bytes: dict[int, int] = {}
        metrics.register(self)

    def close(self) -> None:
        metrics.unregister(self)

    def shard_rows(self) -> dict[int, int]:
        rows = dict.fromkeys(self.rt.pools.shards, 0)
        for (shard, _), value in self.partition_rows.items():
            rows[shard] = rows.get(shard, 0) + value
        return rows

    def samples(self) -> Iterable[metrics.Sample]:
        service = self.rt.spec.name
        for shard, stats in self.rt.pools.stats().items():
            states = {"open": stats["size"], "in_use": stats["size"] - stats["idle"], **stats}
            for state in ("open", "in_use", "idle", "max"):
                yield (
                    "checkout_db_pool_connections",
                    {"service": service, "shard": str(shard), "state": state},
                    states[state],
                )
        for (shard, name), value in self.partition_rows.items():
            yield (
                "checkout_partition_rows",
                {"service": service, "shard": str(shard), "partition": name},
                value,
            )
        for (shard, name), value in self.partition_bytes.items():
            yield (
                "checkout_partition_bytes",
                {"service": service, "shard": str(shard), "partition": name},
                value,
            )
        for (shard, name), value in self.archive_bytes.items():
            labels = {"service": service, "shard": str(shard), "partition": name}
            yield "checkout_archive_partition_bytes", labels, value
        if self.partition_rows:
            rows = self.shard_rows()
            for shard, value in rows.items():
                yield "checkout_shard_rows", {"service": service, "shard": str(shard)}, value
            yield "checkout_shard_balance_ratio", {"service": service}, metrics.balance_ratio(rows.values())
        for shard, size in self.schema_bytes.items():
            yield "checkout_shard_bytes", {"service": service, "shard": str(shard)}, size
        for shard, value in self.relay_lag.items():
            yield "checkout_relay_lag_events", {"service": service, "shard": str(shard)}, value
        for shard, age in self.relay_lag_seconds.items():
            yield "checkout_relay_lag_seconds", {"service": service, "shard": str(shard)}, age
        for durable, value in self.consumer_pending.items():
            yield "checkout_projection_pending_messages", {"service": service, "consumer": durable}, value
        for shard, value in self.dead_letters.items():
            yield "checkout_dead_letters", {"service": service, "shard": str(shard)}, value

    async def refresh(self) -> None:
        for shard, relay in self.rt.relays.items():
            self.relay_lag[shard], self.relay_lag_seconds[shard] = await relay.lag()
        for shard, pool in self.rt.pools.items():
            async with pool.acquire() as conn:
                for name, (rows, size) in (await partition_sizes(conn, "events")).items():
                    self.partition_rows[(shard, name)] = rows
                    self.partition_bytes[(shard, name)] = size
                for table in self.rt.spec.archived:
                    for name, (_, size) in (
                        await archive_sizes(conn, self.rt.spec.name, table.table)
                    ).items():
                        self.archive_bytes[(shard, name)] = size
                self.dead_letters[shard] = int(await conn.fetchval("SELECT count(*) FROM dead_letters"))
                self.schema_bytes[shard] = await balance.schema_bytes(conn, self.rt.spec.name)
        if self.rt.js is not None:
            for consumer in self.rt.consumers:
                info = await self.rt.js.consumer_info(consumer.stream, consumer.durable)
                self.consumer_pending[consumer.durable] = info.num_pending + info.num_ack_pending

    async def run(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # metrics must never take the service down
                await self.refresh()
            await asyncio.sleep(self.interval)
