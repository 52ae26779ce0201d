"""Reads routed to a shard's streaming replicas by role, lag and consistency token.

Each read names its role (libs/common/replica_config.py). A replica serves it only while
  - its last probe succeeded (it answers, and is still a standby),
  - it is provably no further behind than the role tolerates, and
  - it has replayed the caller's consistency token, if one was sent (waiting a bounded time);
otherwise the read goes to the shard's primary, counted with the reason. A replica that fails in
the middle of a read is marked down and the read is run again on the primary: a replica outage
costs latency, never a failed request.

How far behind a replica is: every `CHECKOUT_REPLICA_PROBE_SECONDS` the prober samples the
primary's WAL position and then each replica's replay position. A replica that has replayed
position R holds everything the primary held at the last sample time whose position was <= R, so
"now minus that time" bounds how stale a read from it can be. The bound is conservative (between
probes it only grows), and it needs no clocks to agree: both times are this process's monotonic
clock. `pg_last_xact_replay_timestamp()` would not do: on an idle primary it stops moving while
the replica is fully caught up.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import parse_qs, urlsplit

import asyncpg
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from libs.common import consistency
from libs.common.config import Config
from libs.common.db import Connection, init_connection
from libs.common.replica_config import REPLICATION_LAG_ALERT_SECONDS, ROLES, Role

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    from libs.common.db import ShardPools

log = logging.getLogger("checkout.replicas")

T = TypeVar("T")
Query = Callable[[Connection], Awaitable[T]]

PRIMARY_POSITION_SQL = "SELECT (pg_current_wal_lsn() - '0/0')::bigint"
REPLAY_POSITION_SQL = "SELECT (pg_last_wal_replay_lsn() - '0/0')::bigint"
PROBE_SQL = "SELECT pg_is_in_recovery() AS standby, (pg_last_wal_replay_lsn() - '0/0')::bigint AS replay"

# Errors that say "this replica cannot serve now", never "this read is wrong": connection loss,
# a server shutting down or still starting, and queries cancelled by a recovery conflict.
REPLICA_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.InternalClientError,  # a connection left mid-operation by one of the above
)
DATABASE_ERRORS: tuple[type[BaseException], ...] = (*REPLICA_ERRORS, asyncpg.PostgresError)
CONNECT_TIMEOUT = 2.0
PROBE_TIMEOUT = 1.0
# A replica whose pool is exhausted is skipped rather than waited for: the primary serves.
ACQUIRE_TIMEOUT = 0.25
HISTORY_MAX = 2048


class PrimaryHistory:
    """Recent (position, time) samples of a primary, both increasing."""

    def __init__(self, horizon_seconds: float) -> None:
        self.horizon = horizon_seconds
        self._positions: list[int] = []
        self._times: list[float] = []

    def add(self, position: int, at: float) -> None:
        if self._positions and position <= self._positions[-1]:
            # Nothing new since the last sample: the primary held no more than this at `at` too.
            self._times[-1] = max(self._times[-1], at)
            return
        self._positions.append(position)
        self._times.append(at)
        while self._times[0] < at - self.horizon and len(self._times) > 1:
            del self._positions[0], self._times[0]
        if len(self._positions) > HISTORY_MAX:
            # Thin the older half: a missing sample only makes a replica look further behind.
            half = len(self._positions) // 2
            self._positions[:half] = self._positions[:half:2]
            self._times[:half] = self._times[:half:2]

    def caught_up_at(self, replayed: int) -> float | None:
        """The latest sample time whose position the replica has replayed (None: none of them)."""
        index = bisect.bisect_right(self._positions, replayed)
        return self._times[index - 1] if index else None


def replica_name(dsn: str) -> str:
    """host:port/database of a DSN, without credentials (it is shown to operators)."""
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    host = parts.hostname or (query.get("host") or ["localhost"])[0]
    port = parts.port or int((query.get("port") or ["5432"])[0])
    return f"{host}:{port}{parts.path or '/'}"


class Replica:
    """One replica database of one shard, its pool, and what its last probe measured."""

    def __init__(self, shard: int, dsn: str, roles: Iterable[str], schema: str, pool_max: int) -> None:
        self.shard = shard
        self.dsn = dsn
        self.name = replica_name(dsn)
        self.roles = sorted(set(roles))
        self._schema = schema
        self._pool_max = pool_max
        self.pool: asyncpg.Pool | None = None
        self._probe_conn: asyncpg.Connection | None = None
        self.up = False
        self.replayed: int | None = None
        self.caught_up_at: float | None = None
        self.lag_bytes: int | None = None
        self.lag_seconds: float | None = None
        self.error = "not probed yet"

    async def open(self) -> None:
        # No connection at start: a replica that is down must not keep the service from starting.
        self.pool = await asyncpg.create_pool(
            self.dsn,
            min_size=0,
            max_size=self._pool_max,
            timeout=CONNECT_TIMEOUT,
            server_settings={
                "search_path": f"{self._schema},public",
                "application_name": f"checkout-{self._schema}",
            },
            init=init_connection,
        )

    def staleness(self, now: float) -> float:
        """How stale a read could be right now (infinite when unknown)."""
        if not self.up or self.caught_up_at is None:
            return float("inf")
        return now - self.caught_up_at

    def fail(self, error: BaseException) -> None:
        if self.up:
            log.warning(
                "replica %s of shard %d failed, reading from the primary: %s", self.name, self.shard, error
            )
        self.up = False
        self.error = f"{type(error).__name__}: {error}"

    async def probe(self, history: PrimaryHistory, primary_position: int) -> None:
        try:
            if self._probe_conn is None or self._probe_conn.is_closed():
                self._probe_conn = await asyncpg.connect(self.dsn, timeout=CONNECT_TIMEOUT)
            row = await self._probe_conn.fetchrow(PROBE_SQL, timeout=PROBE_TIMEOUT)
        except DATABASE_ERRORS as error:  # any error: it cannot be measured, so it does not serve
            await self._drop_probe_conn()
            self.fail(error)
            return
        assert row is not None
        now = time.monotonic()
        if not row["standby"] or row["replay"] is None:
            # Promoted (or never a standby): it no longer follows this primary.
            self.fail(RuntimeError("not a standby of the primary (promoted?)"))
            return
        self.replayed = row["replay"]
        self.caught_up_at = history.caught_up_at(row["replay"])
        self.lag_bytes = max(0, primary_position - row["replay"])
        self.lag_seconds = None if self.caught_up_at is None else now - self.caught_up_at
        if not self.up:
            log.info("replica %s of shard %d serves reads", self.name, self.shard)
        self.up, self.error = True, ""

    async def wait_for(self, conn: Connection, position: int, deadline: float) -> int | None:
        """Polls the replay position until it reaches `position` (returned) or the deadline."""
        delay = 0.002
        while True:
            replayed = await conn.fetchval(REPLAY_POSITION_SQL)
            if replayed is not None and replayed >= position:
                return int(replayed)
            if time.monotonic() + delay > deadline:
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)

    async def _drop_probe_conn(self) -> None:
        conn, self._probe_conn = self._probe_conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()

    async def close(self) -> None:
        await self._drop_probe_conn()
        if self.pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pool.close(), 5)


@dataclass(frozen=True)
class ReplicaStatus:
    name: str
    roles: list[str]
    up: bool
    lag_seconds: float | None
    lag_bytes: int | None
    error: str

    @property
    def lagging(self) -> bool:
        """The seed's replication-lag alert."""
        return not self.up or self.lag_seconds is None or self.lag_seconds > REPLICATION_LAG_ALERT_SECONDS


