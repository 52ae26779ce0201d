"""The control store: the shard registry and the versioned shard map, durable and shared.

Every process routes by the same ShardMap (libs/common/shardmap.py). Until something moves
slots it is the even map of CHECKOUT_SHARD_COUNT, but once an operator adds a shard or a slot
move switches ranges, the map is a fact of the platform, not of any one process's environment:
it lives here, in the schema `control` of the control database (CHECKOUT_CONTROL_DSN, by
default shard 0's database), as immutable versions.

- `shards` holds the registry (id, DSN, plan tier); `shard_maps` every published version.
- Version 1 and the first shards are bootstrapped from the configuration on first start, so a
  deployment that never touches the admin API routes exactly as before.
- `publish_map` is a compare-and-set on the version: the next version exists once, and whoever
  published from an older view gets `MapConflict` and must look again.
- A NOTIFY on CHANNEL (sent on commit) tells every `ShardDirectory` to read again; a poll is
  the fallback for a notification missed while its connection was down.

Tables are named with their schema everywhere, so the functions work on any connection to the
control database, including one inside the caller's own transaction (the slot mover publishes
the switch in the transaction that records its phase).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from libs.common.config import Config
from libs.common.db import Connection, Migration, migrate_shard
from libs.common.placement import SHARED_TIER
from libs.common.shardmap import ShardMap, SlotRange

log = logging.getLogger("checkout.shardstore")

SCHEMA = "control"
CHANNEL = "checkout_shard_map"
REFRESH_SECONDS = 5.0
MIGRATIONS = Path(__file__).parent / "control_migrations"


@dataclass(frozen=True)
class ShardInfo:
    id: int
    dsn: str
    tier: str

    @property
    def public_dsn(self) -> str:
        """The DSN without its password: what an operator view or a log may show."""
        return redact_dsn(self.dsn)


class MapConflict(Exception):
    """Another map was published since the version the caller started from."""

    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(f"shard map version {actual} was published after {expected}; read it and retry")
        self.expected = expected
        self.actual = actual


class RegistryError(ValueError):
    """A map naming a shard that is not registered, or a shard registered twice."""


def redact_dsn(dsn: str) -> str:
    try:
        parts = urlsplit(dsn)
        parts.port  # noqa: B018 - parsed here, so a bad one is caught here
    except ValueError:
        return "(a DSN that does not parse)"
    if parts.password is None:
        return dsn
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{parts.username}:***@{host}" if parts.username else f":***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def control_migrations() -> list[Migration]:
    return [Migration(p.stem, p) for p in sorted(MIGRATIONS.glob("*.sql"))]


def bootstrap_shards(config: Config) -> dict[int, ShardInfo]:
    """The shards the configuration names, as the registry starts out: shared by every plan."""
    return {s: ShardInfo(s, config.shard_dsn(s), SHARED_TIER) for s in config.shards}


async def ensure_control(config: Config) -> None:
    """Creates the control schema (migrations, serialised like every service's) and, when no map
    exists yet, version 1 and the configured shards. Safe when every process starts at once."""
    dsn = config.control_database()
    await migrate_shard(dsn, SCHEMA, control_migrations())
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            for info in bootstrap_shards(config).values():
                await conn.execute(
                    "INSERT INTO control.shards (id, dsn, tier) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    info.id,
                    info.dsn,
                    info.tier,
                )
            await conn.execute(
                """INSERT INTO control.shard_maps (version, ranges, reason)
                   VALUES (1, $1::text::jsonb, 'bootstrapped from the configuration')
                   ON CONFLICT DO NOTHING""",
                _encode(config.shard_map()),
            )
    finally:
        await conn.close()


async def load(conn: Connection) -> tuple[ShardMap, dict[int, ShardInfo]]:
    """The newest map and the registry, read in one snapshot."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        row = await conn.fetchrow(
            "SELECT version, ranges::text AS ranges FROM control.shard_maps ORDER BY version DESC LIMIT 1"
        )
        shards = await conn.fetch("SELECT id, dsn, tier FROM control.shards ORDER BY id")
    if row is None:
        raise RegistryError("the control store holds no shard map (ensure_control was not run)")
    return _decode(row["version"], row["ranges"]), {
        r["id"]: ShardInfo(r["id"], r["dsn"], r["tier"]) for r in shards
    }


