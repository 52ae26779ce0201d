"""Registering a shard: the operator's POST /v1/admin/shards, done so that a shard is in the
registry only once it is ready to serve.

The database is checked by connecting, every service's migrations are applied to it, and only
then is it registered in the control store. A missing database is created only on a server that
already holds shards (`make up`'s, or a cluster's): a DSN is the operator's input, and one that
names some other server must name a database someone made there for this (a mistyped DSN, or
a generated one in the contract fuzz test, must not create databases on whatever answers). The services hear of it by the registry's notification and start serving it
(libs/common/service.py); a registration that fails leaves the registry as it was, and a
migrated database that was never registered is harmless to register again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg

from libs.common.config import SERVICES, Config
from libs.common.db import ensure_database, migrate_shard, migrations_for
from libs.common.shardstore import RegistryError, ShardInfo, ensure_control, redact_dsn, register_shard
from services.gateway.errors import ApiError

log = logging.getLogger("checkout.gateway")

SERVICES_DIR = Path(__file__).resolve().parent.parent
CONNECT_SECONDS = 5.0
# Every service's schema, migrated one after the other: a fresh database takes a few seconds.
MIGRATE_SECONDS = 120.0


def server_of(dsn: str) -> tuple[str, int, tuple[str, ...], tuple[str, ...]]:
    """Where a DSN connects (host, port, and libpq's host/port query parameters)."""
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    return (
        parts.hostname or "",
        parts.port or 5432,
        tuple(query.get("host", ())),
        tuple(query.get("port", ())),
    )


async def add_shard(config: Config, shards: Mapping[int, ShardInfo], dsn: str, tier: str) -> ShardInfo:
    try:
        server = server_of(dsn)
    except ValueError as error:
        raise ApiError.invalid("dsn", f"is not a PostgreSQL DSN: {error}") from None
    try:
        async with asyncio.timeout(CONNECT_SECONDS):
            if server in {server_of(info.dsn) for info in shards.values()}:
                await ensure_database(dsn)
            conn = await asyncpg.connect(dsn)
            await conn.close()
    except asyncpg.InvalidCatalogNameError:
        raise ApiError.invalid(
            "dsn",
            f"cannot connect to {redact_dsn(dsn)}: its database does not exist (it is created only on "
            "a server that holds shards already; create it first)",
        ) from None
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as error:
        raise ApiError.invalid("dsn", f"cannot connect to {redact_dsn(dsn)}: {error}") from None
    try:
        await ensure_control(config)
        async with asyncio.timeout(MIGRATE_SECONDS):
            for service in SERVICES:
                applied = await migrate_shard(dsn, service, migrations_for(SERVICES_DIR / service))
                log.info("new shard %s: %s migrations applied: %d", redact_dsn(dsn), service, len(applied))
        control = await asyncpg.connect(config.control_database())
        try:
            return await register_shard(control, dsn, tier)
        finally:
            await control.close()
    except RegistryError as error:
        raise ApiError("already_exists", str(error)) from None
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        raise ApiError("unavailable", f"the shard was not registered: {error}") from None
