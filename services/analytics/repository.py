"""SQL for the analytics service's read models."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import asyncpg

from libs.common.db import Connection
from libs.common.partitions import PartitionedTable, partition_name

DAILY_METRICS = PartitionedTable("daily_metrics", "quarter")
METRIC_COLUMNS = "metric_date, invoices_created, invoices_paid, amount_created, amount_paid, conversion_rate"


def _quarter(day: dt.date) -> tuple[dt.date, dt.date]:
    start = dt.date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    end = dt.date(start.year + 1, 1, 1) if start.month == 10 else dt.date(start.year, start.month + 3, 1)
    return start, end


async def ensure_partition(conn: Connection, day: dt.date) -> None:
    """The runtime keeps partitions from a quarter back to a few ahead; an event dated outside
    them (a late or replayed one) gets its quarter here rather than failing forever."""
    start, end = _quarter(day)
    name = partition_name(DAILY_METRICS.table, start, DAILY_METRICS.period)
    if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
        return
    try:
        async with conn.transaction():  # a savepoint: losing the race aborts only this statement
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {DAILY_METRICS.table} "
                f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
            )
    except (asyncpg.DuplicateTableError, asyncpg.UniqueViolationError):
        pass  # another consumer or the upkeep task created it first


async def count_created(conn: Connection, merchant_id: uuid.UUID, day: dt.date, amount: Decimal) -> None:
    await conn.execute(
        """INSERT INTO daily_metrics (merchant_id, metric_date, invoices_created, amount_created)
           VALUES ($1, $2, 1, $3)
           ON CONFLICT (merchant_id, metric_date) DO UPDATE SET
               invoices_created = daily_metrics.invoices_created + 1,
               amount_created = daily_metrics.amount_created + EXCLUDED.amount_created,
               conversion_rate = round(
                   100 * daily_metrics.invoices_paid::numeric / (daily_metrics.invoices_created + 1), 2)""",
        merchant_id,
        day,
        amount,
    )


async def add_merchant(conn: Connection, merchant_id: uuid.UUID, created_at: dt.datetime) -> None:
    await conn.execute(
        "INSERT INTO merchant_directory (merchant_id, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        merchant_id,
        created_at,
    )


async def daily_metrics(
    pool: asyncpg.Pool, merchant_id: uuid.UUID, start: dt.date, end: dt.date
) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            f"""SELECT {METRIC_COLUMNS} FROM daily_metrics
                WHERE merchant_id = $1 AND metric_date BETWEEN $2 AND $3
                ORDER BY metric_date""",
            merchant_id,
            start,
            end,
        )
    )


async def shard_counts(pool: asyncpg.Pool) -> tuple[int, int]:
    """(merchants, invoices created) on one shard."""
    row = await pool.fetchrow(
        """SELECT (SELECT count(*) FROM merchant_directory) AS merchants,
                  (SELECT COALESCE(sum(invoices_created), 0) FROM daily_metrics) AS invoices"""
    )
    assert row is not None
    return int(row["merchants"]), int(row["invoices"])
