"""Per-shard asyncpg pools and per-service-schema migrations applied to every shard.

Each service owns one schema (its name) in every shard database; its connections set
`search_path` to it, so SQL names tables plainly.

Pool connections keep no session state: code that LISTENs, takes a session advisory lock or SETs
a session variable on one says so with `PooledConnection.changed_session()`, and only then does
the release pay asyncpg's reset round trip (UNLISTEN, unlock, RESET ALL). Everything else is
released as it is, prepared statements included.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import urlsplit

import asyncpg

from libs.common import metrics
from libs.common.config import Config, with_database

log = logging.getLogger("checkout.db")

COMMON_MIGRATIONS = Path(__file__).parent / "migrations"

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # What SQL helpers take: a plain connection or one borrowed from a pool.
    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
else:
    Connection = asyncpg.Connection


# The first line of a migration that must run outside a transaction: `CREATE INDEX CONCURRENTLY`
# on a large live table builds without blocking writes, and PostgreSQL refuses it in one.
NO_TRANSACTION = "-- migration: no transaction"

# What such a migration may hold: statements that are harmless to run again, since a crash can
# stop it half-way (there is no transaction to roll back) and the next start runs it again.
_RERUNNABLE = re.compile(
    r"""^(CREATE\s+(UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+IF\s+NOT\s+EXISTS\s+(?P<index>\w+)\s
        |DROP\s+INDEX\s+CONCURRENTLY\s+IF\s+EXISTS\s
        |ANALYZE\b|VACUUM\b)""",
    re.IGNORECASE | re.VERBOSE,
)


_LOCK_POLL_SECONDS = 0.1


class MigrationError(ValueError):
    pass


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text()

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    @property
    def transactional(self) -> bool:
        return self.sql.split("\n", 1)[0].strip().lower() != NO_TRANSACTION

    def statements(self) -> list[str]:
        """A no-transaction migration's statements, each checked to be safe to run again."""
        found = split_statements(self.sql)
        for statement in found:
            if not _RERUNNABLE.match(statement):
                raise MigrationError(
                    f"{self.path.name}: a no-transaction migration may only hold CREATE [UNIQUE] INDEX "
                    f"CONCURRENTLY IF NOT EXISTS, DROP INDEX CONCURRENTLY IF EXISTS, ANALYZE or VACUUM "
                    f"(each safe to run again after a crash); found: {statement[:80]}"
                )
        return found


def split_statements(sql: str) -> list[str]:
    """Statements separated by `;`, with comments dropped; quotes are respected. Dollar quoting
    (function bodies) is refused: it belongs in an ordinary, transactional migration."""
    statements, current, i = [], [], 0
    while i < len(sql):
        char = sql[i]
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            i = len(sql) if end < 0 else end
            continue
        if sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = len(sql) if end < 0 else end + 2
            continue
        if char == "$":
            raise MigrationError("dollar-quoted text has no place in a no-transaction migration")
        if char in "'\"":
            end = i + 1
            while end < len(sql) and not (sql[end] == char and not sql.startswith(char * 2, end)):
                end += 2 if sql.startswith(char * 2, end) else 1
            current.append(sql[i : end + 1])
            i = end + 1
            continue
        if char == ";":
            statements.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    statements.append("".join(current))
    return [s.strip() for s in statements if s.strip()]


def migrations_for(service_dir: Path) -> list[Migration]:
    """Common event-store migrations first (`0xxx`), then the service's own (`1xxx`...)."""
    files = sorted(COMMON_MIGRATIONS.glob("*.sql")) + sorted((service_dir / "migrations").glob("*.sql"))
    found = [Migration(p.stem, p) for p in files]
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration versions in {service_dir}")
    for migration in found:
        if not migration.transactional:
            migration.statements()  # a bad one fails at start-up, before anything runs
    return found


async def ensure_database(dsn: str) -> None:
    """Creates the shard database when missing (a fresh `make up` or test server)."""
    database = urlsplit(dsn).path.lstrip("/")
    try:
        conn = await asyncpg.connect(dsn)
    except asyncpg.InvalidCatalogNameError:
        admin = await asyncpg.connect(with_database(dsn, "postgres"))
        try:
            await admin.execute(f'CREATE DATABASE "{database}"')
        except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
            pass  # another service created it first (the catalog's unique index may say so instead)
        finally:
            await admin.close()
    else:
        await conn.close()


async def migrate_shard(dsn: str, schema: str, migrations: Iterable[Migration]) -> list[str]:
    """Applies what is missing, in order; idempotent and safe when several services or replicas
    start at once (an advisory lock serialises them per schema). Each migration runs in its own
    transaction, except one marked `-- migration: no transaction` (see `_apply_outside`)."""
    await ensure_database(dsn)
    conn = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        lock = int.from_bytes(hashlib.sha256(f"migrate:{schema}".encode()).digest()[:8], signed=True)
        # Polled rather than waited for in pg_advisory_lock: a statement blocked there holds a
        # snapshot, and the CREATE INDEX CONCURRENTLY of another replica's no-transaction
        # migration waits for every older snapshot to end. Each would wait for the other.
        while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock):
            await asyncio.sleep(_LOCK_POLL_SECONDS)
        try:
            await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(f'SET search_path TO "{schema}", public')
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version TEXT PRIMARY KEY, checksum TEXT NOT NULL,
                       applied_at TIMESTAMPTZ NOT NULL DEFAULT NOW())"""
            )
            done = {r["version"]: r["checksum"] for r in await conn.fetch("SELECT * FROM schema_migrations")}
            for migration in migrations:
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        log.warning("migration %s/%s changed after it was applied", schema, migration.version)
                    continue
                if migration.transactional:
                    async with conn.transaction():
                        await conn.execute(migration.sql)
                        await _record(conn, migration)
                else:
                    await _apply_outside(conn, schema, migration)
                    await _record(conn, migration)
                applied.append(migration.version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", lock)
    finally:
        await conn.close()
    return applied


async def _record(conn: asyncpg.Connection, migration: Migration) -> None:
    await conn.execute(
        "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
        migration.version,
        migration.checksum,
    )


async def _apply_outside(conn: asyncpg.Connection, schema: str, migration: Migration) -> None:
    """Runs each statement on its own, outside any transaction, while the table takes writes.

    Nothing rolls back a crash here: the migration stays unrecorded and runs again from its
    first statement at the next start, and each statement is one that can (`IF NOT EXISTS`).
    A `CREATE INDEX CONCURRENTLY` that was interrupted leaves an INVALID index behind, which
    `IF NOT EXISTS` would then take for done: such an index is dropped and built again.
    """
    for statement in migration.statements():
        match = _RERUNNABLE.match(statement)
        index = match.group("index") if match else None
        if index and await conn.fetchval(
            """SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2""",
            schema,
            index,
        ):
            log.warning("dropping the invalid index %s.%s left by an interrupted build", schema, index)
            await conn.execute(f'DROP INDEX CONCURRENTLY IF EXISTS "{schema}"."{index}"')
        log.info("migration %s/%s: %s", schema, migration.version, statement[:120])
        await conn.execute(statement)


async def migrate(
    config: Config,
    schema: str,
    service_dir: Path,
    shards: Iterable[int] | None = None,
    dsn_of: Callable[[int], str] | None = None,
) -> None:
    """Migrates the shards (default: the configured ones), each at `dsn_of(shard)` (default:
    the configuration's DSN; the service runtime passes the shard registry's)."""
    migrations = migrations_for(service_dir)
    targets = list(config.shards if shards is None else shards)
    dsn = dsn_of or config.shard_dsn
    results = await asyncio.gather(*(migrate_shard(dsn(s), schema, migrations) for s in targets))
    for shard, applied in zip(targets, results, strict=True):
        if applied:
            log.info("migrated %s on shard %d: %s", schema, shard, ", ".join(applied))


ReleaseHook = Callable[[asyncpg.Pool], None]
# A prepared statement lives as long as its connection (asyncpg drops them after 300 s by default,
# and every service statement would be planned again), and every statement a service issues fits.
STATEMENT_CACHE_SIZE = 512


class PooledConnection(asyncpg.Connection):
    """A pool connection that knows what it did: whether its session state changed (so the
    release must reset it) and what to run once it is back in the pool (its transaction over)."""

    __slots__ = ("_release_hooks", "_session_changed")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._release_hooks: list[ReleaseHook] = []
        self._session_changed = False

    def after_release(self, hook: ReleaseHook) -> None:
        """Runs `hook(pool)` when this connection is released (once, however often it is asked)."""
        if hook not in self._release_hooks:
            self._release_hooks.append(hook)

    def changed_session(self) -> None:
        """Marks session state (LISTEN, advisory lock, SET) that the release must reset."""
        self._session_changed = True


async def release_connection(conn: asyncpg.Connection, pool: asyncpg.Pool) -> None:
    """The pool's reset: asyncpg has already rolled back an open transaction and dropped the
    Python-side listeners; the server-side reset runs only when the session changed."""
    if isinstance(conn, PooledConnection):
        hooks, conn._release_hooks = conn._release_hooks, []
        for hook in hooks:
            try:
                hook(pool)
            except Exception:  # a wake-up is an optimisation; the release must go on
                log.exception("release hook %r failed", hook)
        if not conn._session_changed:
            return
        conn._session_changed = False
    query = conn.get_reset_query()
    if query:
        await conn.execute(query)


async def init_connection(conn: asyncpg.Connection) -> None:
    """JSON columns as Python values (money inside them is always a decimal string)."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name,
            encoder=lambda v: json.dumps(v, separators=(",", ":")),
            decoder=json.loads,
            schema="pg_catalog",
        )


