"""SQL for the analytics service's read models."""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Sequence
from decimal import Decimal

import asyncpg
from sqlalchemy import Integer, bindparam, func, literal_column, select, tuple_

from libs.common.db import Connection
from libs.common.partitions import PartitionedTable, partition_name
from libs.common.sqlcore import Query, compile_query
from services.analytics import tables

DAILY_METRICS = PartitionedTable("daily_metrics", "quarter")
# What a rebuild (libs.common.consumer.rebuild) empties before it replays the events.
RESET_DAILY_METRICS = "TRUNCATE daily_metrics, paid_invoices"
RESET_MERCHANT_DIRECTORY = "TRUNCATE merchant_directory"
METRIC_COLUMNS = (
    "metric_date, currency, invoices_created, invoices_paid, amount_created, amount_paid, conversion_rate"
)


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


def _rate(paid: str, created: str) -> str:
    """conversion_rate of a day: invoices paid that day / invoices created that day x 100, to
    2 decimals; 0 on a day nothing was created (nothing to convert)."""
    return f"CASE WHEN {created} = 0 THEN 0 ELSE round(100 * ({paid})::numeric / ({created}), 2) END"


async def count_created(
    conn: Connection, merchant_id: uuid.UUID, day: dt.date, currency: str, amount: Decimal
) -> None:
    await count_created_many(conn, [(merchant_id, day, currency, amount)])


async def count_created_many(
    conn: Connection, created: Sequence[tuple[uuid.UUID, dt.date, str, Decimal]]
) -> None:
    """Counts each (merchant, day, currency, amount) as one created invoice, in one statement:
    PostgreSQL sums them per day first (exactly, as the columns are NUMERIC without a scale),
    as one upsert may change each row only once."""
    await conn.execute(
        f"""INSERT INTO daily_metrics (merchant_id, metric_date, currency, invoices_created, amount_created)
           SELECT m, d, c, count(*), sum(a)
           FROM unnest($1::uuid[], $2::date[], $3::text[], $4::numeric[]) AS n(m, d, c, a)
           GROUP BY m, d, c ORDER BY m, d, c
           ON CONFLICT (merchant_id, metric_date, currency) DO UPDATE SET
               invoices_created = daily_metrics.invoices_created + EXCLUDED.invoices_created,
               amount_created = daily_metrics.amount_created + EXCLUDED.amount_created,
               conversion_rate = {_rate("daily_metrics.invoices_paid", "daily_metrics.invoices_created + EXCLUDED.invoices_created")}""",
        [m for m, _, _, _ in created],
        [d for _, d, _, _ in created],
        [c for _, _, c, _ in created],
        [a for _, _, _, a in created],
    )


async def count_paid(
    conn: Connection, merchant_id: uuid.UUID, day: dt.date, currency: str, amount: Decimal, sign: int
) -> None:
    """Adds (sign 1) or takes back (sign -1) one paid invoice of `amount` in `currency` on `day`."""
    await conn.execute(
        f"""INSERT INTO daily_metrics (merchant_id, metric_date, currency, invoices_paid, amount_paid)
           VALUES ($1, $2, $5, $4::int, $3::numeric * $4::int)
           ON CONFLICT (merchant_id, metric_date, currency) DO UPDATE SET
               invoices_paid = daily_metrics.invoices_paid + $4::int,
               amount_paid = daily_metrics.amount_paid + $3::numeric * $4::int,
               conversion_rate = {_rate("daily_metrics.invoices_paid + $4::int", "daily_metrics.invoices_created")}""",
        merchant_id,
        day,
        amount,
        sign,
        currency,
    )


async def paid_invoice(conn: Connection, invoice_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT merchant_id, paid_on, currency, amount, counted, invoice_version FROM paid_invoices "
        "WHERE invoice_id = $1 FOR UPDATE",
        invoice_id,
    )


async def add_paid_invoice(
    conn: Connection,
    invoice_id: uuid.UUID,
    merchant_id: uuid.UUID,
    paid_on: dt.date,
    currency: str,
    amount: Decimal,
    version: int,
) -> None:
    await conn.execute(
        """INSERT INTO paid_invoices (invoice_id, merchant_id, paid_on, currency, amount, counted, invoice_version)
           VALUES ($1, $2, $3, $4, $5, true, $6)""",
        invoice_id,
        merchant_id,
        paid_on,
        currency,
        amount,
        version,
    )


async def mark_paid_invoice(conn: Connection, invoice_id: uuid.UUID, counted: bool, version: int) -> None:
    await conn.execute(
        "UPDATE paid_invoices SET counted = $2, invoice_version = $3 WHERE invoice_id = $1",
        invoice_id,
        counted,
        version,
    )


async def add_merchant(conn: Connection, merchant_id: uuid.UUID, created_at: dt.datetime) -> None:
    await conn.execute(
        "INSERT INTO merchant_directory (merchant_id, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        merchant_id,
        created_at,
    )