async def publish_map(conn: Connection, expected_version: int, new: ShardMap, reason: str) -> ShardMap:
    """Publishes `new`'s ranges as version `expected_version + 1` and returns that map (the
    version `new` carries is not used). Raises MapConflict when the newest version is not
    `expected_version`, RegistryError when a range names an unregistered shard. Inside the
    caller's transaction it commits (and notifies) with it."""
    async with conn.transaction():
        registered = {r["id"] for r in await conn.fetch("SELECT id FROM control.shards")}
        unknown = sorted({r.shard for r in new.ranges} - registered)
        if unknown:
            raise RegistryError(f"the map names unregistered shard(s) {unknown}")
        # Two publishers from one version both see it newest; the primary key on the next
        # version lets exactly one of them insert it.
        try:
            async with conn.transaction():  # a savepoint: the conflict must not end the caller's
                inserted = await conn.fetchval(
                    """INSERT INTO control.shard_maps (version, ranges, reason)
                       SELECT $1 + 1, $2::text::jsonb, $3
                       WHERE (SELECT max(version) FROM control.shard_maps) = $1
                       RETURNING version""",
                    expected_version,
                    _encode(new),
                    reason,
                )
        except asyncpg.UniqueViolationError:
            inserted = None
        if inserted is None:
            actual = await conn.fetchval("SELECT max(version) FROM control.shard_maps")
            raise MapConflict(expected_version, actual)
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, f"map {inserted}")
    log.info("published shard map version %d: %s", inserted, reason)
    return ShardMap(inserted, new.ranges)


async def register_shard(conn: Connection, dsn: str, tier: str) -> ShardInfo:
    """Adds a shard under the next free id; it owns no slots until a move gives it some."""
    async with conn.transaction():
        # Ids are handed out in order: one registration at a time.
        await conn.execute("LOCK TABLE control.shards IN SHARE ROW EXCLUSIVE MODE")
        same = await conn.fetchval("SELECT id FROM control.shards WHERE dsn = $1", dsn)
        if same is not None:
            raise RegistryError(f"that database is already shard {same}")
        shard = await conn.fetchval(
            "INSERT INTO control.shards (id, dsn, tier) "
            "SELECT COALESCE(max(id) + 1, 0), $1, $2 FROM control.shards RETURNING id",
            dsn,
            tier,
        )
        await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, f"shard {shard}")
    log.info("registered shard %d (%s, tier %s)", shard, redact_dsn(dsn), tier)
    return ShardInfo(shard, dsn, tier)


async def registered_shards(config: Config) -> dict[int, ShardInfo]:
    """The registry as it is now, for a one-off tool (a rebuild); the configuration's shards when
    no service has created the control store yet."""
    conn = await asyncpg.connect(config.control_database())
    try:
        return (await load(conn))[1]
    except asyncpg.UndefinedTableError:
        return bootstrap_shards(config)
    finally:
        await conn.close()


def _encode(shard_map: ShardMap) -> str:
    return json.dumps([[r.start, r.end, r.shard] for r in shard_map.ranges])


def _decode(version: int, ranges: str) -> ShardMap:
    return ShardMap(version, tuple(SlotRange(start, end, shard) for start, end, shard in json.loads(ranges)))


Subscriber = Callable[[ShardMap], Awaitable[None]]


class ShardDirectory:
    """One process's live view of the control store: `.current` (the map) and `.shards` (the
    registry), fresh within a notification's round trip, or `poll_seconds` at worst.

    Before `open()` (and while the control database cannot be read at start) it holds what the
    configuration says, which is also version 1: routing never waits for the control store.
    Subscribers are called, one after the other, after every change of either.
    """

    def __init__(self, config: Config, *, poll_seconds: float | None = None) -> None:
        self._config = config
        self._poll_seconds = poll_seconds or config.shard_map_poll_seconds
        self.current: ShardMap = config.shard_map()
        self.shards: dict[int, ShardInfo] = bootstrap_shards(config)
        self._subscribers: list[Subscriber] = []
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()

    def subscribe(self, callback: Subscriber) -> None:
        self._subscribers.append(callback)

    async def open(self) -> None:
        """Creates or bootstraps the control store and reads it."""
        await ensure_control(self._config)
        await self.refresh()

    async def refresh(self) -> bool:
        """Reads the store now (after a redirect names a newer version, or on a notification);
        whether anything changed. Subscribers have run when it returns."""
        async with self._lock:
            try:
                # Bounded: a hung control database must not hold up every caller behind the lock.
                async with asyncio.timeout(REFRESH_SECONDS):
                    shard_map, shards = await load(await self._connection())
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, TimeoutError):
                await self._drop_connection()
                raise
            if shard_map.version < self.current.version:
                return False  # a view is never rolled back (versions only grow)
            changed = shard_map.version != self.current.version or shards != self.shards
            self.current, self.shards = shard_map, shards
            if changed:
                for callback in self._subscribers:
                    try:
                        await callback(shard_map)
                    except Exception:
                        log.exception("a shard map subscriber failed on version %d", shard_map.version)
            return changed

    async def run(self) -> None:
        """Until cancelled: reads again on each notification, and every poll period regardless.
        A control database that is down leaves the last view in force and is tried again."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_seconds)
            self._wake.clear()
            try:
                await self.refresh()
            except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError, TimeoutError) as error:
                log.warning("shard map not refreshed (control database): %r", error)

    async def close(self) -> None:
        async with self._lock:
            await self._drop_connection()

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            conn = await asyncpg.connect(
                self._config.control_database(),
                server_settings={"application_name": "checkout-shard-directory"},
            )
            await conn.add_listener(CHANNEL, self._notified)
            self._conn = conn
            # A notification sent while no connection listened is read now, by this refresh.
        return self._conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)

    def _notified(self, *_: object) -> None:
        self._wake.set()
