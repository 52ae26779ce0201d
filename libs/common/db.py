"""Per-shard asyncpg pools and per-service-schema migrations applied to every shard.

Each service owns one schema (its name) in every shard database; its connections set
`search_path` to it, so SQL names tables plainly.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias
from urllib.parse import urlsplit

import asyncpg

from libs.common.config import Config, with_database

log = logging.getLogger("checkout.db")

COMMON_MIGRATIONS = Path(__file__).parent / "migrations"

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # What SQL helpers take: a plain connection or one borrowed from a pool.
    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
else:
    Connection = asyncpg.Connection


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


def migrations_for(service_dir: Path) -> list[Migration]:
    """Common event-store migrations first (`0xxx`), then the service's own (`1xxx`...)."""
    files = sorted(COMMON_MIGRATIONS.glob("*.sql")) + sorted((service_dir / "migrations").glob("*.sql"))
    found = [Migration(p.stem, p) for p in files]
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration versions in {service_dir}")
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
    """Applies what is missing, each migration in its own transaction; idempotent and safe when
    several services or replicas start at once (an advisory lock serialises them per schema)."""
    await ensure_database(dsn)
    conn = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        lock = int.from_bytes(hashlib.sha256(f"migrate:{schema}".encode()).digest()[:8], signed=True)
        await conn.execute("SELECT pg_advisory_lock($1)", lock)
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
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)",
                        migration.version,
                        migration.checksum,
                    )
                applied.append(migration.version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", lock)
    finally:
        await conn.close()
    return applied


async def migrate(
    config: Config, schema: str, service_dir: Path, shards: Iterable[int] | None = None
) -> None:
    migrations = migrations_for(service_dir)
    targets = list(config.shards if shards is None else shards)
    results = await asyncio.gather(*(migrate_shard(config.shard_dsn(s), schema, migrations) for s in targets))
    for shard, applied in zip(targets, results, strict=True):
        if applied:
            log.info("migrated %s on shard %d: %s", schema, shard, ", ".join(applied))


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
    """One asyncpg pool per served shard, sized per the seed (25 open, 5 idle, lifetimes)."""

    def __init__(self, config: Config, schema: str) -> None:
        self._config = config
        self._schema = schema
        self._pools: dict[int, asyncpg.Pool] = {}

    async def open(self, shards: Iterable[int]) -> None:
        c = self._config
        for shard in shards:
            self._pools[shard] = await asyncpg.create_pool(
                c.shard_dsn(shard),
                min_size=min(c.pool_min_size, c.pool_max_size),
                max_size=c.pool_max_size,
                max_inactive_connection_lifetime=c.pool_max_idle_seconds,
                server_settings={
                    "search_path": f"{self._schema},public",
                    "application_name": f"checkout-{self._schema}",
                },
                init=init_connection,
            )

    async def recycle(self) -> None:
        """Runs until cancelled (the service runtime supervises it as the pool recycler).

        asyncpg has no max connection lifetime; expiring the pool on that period closes each
        connection at its next release, which bounds lifetime the same way."""
        while True:
            await asyncio.sleep(self._config.pool_max_lifetime_seconds)
            for pool in self._pools.values():
                await pool.expire_connections()

    def __getitem__(self, shard: int) -> asyncpg.Pool:
        try:
            return self._pools[shard]
        except KeyError:
            raise KeyError(f"shard {shard} is not served by this instance") from None

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
        await asyncio.gather(*(p.close() for p in self._pools.values()), return_exceptions=True)
        self._pools.clear()
