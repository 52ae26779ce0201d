"""Each service's declared tables (services/*/tables.py) are the schema its migrations build:
Alembic's comparison finds nothing to change on a migrated shard (a revision that forgets its
table, or a table changed without a revision, fails here), and the metadata creates as DDL."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import MetaData, text
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.common.config import Config
from libs.common.db import ensure_database
from libs.common.partitions import ensure_partitions
from libs.common.schema import differences, engine_for, upgrade_shard
from libs.common.service import EVENTS_TABLE

SERVICES = ["merchant", "invoice", "customer", "analytics"]


def metadata_of(service: str) -> MetaData:
    metadata: MetaData = importlib.import_module(f"services.{service}.tables").metadata
    return metadata


@asynccontextmanager
async def in_schema(dsn: str, schema: str) -> AsyncIterator[AsyncConnection]:
    engine = engine_for(dsn, schema)
    try:
        async with engine.connect() as conn:
            yield conn
    finally:
        await engine.dispose()


async def schema_differences(dsn: str, schema: str, service: str) -> list[Any]:
    async with in_schema(dsn, schema) as conn:
        found: list[Any] = await conn.run_sync(differences, metadata_of(service))
        return found


async def make_partitions(dsn: str, schema: str, service: str) -> None:
    """The partitions a running service makes ahead (Runtime.ensure_partitions)."""
    spec = importlib.import_module(f"services.{service}.service").SPEC
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        for table in (EVENTS_TABLE, *spec.partitioned):
            assert await ensure_partitions(conn, table, ahead=2)
    finally:
        await conn.close()


@pytest.fixture
async def shard(config: Config) -> str:
    dsn = config.shard_dsn(0)
    await ensure_database(dsn)
    return dsn


@pytest.mark.parametrize("service", SERVICES)
async def test_the_declared_tables_are_the_schema_the_migrations_build(
    shard: str, service: str, repo_root: Path
) -> None:
    schema = f"migrated_{service}"
    assert await upgrade_shard(shard, schema, repo_root / "services" / service)
    await make_partitions(shard, schema, service)  # which the comparison must not take for tables
    assert await schema_differences(shard, schema, service) == []


@pytest.mark.parametrize("service", SERVICES)
async def test_the_declared_tables_create_a_working_schema_of_their_own(shard: str, service: str) -> None:
    schema = f"created_{service}"
    async with in_schema(shard, schema) as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await conn.run_sync(metadata_of(service).create_all)
        await conn.commit()
        tables = await conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = :schema"), {"schema": schema}
        )
        assert set(tables.scalars()) == set(metadata_of(service).tables)
    await make_partitions(shard, schema, service)
    async with in_schema(shard, schema) as conn:
        # An append names neither its sequence number nor its transaction: the defaults give them.
        appended = await conn.execute(
            text(
                "INSERT INTO events (id, aggregate_id, aggregate_type, event_type, event_version, event_data)"
                " VALUES (gen_random_uuid(), gen_random_uuid(), 'test', 'test.created', 1, '{}')"
                " RETURNING sequence_number, transaction_id::text::bigint > 0"
            )
        )
        assert appended.one() == (1, True)
    assert await schema_differences(shard, schema, service) == []
