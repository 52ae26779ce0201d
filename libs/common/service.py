"""Service runtime: what every service process does the same way.

Migrate the served shards, open per-shard pools, connect to NATS and make sure the stream
exists, run one relay per shard and one consumer per (projection, shard), keep partitions
created ahead, serve gRPC with health and reflection, and shut all of it down gracefully.

The shards come from the control store (libs/common/shardstore.py), not only from the
environment: a shard an operator registers while the service runs is migrated, gets its pool and
its per-shard loops (relay, consumers, the service's own) and is served, without a restart of
this process, when the process serves every shard (no CHECKOUT_SERVED_SHARDS).

What the service itself runs comes from one call of its spec's `build` (libs/common/composition.py),
the composition root: its servicers, projections, after-commit hook, loops and close hooks.

Every long-lived loop runs under the runtime's Supervisor (libs/common/supervise.py): a loop that
fails is restarted with backoff, and one down past CHECKOUT_LOOP_GRACE_SECONDS makes the
service NOT_SERVING.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import asyncpg
import nats
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext

from libs.common import consistency, ids
from libs.common.archive import archive_partitions
from libs.common.cache import Cache
from libs.common.composition import Built, ServiceSpec
from libs.common.config import Config
from libs.common.consumer import ProjectionConsumer
from libs.common.db import Connection, ShardPools
from libs.common.errors import InvalidArgument, Unavailable
from libs.common.eventstore import EventStore
from libs.common.grpc_server import GrpcServer
from libs.common.messaging import ensure_stream
from libs.common.monitor import Monitor
from libs.common.ops import register_ops
from libs.common.partitions import PartitionedTable, ensure_partitions
from libs.common.relay import Relay
from libs.common.replica_config import Role
from libs.common.replicas import Replicas
from libs.common.schema import migrate, upgrade_shard
from libs.common.shardmap import ShardMap
from libs.common.shardstore import ShardDirectory, redact_dsn
from libs.common.supervise import Backoff, LoopFactory, Supervisor

log = logging.getLogger("checkout.service")
T = TypeVar("T")

EVENTS_TABLE = PartitionedTable("events", "month")


class Runtime:
    def __init__(self, spec: ServiceSpec, config: Config) -> None:
        self.spec = spec
        self.config = config
        self.directory = ShardDirectory(config)
        self.notify_channel = f"{spec.name}_events"
        self.store = EventStore(self.notify_channel)
        self.pools = ShardPools(config, spec.name, dsn_of=self.dsn_of)
        self.replicas = Replicas(config, spec.name, self.pools)
        self.cache = Cache(
            config.redis_url, hot_ttl=config.cache_hot_ttl_seconds, warm_ttl=config.cache_warm_ttl_seconds
        )
        self.nc: NatsClient | None = None
        self.js: JetStreamContext | None = None
        self.server: GrpcServer | None = None
        self.relays: dict[int, Relay] = {}
        self.consumers: list[ProjectionConsumer] = []
        self._registry_changed = asyncio.Event()
        self._built: Built | None = None
        self._closed = False
        self.monitor = Monitor(self)
        self.supervisor = Supervisor(
            spec.name,
            grace_seconds=config.loop_grace_seconds,
            backoff=Backoff(cap=config.loop_backoff_max_seconds),
        )

    # -- the composition -----------------------------------------------------------------------
    def build(self) -> Built:
        """The service's objects, made by its spec's `build` on the first call (by `start`, or by
        a test calling the servicers of a runtime that is only migrated) and kept."""
        if self._built is None:
            self._built = self.spec.build(self)
        return self._built

    @property
    def built(self) -> Built:
        if self._built is None:
            raise RuntimeError(f"the {self.spec.name} runtime has not built its service yet")
        return self._built

    async def _close_built(self) -> None:
        """The close hooks, newest first, once: a failing one is logged and the rest still run."""
        if self._built is None or self._closed:
            return
        self._closed = True
        for close in reversed(self._built.close):
            try:
                await close()
            except Exception:
                log.exception("%s: closing %r failed", self.spec.name, close)

    # -- the shards --------------------------------------------------------------------------
    @property
    def shard_map(self) -> ShardMap:
        """The live map (the directory's newest version): read on each use, never kept."""
        return self.directory.current

    @property
    def shards(self) -> list[int]:
        """The shards this instance serves now: those whose pool is open."""
        return self.pools.shards

    def wanted_shards(self) -> list[int]:
        """The shards this instance should serve: CHECKOUT_SERVED_SHARDS, or every registered one."""
        registered = self.directory.shards
        if self.config.served_shards:
            return sorted(s for s in self.config.served_shards if s in registered)
        return sorted(registered)

    def dsn_of(self, shard: int) -> str:
        return self.directory.shards[shard].dsn

    # -- routing -----------------------------------------------------------------------------
    def shard_of(self, any_id: uuid.UUID) -> int:
        return self.shard_map.shard_for_slot(ids.slot_of(any_id))

    def pool_for(self, any_id: uuid.UUID) -> asyncpg.Pool:
        """The pool of the shard an id lives on; a shard served elsewhere is UNAVAILABLE here
        (the gateway's routing table is out of date), never a silent wrong answer."""
        shard = self._served(self.shard_of(any_id))
        consistency.touch(shard)
        return self.pools[shard]

    def _served(self, shard: int) -> int:
        if shard not in self.pools:  # on every request: no sorted list of the shards
            raise Unavailable(f"shard {shard} is not served by this {self.spec.name} instance")
        return shard

    def shard_pool(self, shard: int) -> asyncpg.Pool:
        """The pool of a shard named by number (operator views): unknown is a bad argument,
        known but served elsewhere is UNAVAILABLE, like an id routed here by mistake."""
        self._known(shard)
        consistency.touch(self._served(shard))
        return self.pools[shard]

    def _known(self, shard: int) -> int:
        if shard not in self.directory.shards:
            known = ", ".join(str(s) for s in sorted(self.directory.shards))
            raise InvalidArgument.field("shard", f"must be a registered shard ({known})")
        return shard

    async def read(self, role: Role, any_id: uuid.UUID, query: Callable[[Connection], Awaitable[T]]) -> T:
        """A read of the shard an id lives on, by a replica fit for `role` or by the primary
        (libs/common/replicas.py); the query gets a connection and must only read."""
        return await self.replicas.read(role, self._served(self.shard_of(any_id)), query)

    async def read_shard(self, role: Role, shard: int, query: Callable[[Connection], Awaitable[T]]) -> T:
        """A read of a shard named by number (operator views), as `shard_pool` checks it."""
        return await self.replicas.read(role, self._served(self._known(shard)), query)

    async def invalidate(self, any_id: uuid.UUID, *keys: str, hot: bool = True) -> None:
        """Drops cache entries after a write to the id's shard. With replicas, each key is also
        fenced at the primary's position: a replica read from before the write cannot put an
        older copy back (libs/common/cache.py)."""
        await self.cache.invalidate(*keys, fence=await self.fence_position(any_id), hot=hot)

    async def fence_position(self, any_id: uuid.UUID) -> int | None:
        """The id's shard primary's WAL position after a write, when the shard has replicas
        whose reads could be older (None: no replicas, or the position is unknown)."""
        shard = self.shard_of(any_id)
        if not self.replicas.configured or not self.config.replicas_of(shard):
            return None
        try:
            return await self.replicas.primary_position(shard)
        except (asyncpg.PostgresError, OSError) as error:
            log.warning("shard %d: no WAL position for the cache fence: %s", shard, error)
            return None

    # -- lifecycle ---------------------------------------------------------------------------
    async def migrate(self) -> None:
        """Reads the shard registry, then migrates and opens every shard this instance serves."""
        await self.directory.open()
        shards = self.wanted_shards()
        await migrate(self.config, self.spec.name, self.spec.service_dir, shards, dsn_of=self.dsn_of)
        await self.pools.open(shards)
        await self.ensure_partitions()

    async def ensure_partitions(self, shards: Sequence[int] | None = None) -> None:
        for shard, pool in self.pools.items():
            if shards is not None and shard not in shards:
                continue
            async with pool.acquire() as conn:
                for table in (EVENTS_TABLE, *self.spec.partitioned):
                    await ensure_partitions(conn, table, ahead=self.config.partitions_ahead_months)

    async def prune_command_log(self) -> int:
        """Forgets idempotency keys older than CHECKOUT_IDEMPOTENCY_KEY_HOURS: a retry after that
        is a new request (as with Stripe's 24 hours), and the table stops growing forever."""
        pruned = 0
        for _, pool in self.pools.items():
            status = await pool.execute(
                "DELETE FROM command_log WHERE created_at < NOW() - make_interval(hours => $1)",
                self.config.idempotency_key_hours,
            )
            pruned += int(status.rsplit(" ", 1)[-1])
        if pruned:
            log.info(
                "forgot %d idempotency key(s) older than %d h", pruned, self.config.idempotency_key_hours
            )
        return pruned

    async def archive_partitions(self, today: dt.date | None = None) -> list[str]:
        """Moves partitions older than CHECKOUT_ARCHIVE_AFTER_MONTHS to the archive schema (and
        drops archived ones past CHECKOUT_ARCHIVE_DROP_AFTER_MONTHS, only when that is set)."""
        moved: list[str] = []
        if not self.config.archive_after_months:
            return moved
        for _, pool in self.pools.items():
            for table in self.spec.archived:
                moved += await archive_partitions(
                    pool,
                    self.spec.name,
                    table,
                    after_months=self.config.archive_after_months,
                    drop_after_months=self.config.archive_drop_after_months,
                    today=today,
                )
        return moved

    async def _partition_upkeep(self) -> None:
        while True:
            try:
                await self.prune_command_log()
            except (asyncpg.PostgresError, OSError) as error:
                log.warning("idempotency key pruning failed, will retry: %s", error)
            try:
                await self.archive_partitions()
            except (asyncpg.PostgresError, OSError) as error:
                log.warning("archiving partitions failed, will retry: %s", error)
            await asyncio.sleep(6 * 3600)
            try:
                await self.ensure_partitions()
            except (asyncpg.PostgresError, OSError) as error:
                log.warning("partition upkeep failed, will retry: %s", error)

    def _spawn(self, factory: LoopFactory, name: str) -> None:
        """Runs a loop supervised: restarted from `factory` whenever it fails."""
        self.supervisor.spawn(name, factory)

    async def start(self) -> None:
        await self.migrate()
        if self.spec.replica_reads:
            await self.replicas.open(self.shards)
        if self.replicas.configured:
            await self.replicas.probe()  # routes from the first request on, not after a probe period
            self._spawn(self.replicas.run, "replica-probe")
        self.nc = await nats.connect(
            self.config.nats_url, name=f"checkout-{self.spec.name}", max_reconnect_attempts=-1
        )
        self.js = self.nc.jetstream()
        await ensure_stream(self.js, self.config.stream_name, self.config.subject_prefix)
        built = self.build()
        for shard in self.shards:
            self._start_shard(shard)
        self._spawn(self._partition_upkeep, "partition-upkeep")
        self._spawn(self.pools.recycle, "pool-recycler")
        self._spawn(self.monitor.run, "monitor")
        for loop in built.background:
            self._spawn(loop.factory, loop.name)
        self.directory.subscribe(self._directory_changed)
        self._spawn(self.directory.run, "shard-directory")
        self._spawn(self._join_shards, "shard-joiner")
        self.server = GrpcServer(
            self.config.grpc_address(self.spec.name),
            [],
            probes=[self._db_probe, self._nats_probe, self.supervisor.probe],
            trailers=self._trailers,
            shard_map=self.directory,
        )
        self.server.service_names = [
            *register_ops(self.server.server, self),
            *built.register(self.server.server),
        ]
        await self.server.start(self.config.health_interval_seconds)

    def _start_shard(self, shard: int) -> None:
        """The loops of one served shard: its relay, a consumer per projection, the service's own."""
        assert self.js is not None
        pool = self.pools[shard]
        relay = Relay(
            pool,
            self.js,
            schema=self.spec.name,
            shard=shard,
            notify_channel=self.notify_channel,
            subject_prefix=self.config.subject_prefix,
            poll_seconds=self.config.relay_poll_seconds,
        )
        self.relays[shard] = relay
        self._spawn(relay.run, f"relay-s{shard}")
        slots = self.shard_map.slots_of(shard)
        built = self.built
        for projection in built.projections:
            consumer = ProjectionConsumer(
                pool,
                self.js,
                projection,
                service=self.spec.name,
                shard=shard,
                stream=self.config.stream_name,
                subject_prefix=self.config.subject_prefix,
                after_commit=built.after_commit,
                max_attempts=self.config.consumer_max_attempts,
                retry_seconds=self.config.consumer_retry_seconds,
                ack_wait_seconds=self.config.consumer_ack_wait_seconds,
                # A shard that owns no slots yet parks under the event's own slot.
                dead_letter_slot=slots[0].start if slots else None,
            )
            self.consumers.append(consumer)
            self._spawn(consumer.run, consumer.durable)
        for loop in built.shard_loops(shard):
            self._spawn(loop.factory, loop.name)

    async def _directory_changed(self, _: ShardMap) -> None:
        self._registry_changed.set()

    async def _join_shards(self) -> None:
        """Until cancelled: serves each shard registered after start (migrations, pool,
        partitions, loops). Run supervised: a new shard that cannot be reached is tried again,
        and past the grace the service says NOT_SERVING rather than serve part of the platform."""
        while True:
            for shard in self.wanted_shards():
                if shard not in self.shards:
                    await self.join_shard(shard)
            await self._registry_changed.wait()
            self._registry_changed.clear()

    async def join_shard(self, shard: int) -> None:
        dsn = self.dsn_of(shard)
        applied = await upgrade_shard(dsn, self.spec.name, self.spec.service_dir)
        await self.pools.open([shard])
        try:
            await self.ensure_partitions([shard])
        except BaseException:
            await self.pools.discard(shard)  # not served until all of it is ready; tried again
            raise
        self._start_shard(shard)
        log.info(
            "%s serving shard %d (%s) from now on; migrations applied: %s",
            self.spec.name,
            shard,
            redact_dsn(dsn),
            ", ".join(applied) or "none",
        )

    async def _db_probe(self) -> bool:
        """Every served shard's primary answers."""

        async def one(pool: asyncpg.Pool) -> bool:
            return bool(await pool.fetchval("SELECT 1") == 1)

        try:
            async with asyncio.timeout(2):
                answers = await asyncio.gather(*(one(pool) for _, pool in self.pools.items()))
        except (asyncpg.PostgresError, OSError, TimeoutError, asyncpg.InterfaceError):
            return False
        return all(answers)

    async def _trailers(self, ledger: consistency.Ledger) -> list[tuple[str, str]]:
        """A write's consistency token (each shard primary's position after the commit), and the
        position a read's data is at least as new as (the gateway's cache keeps it)."""
        pairs: list[tuple[str, str]] = []
        if ledger.wrote and ledger.touched:
            try:
                positions = {s: await self.replicas.primary_position(s) for s in sorted(ledger.touched)}
            except (asyncpg.PostgresError, OSError) as error:
                # The write is committed: answering without a token only loses read-your-writes.
                log.warning("no consistency token for a committed write: %s", error)
            else:
                pairs.append((consistency.METADATA_KEY, consistency.Token(positions).encode()))
        if ledger.read_positions:
            token = consistency.Token(ledger.read_positions)
            pairs.append((consistency.READ_POSITION_KEY, token.encode()))
        if ledger.staleness:
            pairs.append((consistency.READ_STALENESS_KEY, f"{ledger.staleness:.6f}"))
        return pairs

    async def _nats_probe(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    async def stop(self) -> None:
        if self.server:
            await self.server.stop()
        await self.supervisor.stop()
        await self._close_built()  # what the loops used is released only once they are gone
        self.monitor.close()
        if self.nc and not self.nc.is_closed:
            with contextlib.suppress(Exception):
                await self.nc.drain()
        await self.cache.close()
        await self.replicas.close()
        await self.pools.close()
        await self.directory.close()