class ShardReplicas:
    def __init__(self, shard: int, primary: asyncpg.Pool, replicas: list[Replica], horizon: float) -> None:
        self.shard = shard
        self.primary = primary
        self.replicas = replicas
        self.history = PrimaryHistory(horizon)
        self.primary_position: int | None = None

    def serving(self, role: Role, max_lag: float, now: float) -> list[Replica]:
        fresh = [r for r in self.replicas if role.name in r.roles and r.staleness(now) <= max_lag]
        return sorted(fresh, key=lambda r: r.staleness(now))

    def configured(self, role: Role) -> bool:
        return any(role.name in r.roles for r in self.replicas)

    async def probe(self) -> None:
        sampled = time.monotonic()
        try:
            position = int(await self.primary.fetchval(PRIMARY_POSITION_SQL, timeout=PROBE_TIMEOUT))
        except DATABASE_ERRORS as error:
            log.debug("shard %d: primary position unavailable: %s", self.shard, error)
            return  # without a fresh sample every replica's bound keeps growing: the safe side
        self.history.add(position, sampled)
        self.primary_position = position
        await asyncio.gather(*(r.probe(self.history, position) for r in self.replicas))


async def _give_back(pool: asyncpg.Pool, conn: PoolConnectionProxy[asyncpg.Record], *, broken: bool) -> None:
    """Returns a replica connection to its pool. One that failed mid-read is terminated first (a
    reset would find it mid-operation); a replica going away after it answered fails the reset,
    not the read."""
    if broken:
        with contextlib.suppress(Exception):
            conn.terminate()
    with contextlib.suppress(Exception):
        await pool.release(conn)


