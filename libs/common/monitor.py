"""Operational metrics a service reports (seed: "Key Metrics to Monitor"): pool use per shard,
relay lag (events not yet on JetStream), projection lag (messages a consumer has not acked yet),
partition sizes and the archive's (replica lag is libs/common/replicas.py's). Values that need I/O are refreshed by one background loop and read by the
OpenTelemetry callbacks, which must not block."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

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
        self.consumer_pending: dict[str, int] = {}
        self.partition_rows: dict[tuple[int, str], int] = {}
        self.archive_bytes: dict[tuple[int, str], int] = {}
        meter = metrics.get_meter(f"checkout.{runtime.spec.name}")
        meter.create_observable_gauge(
            "checkout_db_pool_connections", [self._pools], description="open connections per shard pool"
        )
        meter.create_observable_gauge(
            "checkout_relay_lag_events", [self._relay], description="committed events not yet on JetStream"
        )
        meter.create_observable_gauge(
            "checkout_projection_pending_messages",
            [self._pending],
            description="messages a consumer has not acked",
        )
        meter.create_observable_gauge(
            "checkout_partition_rows", [self._partitions], description="estimated rows per events partition"
        )
        meter.create_observable_gauge(
            "checkout_archive_partition_bytes", [self._archive], description="bytes per archived partition"
        )

    def _archive(self, _: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(v, {"service": self.rt.spec.name, "shard": s, "partition": p})
            for (s, p), v in self.archive_bytes.items()
        ]

    def _pools(self, _: CallbackOptions) -> Iterable[Observation]:
        for shard, stats in self.rt.pools.stats().items():
            for state in ("size", "idle", "max"):
                yield Observation(
                    stats[state], {"service": self.rt.spec.name, "shard": shard, "state": state}
                )

    def _relay(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(v, {"service": self.rt.spec.name, "shard": s}) for s, v in self.relay_lag.items()]

    def _pending(self, _: CallbackOptions) -> Iterable[Observation]:
        return [Observation(v, {"consumer": name}) for name, v in self.consumer_pending.items()]

    def _partitions(self, _: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(v, {"service": self.rt.spec.name, "shard": s, "partition": p})
            for (s, p), v in self.partition_rows.items()
        ]

    async def refresh(self) -> None:
        for shard, relay in self.rt.relays.items():
            self.relay_lag[shard] = await relay.lag()
            async with self.rt.pools[shard].acquire() as conn:
                for name, rows in (await partition_sizes(conn, "events")).items():
                    self.partition_rows[(shard, name)] = rows
                for table in self.rt.spec.archived:
                    for name, (_, size) in (
                        await archive_sizes(conn, self.rt.spec.name, table.table)
                    ).items():
                        self.archive_bytes[(shard, name)] = size
        if self.rt.js is not None:
            for consumer in self.rt.consumers:
                info = await self.rt.js.consumer_info(consumer.stream, consumer.durable)
                self.consumer_pending[consumer.durable] = info.num_pending + info.num_ack_pending

    async def run(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # metrics must never take the service down
                await self.refresh()
            await asyncio.sleep(self.interval)