async def daily_metrics(
    pool: Connection | asyncpg.Pool, merchant_id: uuid.UUID, start: dt.date, end: dt.date
) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            f"""SELECT {METRIC_COLUMNS} FROM daily_metrics
                WHERE merchant_id = $1 AND metric_date BETWEEN $2 AND $3
                ORDER BY metric_date, currency""",
            merchant_id,
            start,
            end,
        )
    )


async def shard_counts(pool: Connection | asyncpg.Pool) -> tuple[int, int]:
    """(merchants, invoices created) on one shard."""
    row = await pool.fetchrow(
        """SELECT (SELECT count(*) FROM merchant_directory) AS merchants,
                  (SELECT COALESCE(sum(invoices_created), 0) FROM platform_daily) AS invoices"""
    )
    assert row is not None
    return int(row["merchants"]), int(row["invoices"])


@functools.cache
def _totals_query(bounded: bool) -> Query:
    """merchant_totals' statement; without a start its range begins at the merchant's first day."""
    c = tables.daily_metrics.c
    conditions = [c.merchant_id == bindparam("merchant_id"), c.metric_date <= bindparam("end")]
    if bounded:
        conditions.append(c.metric_date >= bindparam("start"))
    zero, one = literal_column("0", Integer), literal_column("1", Integer)  # in the text, not arguments
    overall = (func.grouping(c.currency) == one).label("overall")
    summed = (c.invoices_created, c.invoices_paid, c.amount_created, c.amount_paid)
    sums = [func.coalesce(func.sum(column), zero).label(column.name) for column in summed]
    rate = _rate("COALESCE(sum(invoices_paid), 0)", "COALESCE(sum(invoices_created), 0)")
    statement = (
        select(c.currency, overall, func.min(c.metric_date).label("first_day"), *sums)
        .add_columns(literal_column(rate).label("conversion_rate"))
        .where(*conditions)
        .group_by(func.grouping_sets(tuple_(), tuple_(c.currency)))
        .order_by(overall.desc(), c.currency)
    )
    return compile_query(statement)


async def merchant_totals(
    pool: Connection | asyncpg.Pool, merchant_id: uuid.UUID, start: dt.date | None, end: dt.date
) -> tuple[asyncpg.Record, list[asyncpg.Record]]:
    """One merchant's sums over [start, end] (from its first metric day when start is None):
    across currencies, with the first day in range (`first_day`, NULL when it has none), and
    per currency in code order. One statement, so both are of one snapshot."""
    query = _totals_query(start is not None)
    rows = await pool.fetch(query.sql, *query.args({"merchant_id": merchant_id, "start": start, "end": end}))
    # The empty grouping set yields its row even when nothing matched.
    overall, *by_currency = rows
    assert overall["overall"]
    return overall, by_currency


# A merchant counts as active on a day it created an invoice or was paid for one; a row a reorg
# took back to all zeros does not.
_ACTIVE = "invoices_created > 0 OR invoices_paid > 0"


async def platform_metrics(
    db: Connection | asyncpg.Pool, start: dt.date, end: dt.date
) -> tuple[list[asyncpg.Record], int, list[asyncpg.Record]]:
    """Every merchant of one shard summed per day and currency over [start, end], the distinct
    merchants active in the range, and the same per currency. One snapshot, so they agree.

    From the rollups daily_metrics' trigger keeps (migration 1050): the days are platform_daily's
    rows; a merchant is active in the range if one of its (merchant, currency) pairs is: its
    first or last active day is in the range, or (its days spanning the range) one in between is.
    """
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as pooled:
            return await platform_metrics(pooled, start, end)
    conn: Connection = db
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        days = await conn.fetch(
            f"""SELECT metric_date, currency, invoices_created, invoices_paid, amount_created, amount_paid,
                       {_rate("invoices_paid", "invoices_created")} AS conversion_rate, merchants_active
                FROM platform_daily
                WHERE metric_date BETWEEN $1 AND $2 AND metric_rows > 0
                ORDER BY metric_date, currency""",
            start,
            end,
        )
        active = await conn.fetch(
            """WITH active AS (
                   SELECT pair.merchant_id, pair.currency FROM merchant_currencies pair
                   WHERE pair.last_day >= $1 AND pair.first_day <= $2
                     AND (pair.last_day <= $2 OR pair.first_day >= $1
                          OR EXISTS (SELECT FROM merchant_activity day
                                     WHERE day.merchant_id = pair.merchant_id AND day.currency = pair.currency
                                       AND day.metric_date BETWEEN $1 AND $2)))
               SELECT NULL AS currency, count(DISTINCT merchant_id) AS merchants_active FROM active
               UNION ALL
               -- Every currency invoiced in the range, with none active too (a reorg's zeros).
               SELECT traded.currency, count(active.merchant_id)
               FROM (SELECT DISTINCT currency FROM platform_daily
                     WHERE metric_date BETWEEN $1 AND $2 AND metric_rows > 0) traded
               LEFT JOIN active USING (currency)
               GROUP BY traded.currency
               ORDER BY currency NULLS FIRST""",
            start,
            end,
        )
    overall, *by_currency = active
    return list(days), int(overall["merchants_active"]), by_currency
