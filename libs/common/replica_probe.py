"""How far behind each read replica of a shard is, measured from this process.

Every `CHECKOUT_REPLICA_PROBE_SECONDS` the prober samples the primary's WAL position and then each
replica's replay position. A replica that has replayed position R holds everything the primary
held at the last sample time whose position was <= R, so "now minus that time" bounds how stale a
read from it can be. The bound is conservative (between probes it only grows), and it needs no
clocks to agree: both times are this process's monotonic clock. `pg_last_xact_replay_timestamp()`
would not do: on an idle primary it stops moving while the replica is fully caught up.

Positions are `pg_current_wal_lsn()`, what the primary has written: every commit made with
synchronous_commit on (all but the invoice service's address-index bump, which no replica read
looks at) is written before it is visible, so a sample covers whatever was visible before it.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import asyncpg

from libs.common.db import Connection, init_connection
from libs.common.replica_config import REPLICATION_LAG_ALERT_SECONDS, Role

log = logging.getLogger("checkout.replicas")

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
    def __init__(self, shard: int, primary_dsn: str, replicas: list[Replica], horizon: float) -> None:
        self.shard = shard
        self.primary_dsn = primary_dsn
        self.replicas = replicas
        self.history = PrimaryHistory(horizon)
        self.primary_position: int | None = None
        # Its own connection: under load the pool's could all be busy, the probe would wait,
        # and every replica would look further behind than it is.
        self._primary: asyncpg.Connection | None = None

    def serving(self, role: Role, max_lag: float, now: float) -> list[Replica]:
        fresh = [r for r in self.replicas if role.name in r.roles and r.staleness(now) <= max_lag]
        return sorted(fresh, key=lambda r: r.staleness(now))

    def configured(self, role: Role) -> bool:
        return any(role.name in r.roles for r in self.replicas)

    async def probe(self) -> None:
        try:
            if self._primary is None or self._primary.is_closed():
                self._primary = await asyncpg.connect(self.primary_dsn, timeout=CONNECT_TIMEOUT)
            sampled = time.monotonic()
            position = int(await self._primary.fetchval(PRIMARY_POSITION_SQL, timeout=PROBE_TIMEOUT))
        except DATABASE_ERRORS as error:
            log.debug("shard %d: primary position unavailable: %s", self.shard, error)
            await self.close()
            return  # without a fresh sample every replica's bound keeps growing: the safe side
        self.history.add(position, sampled)
        self.primary_position = position
        await asyncio.gather(*(r.probe(self.history, position) for r in self.replicas))

    async def close(self) -> None:
        conn, self._primary = self._primary, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()
