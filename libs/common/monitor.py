"""Operational metrics a service reports (seed: "Key Metrics to Monitor"): pool use per shard,
relay lag (events not yet on JetStream), projection lag (messages a consumer has not acked yet),
partition sizes and the archive's (replica lag is libs/common/replicas.py's). Values that need
I/O are refreshed by one background loop and read by the OpenTelemetry callbacks, which must not
block."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from libs.common.archive import archive_sizes
from libs.common.partitions import partition_sizes

if TYPE_CHECKING:
    from libs.common.service import Runtime

log = logging.getLogger("checkout.monitor")

# The gauges are created once per process and read every live monitor: OpenTelemetry keeps the
# first instrument of a name, so a second runtime in one process (tests run several) creating
# its own would report nothing.
_monitors: weakref.WeakSet[Monitor] = weakref.WeakSet()
_instruments_created = False


def _observe(
    read: Callable[[Monitor], Iterable[Observation]],
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def callback(_: CallbackOptions) -> Iterable[Observation]:
        return [o for monitor in list(_monitors) for o in read(monitor)]

    return callback


def _ensure_instruments() -> None:
    global _instruments_created
    if _instruments_created:
        return
    _instruments_created = True
    meter = metrics.get_meter("checkout.monitor")
    meter.create_observable_gauge(
        "checkout_db_pool_connections",
        [_observe(Monitor._pools)],
        description="open connections per shard pool",
    )
    meter.create_observable_gauge(
        "checkout_relay_lag_events",
        [_observe(Monitor._relay)],
        description="committed events not yet on JetStream",
    )
    meter.create_observable_gauge(
        "checkout_projection_pending_messages",
        [_observe(Monitor._pending)],
        description="messages a consumer has not acked",
    )
    meter.create_observable_gauge(
        "checkout_partition_rows",
        [_observe(Monitor._partitions)],
        description="estimated rows per events partition",
    )
    meter.create_observable_gauge(
        "checkout_archive_partition_bytes",
        [_observe(Monitor._archive)],
        description="bytes per archived partition",
    )


class Monitor:
    def __init__(self, runtime: Runtime, interval: float = 15.0) -> None:
        self.rt = runtime
        self.interval = interval
        self.relay_lag: dict[int, int] = {}
        self.consumer_pending: dict[str, int] = {}
        self.partition_rows: dict[tuple[int, str], int] = {}
        self.archive_bytes: dict[tuple[int, str], int] = {}
        _ensure_instruments()
        _monitors.add(self)

    def _archive(self) -> Iterable[Observation]:
        return [
            Observation(v, {"service": self.rt.spec.name, "shard": s, "partition": p})
            for (s, p), v in self.archive_bytes.items()
        ]

    def close(self) -> None:
        _monitors.discard(self)

    def _pools(self) -> Iterable[Observation]:
        for shard, stats in self.rt.pools.stats().items():
            for state in ("size", "idle", "max"):
                yield Observation(
                    stats[state], {"service": self.rt.spec.name, "shard": shard, "state": state}
                )

    def _relay(self) -> Iterable[Observation]:
        return [Observation(v, {"service": self.rt.spec.name, "shard": s}) for s, v in self.relay_lag.items()]

    def _pending(self) -> Iterable[Observation]:
        return [Observation(v, {"consumer": name}) for name, v in self.consumer_pending.items()]

    def _partitions(self) -> Iterable[Observation]:
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
