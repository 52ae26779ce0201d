"""The slot-move catalog against the migrated schemas: every table of every service is either
moved with its slots or named as the shard's own, and the SQL slot function agrees with ids.py."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from libs.common import ids
from libs.common.config import SERVICES, Config
from libs.common.schema import upgrade_shard
from libs.common.slotmove_catalog import CATALOG, SHARD_LOCAL, describe

SERVICES_DIR = Path(__file__).resolve().parents[2] / "services"


async def test_every_table_is_moved_with_its_slots_or_is_the_shards_own(config: Config) -> None:
    dsn = config.shard_dsn(0)
    for service in SERVICES:
        await upgrade_shard(dsn, service, SERVICES_DIR / service)
    conn = await asyncpg.connect(dsn)
    partitioned: set[str] = set()
    try:
        for service in SERVICES:
            tables = await conn.fetch(
                """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition""",
                service,
            )
            moved = {name for name, _ in CATALOG[service]}
            unclassified = {r["relname"] for r in tables} - moved - SHARD_LOCAL
            assert unclassified == set(), f"{service}: add these to slotmove_catalog.CATALOG or SHARD_LOCAL"
            described = await describe(conn, service)  # every catalog table exists, with a key
            assert all(t.primary_key for t in described)
            partitioned.update(f"{t.schema}.{t.name}" for t in described if t.partitioned)
        # Their partitions are made on the target before a copy (a fresh shard has none).
        assert partitioned == {f"{s}.events" for s in SERVICES} | {
            "invoice.audit_entries",
            "analytics.daily_metrics",
        }
        for slot in (0, 1, 2047, 4095):
            for value in (ids.new_id(slot), ids.derived_id(slot, "merchant", "a@b.test")):
                assert await conn.fetchval("SELECT merchant.slot_of($1)", value) == ids.slot_of(value) == slot
    finally:
        await conn.close()
