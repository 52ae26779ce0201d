"""Service schemas are upgraded by Alembic revisions after the SQL baseline: a database made by
the SQL runner alone (before Alembic) keeps its rows and gets only what it lacks, concurrent
starts migrate once, and an index built CONCURRENTLY survives a crash half-way."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy.exc
from alembic.script import ScriptDirectory

from libs.common import ids
from libs.common.config import Config
from libs.common.db import migrate_shard, migrations_for
from libs.common.schema import alembic_config, migrate, upgrade_shard
from tests.common.support import building, index_valid, poll

SERVICE_DIR = Path(__file__).resolve().parents[2] / "services"

ORDERS = '''"""Orders, with rows, to build an index on while it takes writes."""

import sqlalchemy as sa
from alembic import op

from libs.common.schema import require_sql_applied

revision = "0001_orders"
down_revision = None


def upgrade() -> None:
    require_sql_applied(["0001_event_store"])
    op.create_table(
        "orders",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("merchant", sa.Integer, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )
    op.execute("INSERT INTO orders SELECT g, g % 50, 'note ' || g FROM generate_series(1, 20000) g")
'''
ORDERS_INDEX = '''"""Orders by merchant, built while the table takes writes."""

import sqlalchemy as sa

from libs.common.schema import create_index_concurrently

revision = "0002_orders_index"
down_revision = "0001_orders"


def upgrade() -> None:
    create_index_concurrently("idx_orders_merchant", "orders", ["merchant", sa.text("id DESC")])
'''


async def revision_of(dsn: str, schema: str) -> str | None:
    conn = await asyncpg.connect(dsn)
    try:
        found: str | None = await conn.fetchval(f'SELECT version_num FROM "{schema}".alembic_version')
        return found
    finally:
        await conn.close()


def chain(service: Path) -> list[str]:
    """The service's Alembic revisions, the baseline first, as an upgrade applies them."""
    script = ScriptDirectory.from_config(alembic_config(service, ""))
    return [r.revision for r in reversed(list(script.walk_revisions()))]


async def test_a_fresh_shard_gets_the_sql_baseline_then_each_revision_once(config: Config) -> None:
    dsn, service = config.shard_dsn(1), SERVICE_DIR / "invoice"
    first, second = await asyncio.gather(
        upgrade_shard(dsn, "invoice_fresh", service), upgrade_shard(dsn, "invoice_fresh", service)
    )
    # One start migrated, the other waited for its lock and found nothing left to do.
    assert sorted(first + second) == sorted([m.version for m in migrations_for(service)] + chain(service))
    assert await upgrade_shard(dsn, "invoice_fresh", service) == []
    assert await revision_of(dsn, "invoice_fresh") == chain(service)[-1]


async def test_one_migrate_brings_every_shard_to_the_newest_revision(config: Config) -> None:
    # The shards at once, in one process (as `checkout-service <name> migrate` and a start do).
    await migrate(config, "customer", SERVICE_DIR / "customer")
    assert [await revision_of(config.shard_dsn(s), "customer") for s in config.shards] == [
        chain(SERVICE_DIR / "customer")[-1]
    ] * 2


async def test_a_database_made_by_todays_migrations_keeps_its_rows_and_gets_what_it_lacks(
    config: Config,
) -> None:
    dsn, schema, service = config.shard_dsn(0), "merchant_upgraded", SERVICE_DIR / "merchant"
    # Today's runner, stopped before the last three SQL migrations, with a merchant and its key.
    await migrate_shard(dsn, schema, [m for m in migrations_for(service) if m.version < "1003"])
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        merchant_id, now = uuid.uuid4(), dt.datetime.now(dt.UTC)
        await conn.execute(
            "INSERT INTO merchants (id, business_name, contact_email, created_at, updated_at) "
            "VALUES ($1, 'Old', 'old@shop.test', $2, $2)",
            merchant_id,
            now,
        )
        await conn.execute(
            "INSERT INTO api_keys (id, merchant_id, key_hash, key_type, permissions, name, prefix, created_at) "
            "VALUES ($1, $2, 'hash', 'secret', $3, 'writer', 'ck', $4)",
            uuid.uuid4(),
            merchant_id,
            ["invoices:write"],
            now,
        )

        applied = await upgrade_shard(dsn, schema, service)

        assert applied == ["1003_invoices_cancel", "1004_webhook_secrets", "1005_event_feed", *chain(service)]
        assert await conn.fetchval("SELECT business_name FROM merchants WHERE id = $1", merchant_id) == "Old"
        # The SQL migrations it lacked ran as they always did, data migrations included.
        assert await conn.fetchval("SELECT permissions FROM api_keys") == [
            "invoices:write",
            "invoices:cancel",
        ]
        assert await conn.fetchval("SELECT count(*) FROM event_feed") == 0
        # The first revision's data migration: the merchant's email claimed in its id's slot.
        claim = await conn.fetchrow(
            "SELECT merchant_id, slot FROM email_claims WHERE email = 'old@shop.test'"
        )
        assert claim is not None and claim["merchant_id"] == merchant_id
        assert claim["slot"] == ids.slot_of(merchant_id)
    finally:
        await conn.close()
    assert await revision_of(dsn, schema) == chain(service)[-1]
    assert await upgrade_shard(dsn, schema, service) == []