# Instruments are created once per process: OpenTelemetry keeps the first registration of a name,
# so per-router callbacks would report only the first router (tests run many in one process).
_live: weakref.WeakSet[Replicas] = weakref.WeakSet()
_meter = metrics.get_meter("checkout.replicas")
_READS = _meter.create_counter(
    "checkout_replica_reads", description="reads by role, and what served them: replica or primary (and why)"
)


def _lag_seconds(_: CallbackOptions) -> Iterable[Observation]:
    return [
        Observation(r.lag_seconds, labels)
        for router in list(_live)
        for labels, r in router.each_replica()
        if r.lag_seconds is not None
    ]


def _lag_bytes(_: CallbackOptions) -> Iterable[Observation]:
    return [
        Observation(r.lag_bytes, labels)
        for router in list(_live)
        for labels, r in router.each_replica()
        if r.lag_bytes is not None
    ]


_meter.create_observable_gauge(
    "checkout_replica_lag_seconds", [_lag_seconds], description="how stale a read from a replica may be"
)
_meter.create_observable_gauge(
    "checkout_replica_lag_bytes", [_lag_bytes], description="WAL a replica has not replayed yet"
)


class Replicas:
    """The read router of one service process, over the shards it serves."""

    def __init__(self, config: Config, schema: str, pools: ShardPools) -> None:
        self.config = config
        self.schema = schema
        self.pools = pools
        self._shards: dict[int, ShardReplicas] = {}
        # (shard, role, served by, reason) -> reads; also exported as a metric.
        self.reads: Counter[tuple[int, str, str, str]] = Counter()
        _live.add(self)

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
            self._shards[shard] = ShardReplicas(shard, self.pools[shard], replicas, horizon)

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
        labels: dict[str, str | int] = {"service": self.schema, "shard": shard, "role": role.name}
        _READS.add(1, {**labels, "served_by": served_by, "reason": reason})

    async def primary_position(self, shard: int) -> int:
        """The shard primary's WAL position now: after a commit, a token that covers it."""
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

    def each_replica(self) -> Iterable[tuple[dict[str, str | int], Replica]]:
        for shard, replicas in self._shards.items():
            for r in replicas.replicas:
                yield {"service": self.schema, "shard": shard, "replica": r.name}, r

    async def close(self) -> None:
        await asyncio.gather(*(r.close() for s in self._shards.values() for r in s.replicas))
        self._shards.clear()
