"""Archive: audit partitions older than CHECKOUT_ARCHIVE_AFTER_MONTHS leave the hot table for
`invoice_archive` and stay readable there, through the archive role; events stay hot."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from libs.common.archive import archive_sizes, months_before
from libs.common.partitions import ensure_partitions, partition_name
from libs.common.service import EVENTS_TABLE
from services.invoice import application, projections
from services.invoice.history import AUDIT
from tests.replicas.conftest import PlatformFactory


async def test_archived_audit_partitions_stay_readable_and_the_hot_table_no_longer_scans_them(
    platform_factory: PlatformFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The invoice job that expires invoices must not run while this one is back in time.
    async with platform_factory(expiry_poll_seconds=3600) as p:
        merchant_id, key = await p.merchant()
        today = dt.datetime.now(dt.UTC).date()
        month = months_before(today, 14)
        then = dt.datetime(month.year, month.month, 15, 12, tzinfo=dt.UTC)
        shard = p.invoice.shard_of(merchant_id)
        pool = p.invoice.pools[shard]
        async with pool.acquire() as conn:
            for table in (EVENTS_TABLE, AUDIT):
                await ensure_partitions(conn, table, ahead=0, behind=15)

        # An invoice created 14 months ago (its events and first audit entry then), cancelled now.
        monkeypatch.setattr(application, "utcnow", lambda: then)
        monkeypatch.setattr(p.invoice.store, "clock", lambda: then)
        invoice_id = (await p.create_invoice(key)).json()["id"]
        monkeypatch.undo()
        cancelled = await p.http.post(f"/v1/invoices/{invoice_id}/cancel", json={}, headers=key)
        assert cancelled.status_code == 200, cancelled.text
        trail = (await p.http.get(f"/v1/invoices/{invoice_id}/audit", headers=key)).json()["data"]
        assert [e["event"] for e in trail] == ["invoice.created", "invoice.cancelled"]

        old = partition_name("audit_entries", month, "month")
        moved = await p.invoice.archive_partitions()
        assert old in moved
        assert partition_name("audit_entries", months_before(today, 11), "month") not in moved
        async with pool.acquire() as conn:
            plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN SELECT * FROM audit_entries"))
            assert old not in plan and partition_name("audit_entries", today, "month") in plan
            assert await conn.fetchval(f"SELECT count(*) FROM invoice_archive.{old}") == 1
            # Events are never archived: every event of a live aggregate stays where loads look.
            events_plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN SELECT * FROM events"))
            assert partition_name("events", month, "month") in events_plan
            sizes = await archive_sizes(conn, "invoice", "audit_entries")
            assert old in sizes and sizes[old][1] > 0
        await p.invoice.monitor.refresh()  # what checkout_archive_partition_bytes reports
        assert p.invoice.monitor.archive_bytes[(shard, old)] == sizes[old][1]

        # The trail reads the same, the archived part through the archive role.
        await p.replicas_serving()
        before = sum(n for (_, role, _, _), n in p.invoice.replicas.reads.items() if role == "archive")
        again = (await p.http.get(f"/v1/invoices/{invoice_id}/audit", headers=key)).json()["data"]
        assert again == trail
        assert sum(n for (_, role, _, _), n in p.invoice.replicas.reads.items() if role == "archive") > before
        first = (await p.http.get(f"/v1/invoices/{invoice_id}/audit?limit=1", headers=key)).json()
        assert [e["event"] for e in first["data"]] == ["invoice.created"]
        rest = await p.http.get(
            f"/v1/invoices/{invoice_id}/audit?limit=1&cursor={first['next_cursor']}", headers=key
        )
        assert [e["event"] for e in rest.json()["data"]] == ["invoice.cancelled"]

        # A rebuild writes the whole trail again (hot), and the next upkeep archives it again.
        async with pool.acquire() as conn, conn.transaction():
            await projections.rebuild(conn, p.invoice.store)
        assert (await p.http.get(f"/v1/invoices/{invoice_id}/audit", headers=key)).json()["data"] == trail
        assert old in await p.invoice.archive_partitions()
        assert (await p.http.get(f"/v1/invoices/{invoice_id}/audit", headers=key)).json()["data"] == trail


async def test_archived_partitions_are_dropped_only_when_the_operator_says_so(
    platform_factory: PlatformFactory,
) -> None:
    async with platform_factory() as p:
        shard = 0
        pool = p.invoice.pools[shard]
        today = dt.datetime.now(dt.UTC).date()
        async with pool.acquire() as conn:
            await ensure_partitions(conn, AUDIT, ahead=0, behind=30)
        moved = await p.invoice.archive_partitions()
        oldest = partition_name("audit_entries", months_before(today, 30), "month")
        assert oldest in moved
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"invoice_archive.{oldest}")

        p.invoice.config = dataclasses.replace(p.invoice.config, archive_drop_after_months=24)
        await p.invoice.archive_partitions()
        async with pool.acquire() as conn:
            assert not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"invoice_archive.{oldest}")
            kept = partition_name("audit_entries", months_before(today, 20), "month")
            assert await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"invoice_archive.{kept}")
