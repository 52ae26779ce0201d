"""Platform metrics come from rollups a trigger keeps on daily_metrics (migration 1050); they must
say exactly what summing every merchant's rows says, through every kind of write."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from libs.common.config import Config
from libs.common.db import Connection, init_connection, migrate_shard, migrations_for
from libs.common.partitions import ensure_partitions
from services.analytics import repository
from services.analytics.projections import DailyMetricsProjection
from services.analytics.service import SPEC

SCHEMA = "analytics_rollup"
DAY = dt.date(2026, 3, 30)  # the last days of a quarter: ranges cross partitions


async def summed(conn: Connection, start: dt.date, end: dt.date) -> dict[str, Any]:
    """What platform metrics mean, straight from every merchant's rows."""
    active = "invoices_created > 0 OR invoices_paid > 0"
    days = await conn.fetch(
        f"""SELECT metric_date, currency, sum(invoices_created) AS created, sum(invoices_paid) AS paid,
                   sum(amount_created) AS amount_created, sum(amount_paid) AS amount_paid,
                   count(*) FILTER (WHERE {active}) AS merchants_active
            FROM daily_metrics WHERE metric_date BETWEEN $1 AND $2
            GROUP BY metric_date, currency ORDER BY metric_date, currency""",
        start,
        end,
    )
    overall = await conn.fetchval(
        f"SELECT count(DISTINCT merchant_id) FILTER (WHERE {active}) FROM daily_metrics "
        "WHERE metric_date BETWEEN $1 AND $2",
        start,
        end,
    )
    by_currency = await conn.fetch(
        f"""SELECT currency, count(DISTINCT merchant_id) FILTER (WHERE {active}) AS n FROM daily_metrics
            WHERE metric_date BETWEEN $1 AND $2 GROUP BY currency ORDER BY currency""",
        start,
        end,
    )
    return {
        "days": [tuple(r) for r in days],
        "active": overall,
        "by_currency": [tuple(r) for r in by_currency],
    }


async def from_rollup(pool: asyncpg.Pool, start: dt.date, end: dt.date) -> dict[str, Any]:
    days, overall, by_currency = await repository.platform_metrics(pool, start, end)
    return {
        "days": [
            (d["metric_date"], d["currency"], d["invoices_created"], d["invoices_paid"], d["amount_created"],
             d["amount_paid"], d["merchants_active"])
            for d in days
        ],
        "active": overall,
        "by_currency": [(c["currency"], c["merchants_active"]) for c in by_currency],
    }  # fmt: skip


@pytest.fixture
async def pool(config: Config) -> AsyncIterator[asyncpg.Pool]:
    dsn = config.shard_dsn(0)
    before = [m for m in migrations_for(SPEC.service_dir) if m.version < "1050"]
    await migrate_shard(dsn, SCHEMA, before)
    pool = await asyncpg.create_pool(
        dsn, min_size=1, max_size=2, server_settings={"search_path": SCHEMA}, init=init_connection
    )
    yield pool
    await pool.close()


async def test_the_rollups_say_what_the_merchants_rows_say_through_backfill_writes_reorgs_and_rebuilds(
    config: Config, pool: asyncpg.Pool
) -> None:
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with pool.acquire() as conn:
        for day in (DAY, DAY + dt.timedelta(days=5)):
            await repository.ensure_partition(conn, day)
        await ensure_partitions(conn, repository.DAILY_METRICS, ahead=1, behind=0, today=DAY)
        # Rows from before the migration: two merchants, two currencies, one day a reorg zeroed.
        await conn.executemany(
            """INSERT INTO daily_metrics (merchant_id, metric_date, currency, invoices_created,
                   invoices_paid, amount_created, amount_paid) VALUES ($1, $2, $3, $4, $5, $6, $7)""",
            [
                (a, DAY, "USD", 3, 1, Decimal("30.00"), Decimal("10.00")),
                (a, DAY, "EUR", 1, 0, Decimal("5.50"), Decimal(0)),
                (b, DAY, "USD", 2, 2, Decimal("7.25"), Decimal("7.25")),
                (b, DAY + dt.timedelta(days=1), "JPY", 0, 0, Decimal(0), Decimal(0)),
            ],
        )
        await migrate_shard(config.shard_dsn(0), SCHEMA, migrations_for(SPEC.service_dir))
        start, end = DAY - dt.timedelta(days=2), DAY + dt.timedelta(days=5)
        assert await from_rollup(pool, start, end) == await summed(conn, start, end)

        # The projection's writes: created and paid, across the quarter, a take-back to zero
        # (merchant a's only euro invoice, as if a reorg undid a payment it never had), a new
        # merchant in a new currency.
        async with conn.transaction():
            await repository.count_created(conn, c, DAY + dt.timedelta(days=2), "GBP", Decimal("99.99"))
            await repository.count_paid(conn, c, DAY + dt.timedelta(days=2), "GBP", Decimal("99.99"), 1)
            await repository.count_paid(conn, a, DAY, "USD", Decimal("10.00"), -1)
            await repository.count_paid(conn, b, DAY + dt.timedelta(days=1), "JPY", Decimal(1500), 1)
            await repository.count_created(conn, a, DAY + dt.timedelta(days=5), "USD", Decimal("1.00"))
            await repository.count_created(conn, c, DAY + dt.timedelta(days=4), "GBP", Decimal("2.00"))
        # Zeroed: a's only euro day, and c's last pound day (its span shrinks back to one day).
        await conn.execute(
            "UPDATE daily_metrics SET invoices_created = 0, amount_created = 0 "
            "WHERE (merchant_id = $1 AND currency = 'EUR') OR (merchant_id = $2 AND metric_date = $3)",
            a,
            c,
            DAY + dt.timedelta(days=4),
        )
        one = dt.timedelta(days=1)
        windows = [(start, end), (DAY, DAY), (DAY + one, end), (end, end),
                   # inside a's dollar days (DAY and DAY + 5): only a look between them can tell
                   (DAY + one, DAY + 4 * one), (DAY + 3 * one, DAY + 4 * one), (DAY - 9 * one, DAY - one)]  # fmt: skip
        for window in windows:
            assert await from_rollup(pool, *window) == await summed(conn, *window), window
        rollup = await from_rollup(pool, start, end)
        assert rollup["active"] == 3 and ("EUR", 0) in rollup["by_currency"]  # a's zeroed euro day

        # A rebuild empties the read model with its reset_sql and replays: the rollups follow.
        async with conn.transaction():
            await conn.execute(DailyMetricsProjection.reset_sql)
            for rollup_table in ("platform_daily", "merchant_activity", "merchant_currencies"):
                assert await conn.fetchval(f"SELECT count(*) FROM {rollup_table}") == 0
            await repository.count_created(conn, b, DAY, "USD", Decimal("4.00"))
        assert await from_rollup(pool, start, end) == await summed(conn, start, end)
        assert await repository.shard_counts(pool) == (0, 1)
