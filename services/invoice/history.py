"""An invoice's audit trail across the hot table and the archive.

Audit partitions older than CHECKOUT_ARCHIVE_AFTER_MONTHS move to `invoice_archive`
(libs/common/archive.py), so an old invoice's trail may begin there and continue in the hot table.
The archived part is read through the archive role, the rest through the read role, and the two
are merged in the order the invoice's events were written.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING

import asyncpg

from libs.common.archive import archive_schema, months_before
from libs.common.db import Connection
from libs.common.partitions import PartitionedTable, ensure_partitions
from libs.common.replica_config import ARCHIVE, READ
from services.invoice import repository

if TYPE_CHECKING:
    from libs.common.service import Runtime

AUDIT = PartitionedTable("audit_entries", "month")
ARCHIVED_AUDIT = f"{archive_schema('invoice')}.audit_entries"


def may_be_archived(created_at: dt.datetime, today: dt.date | None = None) -> bool:
    """Whether some of an invoice's entries can be in the archive. Archiving keeps at least the
    last month hot whatever the setting, and a setting changed later does not move partitions
    back: so this asks the calendar, not CHECKOUT_ARCHIVE_AFTER_MONTHS."""
    today = today or dt.datetime.now(dt.UTC).date()
    cutoff = months_before(today, 1)
    return created_at < dt.datetime(cutoff.year, cutoff.month, cutoff.day, tzinfo=dt.UTC)


async def audit_trail(
    rt: Runtime, invoice: asyncpg.Record, cursor: uuid.UUID | None, limit: int
) -> list[asyncpg.Record]:
    """Up to `limit` entries after the one with id `cursor`, oldest first."""
    invoice_id: uuid.UUID = invoice["id"]
    if not may_be_archived(invoice["created_at"]):
        return await rt.read(
            READ, invoice_id, lambda db: repository.audit_entries(db, invoice_id, cursor, limit)
        )
    after = 0
    if cursor is not None:
        found = await rt.read(READ, invoice_id, lambda db: repository.audit_version(db, invoice_id, cursor))
        if found is None:
            found = await rt.read(ARCHIVE, invoice_id, lambda db: _archived_version(db, invoice_id, cursor))
        if found is None:
            return []  # not an entry of this invoice: nothing follows it
        after = found
    archived = await rt.read(ARCHIVE, invoice_id, lambda db: _archived_after(db, invoice_id, after, limit))
    hot = await rt.read(
        READ, invoice_id, lambda db: repository.audit_entries_after(db, invoice_id, after, limit)
    )
    return sorted([*archived, *hot], key=lambda r: r["event_version"])[:limit]


async def _archived_version(db: Connection, invoice_id: uuid.UUID, entry_id: uuid.UUID) -> int | None:
    try:
        return await repository.audit_version(db, invoice_id, entry_id, table=ARCHIVED_AUDIT)
    except asyncpg.UndefinedTableError:
        return None  # nothing was ever archived on this shard


async def _archived_after(
    db: Connection, invoice_id: uuid.UUID, after: int, limit: int
) -> list[asyncpg.Record]:
    try:
        return await repository.audit_entries_after(db, invoice_id, after, limit, table=ARCHIVED_AUDIT)
    except asyncpg.UndefinedTableError:
        return []


async def unarchive_for_rebuild(conn: Connection, oldest_event: dt.datetime | None) -> None:
    """Before a rebuild writes every entry again: the archived copies go (the events hold them
    all, and the upkeep archives the new ones again) and each month back to the oldest event gets
    its hot partition back. Call inside the rebuild's transaction."""
    await repository.drop_table(conn, ARCHIVED_AUDIT)
    if oldest_event is None:
        return
    today = dt.datetime.now(dt.UTC).date()
    months = (today.year - oldest_event.year) * 12 + today.month - oldest_event.month
    await ensure_partitions(conn, AUDIT, ahead=0, behind=max(months, 1), today=today)
