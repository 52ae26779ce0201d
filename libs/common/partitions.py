"""Partition upkeep done by the services themselves (no pg_cron): monthly and quarterly
range partitions created ahead of time, and their sizes reported for monitoring."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Literal

import asyncpg

from libs.common.db import Connection

log = logging.getLogger("checkout.partitions")

Period = Literal["month", "quarter"]


@dataclass(frozen=True)
class PartitionedTable:
    table: str
    period: Period


def _period_start(day: dt.date, period: Period) -> dt.date:
    month = day.month if period == "month" else 3 * ((day.month - 1) // 3) + 1
    return dt.date(day.year, month, 1)


def _add(start: dt.date, period: Period, n: int) -> dt.date:
    months = start.year * 12 + start.month - 1 + n * (1 if period == "month" else 3)
    return dt.date(months // 12, months % 12 + 1, 1)


def partition_name(table: str, start: dt.date, period: Period) -> str:
    if period == "month":
        return f"{table}_{start:%Y_%m}"
    return f"{table}_{start.year}_q{(start.month - 1) // 3 + 1}"


async def ensure_partitions(
    conn: Connection,
    spec: PartitionedTable,
    *,
    ahead: int,
    behind: int = 1,
    today: dt.date | None = None,
) -> list[str]:
    """Creates the partitions from `behind` periods ago to `ahead` periods ahead; returns the new ones."""
    current = _period_start(today or dt.datetime.now(dt.UTC).date(), spec.period)
    created = []
    for n in range(-behind, ahead + 1):
        start = _add(current, spec.period, n)
        end = _add(start, spec.period, 1)
        name = partition_name(spec.table, start, spec.period)
        exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name)
        if exists:
            continue
        try:
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {spec.table} "
                f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
            )
        except asyncpg.DuplicateTableError:
            continue  # another instance won the race
        created.append(name)
    if created:
        log.info("created partitions %s", ", ".join(created))
    return created


async def partition_sizes(conn: Connection, table: str) -> dict[str, tuple[int, int]]:
    """(estimated rows, bytes) per partition: planner statistics and the relation's size, both
    read from the catalogue (cheap enough to poll; no partition is scanned)."""
    rows = await conn.fetch(
        """SELECT c.relname AS name, GREATEST(c.reltuples, 0)::bigint AS rows,
                  pg_total_relation_size(c.oid) AS bytes
           FROM pg_inherits i
           JOIN pg_class c ON c.oid = i.inhrelid
           JOIN pg_class p ON p.oid = i.inhparent
           WHERE p.oid = to_regclass($1)""",
        table,
    )
    return {r["name"]: (r["rows"], r["bytes"]) for r in rows}