async def test_a_database_with_every_sql_migration_is_recorded_at_the_baseline_then_gets_the_revisions_after_it(
    config: Config,
) -> None:
    dsn, schema, service = config.shard_dsn(0), "analytics_upgraded", SERVICE_DIR / "analytics"
    await migrate_shard(dsn, schema, migrations_for(service))
    assert await upgrade_shard(dsn, schema, service) == chain(service)
    assert await revision_of(dsn, schema) == chain(service)[-1]


async def test_a_release_older_than_the_schema_leaves_it_as_the_newer_one_migrated_it(
    config: Config, tmp_path: Path
) -> None:
    dsn, schema = config.shard_dsn(0), "rolled_back"
    newer = service_with_revisions(
        tmp_path / "newer", **{"0001_orders": ORDERS, "0002_orders_index": ORDERS_INDEX}
    )
    older = service_with_revisions(tmp_path / "older", **{"0001_orders": ORDERS})
    assert (await upgrade_shard(dsn, schema, newer))[-2:] == ["0001_orders", "0002_orders_index"]
    # During a rolling deploy (or after a rollback) a replica of the older release starts.
    assert await upgrade_shard(dsn, schema, older) == []
    assert await revision_of(dsn, schema) == "0002_orders_index"


def service_with_revisions(tmp_path: Path, **revisions: str) -> Path:
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    for name, source in revisions.items():
        (versions / f"{name}.py").write_text(source)
    return tmp_path


async def open_snapshot(dsn: str) -> tuple[asyncpg.Connection, asyncpg.transaction.Transaction]:
    """A reader's open snapshot makes a concurrent build wait before it can finish, which holds
    it in the middle long enough to act while it runs."""
    reader = await asyncpg.connect(dsn)
    snapshot = reader.transaction(isolation="repeatable_read")
    await snapshot.start()
    await reader.fetchval("SELECT 1")
    return reader, snapshot


async def test_a_revision_builds_its_index_concurrently_while_writes_go_on(
    config: Config, tmp_path: Path
) -> None:
    dsn, schema = config.shard_dsn(0), "livealembic"
    service = service_with_revisions(tmp_path, **{"0001_orders": ORDERS})
    sql = [m.version for m in migrations_for(service)]
    assert await upgrade_shard(dsn, schema, service) == [*sql, "0001_orders"]
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    reader, snapshot = await open_snapshot(dsn)
    (tmp_path / "migrations" / "versions" / "0002_orders_index.py").write_text(ORDERS_INDEX)
    migration = asyncio.create_task(upgrade_shard(dsn, schema, service))
    try:
        await poll(lambda: building(conn), what="the concurrent index build to start")
        # A plain CREATE INDEX holds a SHARE lock that queues every write until it commits.
        await conn.execute("SET lock_timeout = '2s'")
        await conn.execute("INSERT INTO orders VALUES (20001, 7, 'written during the build')")
        assert not migration.done()
    finally:
        await snapshot.rollback()
        await reader.close()
    try:
        assert await migration == ["0002_orders_index"]
        assert await index_valid(conn, schema, "idx_orders_merchant") is True
        assert await conn.fetchval("SELECT count(*) FROM orders WHERE merchant = 7") == 401
    finally:
        await conn.close()


async def test_a_revision_whose_concurrent_build_a_crash_interrupted_runs_again(
    config: Config, tmp_path: Path
) -> None:
    dsn, schema = config.shard_dsn(0), "livealembic"
    service = service_with_revisions(tmp_path, **{"0001_orders": ORDERS, "0002_orders_index": ORDERS_INDEX})
    await migrate_shard(dsn, schema, migrations_for(service))  # the database, before the snapshot
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    reader, snapshot = await open_snapshot(dsn)
    migration = asyncio.create_task(upgrade_shard(dsn, schema, service))
    try:
        await poll(lambda: building(conn), what="the concurrent index build to start")
        # The migrating process dies half-way: its backend goes with it.
        await conn.execute(
            """SELECT pg_terminate_backend(pid) FROM pg_stat_activity
               WHERE query LIKE 'CREATE INDEX CONCURRENTLY%' AND pid <> pg_backend_pid()"""
        )
        with pytest.raises(sqlalchemy.exc.SQLAlchemyError):
            await migration
    finally:
        await snapshot.rollback()
        await reader.close()
    try:
        assert await index_valid(conn, schema, "idx_orders_merchant") is False  # left INVALID
        assert await revision_of(dsn, schema) == "0001_orders"  # what ran before the build was kept

        assert await upgrade_shard(dsn, schema, service) == ["0002_orders_index"]
        assert await index_valid(conn, schema, "idx_orders_merchant") is True
        assert (
            await conn.fetchval("SELECT count(*) FROM pg_indexes WHERE indexname = 'idx_orders_merchant'")
            == 1
        )
    finally:
        await conn.close()


@pytest.mark.parametrize("service", ["merchant", "invoice", "customer", "analytics"])
def test_the_sql_migrations_are_the_baseline_and_revisions_follow_it_in_one_line(service: str) -> None:
    script = ScriptDirectory.from_config(alembic_config(SERVICE_DIR / service, service))
    assert len(script.get_heads()) == 1, "two revisions follow one: rebase yours on the newest"
    baseline = script.get_revision("0001_baseline")
    assert baseline is not None and baseline.down_revision is None
    sql = [m.version for m in migrations_for(SERVICE_DIR / service)]
    assert sql == list(baseline.module.SQL_MIGRATIONS), (
        "the SQL migrations are frozen at the baseline: write a new one as an Alembic revision "
        "(README, Schema migrations)"
    )
