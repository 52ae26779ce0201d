"""Archive: old partitions leave the hot tables for an archive schema, and stay readable there.

A service's upkeep detaches each partition of an archived table (ServiceSpec.archived) whose
range ended more than CHECKOUT_ARCHIVE_AFTER_MONTHS ago and attaches it, unchanged, to the same
table in `<schema>_archive` (created from the hot table on first use). Queries on the hot table
no longer plan or scan it; history reads ask the archive table, through the archive replica role.
Detach, move and attach are one transaction: a partition is either hot or archived, never lost.
Nothing is deleted unless the operator sets CHECKOUT_ARCHIVE_DROP_AFTER_MONTHS.

The event store is not archived. An aggregate's events are its state: loading an invoice (a late
payment, a reorg, a cancel) and rebuilding a read model both read every event of the stream, and
a stream's old events are exactly what an archived month would hold. Archiving them would need a
snapshot of every aggregate in the month and an event store that reads the archive on a miss;
until then the events stay hot, and what moves is what is only ever history: the audit trail.
"""

from __future__ import annotations

import datetime as dt
import logging
import re

import asyncpg

from libs.common.db import Connection
from libs.common.partitions import PartitionedTable

log = logging.getLogger("checkout.archive")

_BOUND = re.compile(r"^FOR VALUES FROM \('([^']*)'\) TO \('([^']*)'\)$")
LOCK_TIMEOUT = "5s"


def archive_schema(schema: str) -> str:
    return f"{schema}_archive"


def months_before(day: dt.date, months: int) -> dt.date:
    """The first day of the month `months` before `day`'s month."""
    index = day.year * 12 + day.month - 1 - months
    return dt.date(index // 12, index % 12 + 1, 1)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def _partitions(conn: Connection, qualified: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent = to_regclass($1) ORDER BY c.relname""",
            qualified,
        )
    )


async def _ended_before(conn: Connection, bound: str, cutoff: dt.date) -> bool:
    match = _BOUND.match(bound or "")
    if match is None:  # DEFAULT or MINVALUE/MAXVALUE partitions are never archived
        return False
    return bool(
        await conn.fetchval("SELECT $1::text::timestamptz <= $2::timestamptz", match[2], _midnight(cutoff))
    )


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


async def _ensure_archive_table(conn: Connection, schema: str, table: str) -> None:
    """The archive table, partitioned like the hot one, with every column the hot one has now
    (a migration may have added some since the last partition moved)."""
    archive = archive_schema(schema)
    hot = f"{_ident(schema)}.{_ident(table)}"
    target = f"{_ident(archive)}.{_ident(table)}"
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_ident(archive)}")
    key = await conn.fetchval("SELECT pg_get_partkeydef(to_regclass($1))", f"{schema}.{table}")
    await conn.execute(
        f"CREATE TABLE IF NOT EXISTS {target} (LIKE {hot} INCLUDING DEFAULTS) PARTITION BY {key}"
    )
    missing = await conn.fetch(
        """SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type
           FROM pg_attribute a
           WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
             AND NOT EXISTS (SELECT 1 FROM pg_attribute b WHERE b.attrelid = to_regclass($2)
                             AND b.attname = a.attname AND NOT b.attisdropped)
           ORDER BY a.attnum""",
        f"{schema}.{table}",
        f"{archive}.{table}",
    )
    for column in missing:
        await conn.execute(f"ALTER TABLE {target} ADD COLUMN {_ident(column['name'])} {column['type']}")


async def archive_partitions(
    pool: asyncpg.Pool,
    schema: str,
    spec: PartitionedTable,
    *,
    after_months: int,
    drop_after_months: int = 0,
    today: dt.date | None = None,
) -> list[str]:
    """Archives the partitions of `schema.table` that ended `after_months` months before this
    month began (and drops archived ones past `drop_after_months`, when set); returns what moved."""
    today = today or dt.datetime.now(dt.UTC).date()
    cutoff = months_before(today, after_months)
    archive = archive_schema(schema)
    moved: list[str] = []
    async with pool.acquire() as conn:
        for partition in await _partitions(conn, f"{schema}.{spec.table}"):
            if not await _ended_before(conn, partition["bound"], cutoff):
                continue
            name = partition["name"]
            try:
                async with conn.transaction():
                    # DETACH takes an exclusive lock on the hot table: give up rather than stall
                    # its readers and writers behind a long query; the next upkeep tries again.
                    await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                    await _ensure_archive_table(conn, schema, spec.table)
                    await conn.execute(
                        f"ALTER TABLE {_ident(schema)}.{_ident(spec.table)} DETACH PARTITION {_ident(schema)}.{_ident(name)}"
                    )
                    await conn.execute(
                        f"ALTER TABLE {_ident(schema)}.{_ident(name)} SET SCHEMA {_ident(archive)}"
                    )
                    await conn.execute(
                        f"ALTER TABLE {_ident(archive)}.{_ident(spec.table)} ATTACH PARTITION "
                        f"{_ident(archive)}.{_ident(name)} {partition['bound']}"
                    )
            except asyncpg.PostgresError as error:
                log.warning("could not archive %s.%s (it stays hot): %s", schema, name, error)
                continue
            moved.append(name)
        if moved:
            log.info("archived %s into %s", ", ".join(moved), archive)
        if drop_after_months:
            drop_cutoff = months_before(today, drop_after_months)
            for partition in await _partitions(conn, f"{archive}.{spec.table}"):
                if await _ended_before(conn, partition["bound"], drop_cutoff):
                    await conn.execute(f"DROP TABLE {_ident(archive)}.{_ident(partition['name'])}")
                    log.warning(
                        "dropped archived partition %s.%s (CHECKOUT_ARCHIVE_DROP_AFTER_MONTHS=%d)",
                        archive, partition["name"], drop_after_months,
                    )  # fmt: skip
    return moved


async def archive_sizes(conn: Connection, schema: str, table: str) -> dict[str, tuple[int, int]]:
    """(estimated rows, bytes) per archived partition of `table`."""
    rows = await conn.fetch(
        """SELECT c.relname AS name, GREATEST(c.reltuples, 0)::bigint AS rows,
                  pg_total_relation_size(c.oid) AS bytes
           FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = to_regclass($1)""",
        f"{archive_schema(schema)}.{table}",
    )
    return {r["name"]: (r["rows"], r["bytes"]) for r in rows}
