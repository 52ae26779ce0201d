"""Migrations apply once per shard and schema, concurrently safe; partitions are made ahead."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import asyncpg

from libs.common.config import Config
from libs.common.db import migrate_shard, migrations_for
from libs.common.partitions import PartitionedTable, ensure_partitions


async def test_migrating_twice_and_concurrently_applies_each_migration_once(
    config: Config, repo_root: Path
) -> None:
    migrations = migrations_for(repo_root / "services" / "invoice")
    first, second = await asyncio.gather(
        migrate_shard(config.shard_dsn(1), "migtest", migrations),
        migrate_shard(config.shard_dsn(1), "migtest", migrations),
    )
    assert sorted(first + second) == sorted(m.version for m in migrations)
    assert await migrate_shard(config.shard_dsn(1), "migtest", migrations) == []


async def test_partition_upkeep_creates_months_and_quarters_ahead_once(config: Config) -> None:
    await migrate_shard(config.shard_dsn(0), "parttest", migrations_for(Path("/nonexistent")))
    conn = await asyncpg.connect(config.shard_dsn(0), server_settings={"search_path": "parttest"})
    try:
        await conn.execute(
            "CREATE TABLE metrics (day DATE NOT NULL, n INT, PRIMARY KEY (day)) PARTITION BY RANGE (day)"
        )
        today = dt.date(2026, 12, 15)
        months = await ensure_partitions(
            conn, PartitionedTable("events", "month"), ahead=3, behind=1, today=today
        )
        quarters = await ensure_partitions(
            conn, PartitionedTable("metrics", "quarter"), ahead=2, behind=0, today=today
        )
        assert months == [
            "events_2026_11",
            "events_2026_12",
            "events_2027_01",
            "events_2027_02",
            "events_2027_03",
        ]
        assert quarters == ["metrics_2026_q4", "metrics_2027_q1", "metrics_2027_q2"]
        assert (
            await ensure_partitions(conn, PartitionedTable("events", "month"), ahead=3, behind=1, today=today)
            == []
        )
        await conn.execute("INSERT INTO metrics VALUES ('2027-05-31', 1)")  # lands in q2
    finally:
        await conn.close()
