"""Migrations marked `-- migration: no transaction` build indexes on a live table without
blocking its writes, and a build that a crash interrupted is finished by the next start."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from libs.common.config import Config
from libs.common.db import MigrationError, migrate_shard, migrations_for, split_statements
from tests.common.support import building, index_valid, poll

SCHEMA = "livetest"
TABLE = """CREATE TABLE orders (id BIGINT PRIMARY KEY, merchant INT NOT NULL, note TEXT NOT NULL);
INSERT INTO orders SELECT g, g % 50, 'note ' || g FROM generate_series(1, 20000) g;
"""
INDEX = """-- migration: no transaction
-- Orders by merchant, built while the table takes writes.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_orders_merchant ON orders (merchant, id DESC);
ANALYZE orders;
"""


def service_with(tmp_path: Path, **files: str) -> Path:
    (tmp_path / "migrations").mkdir()
    for name, sql in files.items():
        (tmp_path / "migrations" / f"{name}.sql").write_text(sql)
    return tmp_path


@pytest.fixture
async def conn(config: Config) -> AsyncIterator[asyncpg.Connection]:
    dsn = config.shard_dsn(0)
    await migrate_shard(dsn, SCHEMA, migrations_for(Path("/nonexistent")))  # creates the database
    connection = await asyncpg.connect(dsn, server_settings={"search_path": SCHEMA})
    yield connection
    await connection.close()


async def test_a_no_transaction_migration_builds_its_index_while_writes_go_on(
    config: Config, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    dsn = config.shard_dsn(0)
    await migrate_shard(dsn, SCHEMA, migrations_for(service_with(tmp_path, **{"1001_orders": TABLE})))
    # A reader's open snapshot makes the concurrent build wait before it can finish, which
    # holds it in the middle long enough to write to the table while it runs.
    reader = await asyncpg.connect(dsn)
    snapshot = reader.transaction(isolation="repeatable_read")
    await snapshot.start()
    await reader.fetchval("SELECT 1")
    (tmp_path / "migrations" / "1002_orders_index.sql").write_text(INDEX)
    migration = asyncio.create_task(migrate_shard(dsn, SCHEMA, migrations_for(tmp_path)))
    try:
        await poll(lambda: building(conn), what="the concurrent index build to start")
        # A plain CREATE INDEX holds a SHARE lock that queues every write until it commits.
        await conn.execute("SET lock_timeout = '2s'")
        await conn.execute("INSERT INTO orders VALUES (20001, 7, 'written during the build')")
        await conn.execute("UPDATE orders SET note = 'changed during the build' WHERE id = 1")
        assert not migration.done()
    finally:
        await snapshot.rollback()
        await reader.close()
    assert await migration == ["1002_orders_index"]
    assert await index_valid(conn, SCHEMA, "idx_orders_merchant") is True
    async with conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN SELECT id FROM orders WHERE merchant = 7"))
        found = [
            r["id"] for r in await conn.fetch("SELECT id FROM orders WHERE merchant = 7 ORDER BY id DESC")
        ]
    assert "idx_orders_merchant" in plan
    assert found[0] == 20001 and len(found) == 401  # the row written during the build is in it
    assert await migrate_shard(dsn, SCHEMA, migrations_for(tmp_path)) == []


async def test_an_index_build_a_crash_interrupted_is_dropped_and_built_again(
    config: Config, conn: asyncpg.Connection, tmp_path: Path
) -> None:
    dsn = config.shard_dsn(0)
    service = service_with(tmp_path, **{"1001_orders": TABLE, "1002_orders_index": INDEX})
    reader = await asyncpg.connect(dsn)
    snapshot = reader.transaction(isolation="repeatable_read")
    await snapshot.start()
    await reader.fetchval("SELECT 1")
    migration = asyncio.create_task(migrate_shard(dsn, SCHEMA, migrations_for(service)))
    try:
        await poll(lambda: building(conn), what="the concurrent index build to start")
        # The migrating process dies half-way: its backend goes with it.
        await conn.execute(
            """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
               WHERE query LIKE 'CREATE INDEX CONCURRENTLY%' AND pid <> pg_backend_pid()"""
        )
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)):
            await migration
    finally:
        await snapshot.rollback()
        await reader.close()
    assert await index_valid(conn, SCHEMA, "idx_orders_merchant") is False  # left INVALID by the crash
    assert (
        await conn.fetchval("SELECT count(*) FROM schema_migrations WHERE version = '1002_orders_index'") == 0
    )

    assert await migrate_shard(dsn, SCHEMA, migrations_for(service)) == ["1002_orders_index"]
    assert await index_valid(conn, SCHEMA, "idx_orders_merchant") is True
    assert await conn.fetchval("SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_orders_merchant'") == 1


def test_a_no_transaction_migration_that_could_not_run_twice_is_refused_before_anything_runs(
    tmp_path: Path,
) -> None:
    service = service_with(
        tmp_path,
        **{
            "1001_bad": "-- migration: no transaction\nCREATE INDEX CONCURRENTLY idx_x ON orders (merchant);\n"
        },
    )
    with pytest.raises(MigrationError, match=r"1001_bad\.sql.*IF NOT EXISTS"):
        migrations_for(service)


def test_statements_split_on_semicolons_outside_quotes_and_comments() -> None:
    sql = """-- migration: no transaction
    -- a comment; with a semicolon
    CREATE INDEX CONCURRENTLY IF NOT EXISTS a ON t (x) WHERE y = 'it''s;  fine';
    /* a block ; */ DROP INDEX CONCURRENTLY IF EXISTS "we;ird" ;
    ANALYZE t"""
    assert split_statements(sql) == [
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS a ON t (x) WHERE y = 'it''s;  fine'",
        'DROP INDEX CONCURRENTLY IF EXISTS "we;ird"',
        "ANALYZE t",
    ]
    with pytest.raises(MigrationError, match="dollar"):
        split_statements("CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql")
