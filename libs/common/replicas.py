"""Reads routed to a shard's streaming replicas by role, lag and consistency token.

Each read names its role (libs/common/replica_config.py). A replica serves it only while
  - its last probe succeeded (it answers, and is still a standby),
  - it is provably no further behind than the role tolerates (libs/common/replica_probe.py), and
  - it has replayed the caller's consistency token, if one was sent (waiting a bounded time);
otherwise the read goes to the shard's primary, counted with the reason. A replica that fails in
the middle of a read is marked down and the read is run again on the primary: a replica outage
costs latency, never a failed request.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

import asyncpg

from libs.common import consistency, metrics
from libs.common.coalesce import Fresh
from libs.common.config import Config
from libs.common.db import Connection
from libs.common.replica_config import ROLES, Role
from libs.common.replica_probe import (
    DATABASE_ERRORS,
    PRIMARY_POSITION_SQL,
    REPLICA_ERRORS,
    PrimaryHistory,
    Replica,
    ReplicaStatus,
    ShardReplicas,
    replica_name,
)

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    from libs.common.db import ShardPools

__all__ = ["PrimaryHistory", "Replica", "ReplicaStatus", "Replicas", "replica_name"]

log = logging.getLogger("checkout.replicas")

T = TypeVar("T")
Query = Callable[[Connection], Awaitable[T]]
# A replica whose pool is exhausted is skipped rather than waited for: the primary serves.
ACQUIRE_TIMEOUT = 0.25


async def _give_back(pool: asyncpg.Pool, conn: PoolConnectionProxy[asyncpg.Record], *, broken: bool) -> None:
    """Returns a replica connection to its pool. One that failed mid-read is terminated first (a
    reset would find it mid-operation); a replica going away after it answered fails the reset,
    not the read."""
    if broken:
        with contextlib.suppress(Exception):
            conn.terminate()
    with contextlib.suppress(Exception):
        await pool.release(conn)


class Replicas:
    """The read router of one service process, over the shards it serves."""

    def __init__(self, config: Config, schema: str, pools: ShardPools) -> None:
        self.config = config
        self.schema = schema
        self.pools = pools
        self._shards: dict[int, ShardReplicas] = {}
        self._positions: dict[int, Fresh[int]] = {}
        # (shard, role, served by, reason) -> reads; also exported as a metric.
        self.reads: Counter[tuple[int, str, str, str]] = Counter()
        metrics.register(self)

    @property
    def configured(self) -> bool:
        return bool(self._shards)

    async def open(self, shards: Iterable[int]) -> None:
        # Samples older than twice the largest tolerance cannot make any replica fit any role.
        horizon = max(role.max_lag_seconds for role in ROLES.values()) * 2
        for shard in shards:
            by_dsn: dict[str, list[str]] = {}
            for role, dsns in self.config.replicas_of(shard).items():
                for dsn in dsns:
                    by_dsn.setdefault(dsn, []).append(role)
            if not by_dsn:
                continue
            replicas = [
                Replica(shard, dsn, roles, self.schema, self.config.pool_max_size)
                for dsn, roles in by_dsn.items()
            ]
            for replica in replicas:
                await replica.open()
            self._shards[shard] = ShardReplicas(shard, self.config.shard_dsn(shard), replicas, horizon)

    async def run(self) -> None:
        """Probes every replica of every served shard, forever."""
        while True:
            try:
                await self.probe()
            except Exception:  # a probe bug must not stop probing: every replica would fall out of use
                log.exception("probing the replicas failed")
            await asyncio.sleep(self.config.replica_probe_seconds)

    async def probe(self) -> None:
        await asyncio.gather(*(s.probe() for s in self._shards.values()))

    async def read(self, role: Role, shard: int, query: Query[T]) -> T:
        """Runs `query` on a connection of a replica fit for `role`, or of the primary."""
        ledger = consistency.current()
        replicas = self._shards.get(shard)
        if replicas is None or not replicas.configured(role):
            return await self._on_primary(role, shard, query, "none", ledger)
        required = ledger.required.at(shard) if ledger is not None else None
        reason = "lag"
        max_lag = self.config.replica_max_lag.get(role.name, role.max_lag_seconds)
        routed = time.monotonic()
        for replica in replicas.serving(role, max_lag, routed):
            assert replica.pool is not None
            try:
                conn = await replica.pool.acquire(timeout=ACQUIRE_TIMEOUT)
            except DATABASE_ERRORS as error:
                # Not reachable, not accepting connections yet, or its database is not there
                # yet (created on the primary a moment ago): nothing was read.
                replica.fail(error)
                reason = "down"
                continue
            broken = False
            try:
                position = replica.replayed
                if required is not None and (position is None or position < required):
                    deadline = time.monotonic() + self.config.replica_wait_seconds
                    position = await replica.wait_for(conn, required, deadline)
                    if position is None:
                        reason = "token"
                        continue
                result = await query(conn)
            except REPLICA_ERRORS as error:
                broken = True
                replica.fail(error)
                reason = "down"
                continue
            finally:
                await _give_back(replica.pool, conn, broken=broken)
            self._count(shard, role, "replica", "fresh")
            if ledger is not None:
                ledger.note_read(shard, position, replica.staleness(routed))
            return result
        if reason == "lag" and not any(r.up for r in replicas.replicas if role.name in r.roles):
            reason = "down"
        return await self._on_primary(role, shard, query, reason, ledger)

    async def _on_primary(
        self, role: Role, shard: int, query: Query[T], reason: str, ledger: consistency.Ledger | None
    ) -> T:
        self._count(shard, role, "primary", reason)
        async with self.pools[shard].acquire() as conn:
            result = await query(conn)
        if ledger is not None:
            replicas = self._shards.get(shard)
            # The last sample was taken before this read began, so the read saw at least that.
            ledger.note_read(shard, replicas.primary_position if replicas is not None else None)
        return result

    def _count(self, shard: int, role: Role, served_by: str, reason: str) -> None:
        self.reads[(shard, role.name, served_by, reason)] += 1
        metrics.REPLICA_READS.labels(self.schema, str(shard), role.name, served_by, reason).inc()

    async def primary_position(self, shard: int) -> int:
        """The shard primary's WAL position now: after a commit, a token that covers it. Read
        once for the callers that ask while another read runs (libs/common/coalesce.py)."""
        fresh = self._positions.get(shard)
        if fresh is None:
            fresh = self._positions[shard] = Fresh(functools.partial(self._read_position, shard))
        return await fresh.get()

    async def _read_position(self, shard: int) -> int:
        sampled = time.monotonic()  # before the query: the primary held no more than this then
        position = int(await self.pools[shard].fetchval(PRIMARY_POSITION_SQL))
        replicas = self._shards.get(shard)
        if replicas is not None:
            replicas.history.add(position, sampled)
        return position

    def status(self, shard: int) -> list[ReplicaStatus]:
        replicas = self._shards.get(shard)
        return [
            ReplicaStatus(r.name, r.roles, r.up, r.lag_seconds, r.lag_bytes, r.error)
            for r in (replicas.replicas if replicas is not None else [])
        ]

    def samples(self) -> Iterable[metrics.Sample]:
        for shard, replicas in self._shards.items():
            for r in replicas.replicas:
                labels = {"service": self.schema, "shard": str(shard), "replica": r.name}
                if r.lag_seconds is not None:
                    yield "checkout_replica_lag_seconds", labels, r.lag_seconds
                if r.lag_bytes is not None:
                    yield "checkout_replica_lag_bytes", labels, r.lag_bytes

    async def close(self) -> None:
        await asyncio.gather(
            *(r.close() for s in self._shards.values() for r in s.replicas),
            *(s.close() for s in self._shards.values()),
        )
        self._shards.clear()