class ShardPools:
    """One asyncpg pool per served shard, sized per the seed (25 open, 5 idle, lifetimes); each
    at `dsn_of(shard)` (default: the configuration's DSN; the service runtime's is the shard
    registry's, which also knows shards added while it runs)."""

    def __init__(self, config: Config, schema: str, dsn_of: Callable[[int], str] | None = None) -> None:
        self._config = config
        self._schema = schema
        self._dsn_of = dsn_of or config.shard_dsn
        self._pools: dict[int, asyncpg.Pool] = {}

    async def open(self, shards: Iterable[int]) -> None:
        for shard in shards:
            self._pools[shard] = await self._open(shard)

    async def _open(self, shard: int) -> asyncpg.Pool:
        c = self._config
        pool: asyncpg.Pool | None = None

        async def reset(conn: asyncpg.Connection) -> None:
            assert pool is not None  # no connection is released before the pool exists
            await release_connection(conn, pool)

        timing = metrics.query_logger(self._schema, shard)

        async def init(conn: asyncpg.Connection) -> None:
            await init_connection(conn)
            conn.add_query_logger(timing)  # checkout_db_query_duration_seconds, by statement kind

        pool = await asyncpg.create_pool(
            self._dsn_of(shard),
            min_size=min(c.pool_min_size, c.pool_max_size),
            max_size=c.pool_max_size,
            max_inactive_connection_lifetime=c.pool_max_idle_seconds,
            server_settings={
                "search_path": f"{self._schema},public",
                "application_name": f"checkout-{self._schema}",
            },
            init=init,
            reset=reset,
            connection_class=PooledConnection,
            statement_cache_size=STATEMENT_CACHE_SIZE,
            max_cached_statement_lifetime=0,
        )
        return pool

    async def recycle(self) -> None:
        """Runs until cancelled (the service runtime supervises it as the pool recycler).

        asyncpg has no max connection lifetime; expiring the pool on that period closes each
        connection at its next release, which bounds lifetime the same way."""
        while True:
            await asyncio.sleep(self._config.pool_max_lifetime_seconds)
            for pool in self._pools.values():
                await pool.expire_connections()

    async def discard(self, shard: int) -> None:
        pool = self._pools.pop(shard, None)
        if pool is not None:
            await close_pool(pool)

    def __getitem__(self, shard: int) -> asyncpg.Pool:
        try:
            return self._pools[shard]
        except KeyError:
            raise KeyError(f"shard {shard} is not served by this instance") from None

    def __contains__(self, shard: int) -> bool:
        return shard in self._pools

    def items(self) -> list[tuple[int, asyncpg.Pool]]:
        return sorted(self._pools.items())

    @property
    def shards(self) -> list[int]:
        return sorted(self._pools)

    def stats(self) -> dict[int, dict[str, int]]:
        return {
            shard: {"size": p.get_size(), "idle": p.get_idle_size(), "max": p.get_max_size()}
            for shard, p in self._pools.items()
        }

    async def close(self) -> None:
        await asyncio.gather(*(close_pool(p) for p in self._pools.values()), return_exceptions=True)
        self._pools.clear()


# How long a closing pool waits for its connections to come back before it cuts them.
POOL_CLOSE_SECONDS = 10.0


async def close_pool(pool: asyncpg.Pool, grace: float = POOL_CLOSE_SECONDS) -> None:
    """`Pool.close()` waits for every connection to be released, without limit: a connection
    left mid-operation by a database restart (asyncpg: "another operation is in progress") is
    never released, and the process would hang on shutdown. Wait a grace, then terminate."""
    try:
        await asyncio.wait_for(pool.close(), grace)
    except TimeoutError:
        log.warning("a pool still had connections in use after %.0fs; terminating them", grace)
        pool.terminate()
