"""Reads by role on a real primary and standby: never staler than the role tolerates, a replica
that stops costs no request, and one that catches up takes its reads back, its lag reported."""

from __future__ import annotations

import asyncio
import time
import uuid

from prometheus_client import generate_latest

from libs.common import telemetry
from libs.common.replica_config import ROLES
from tests.common.support import poll
from tests.replicas.conftest import Platform, PlatformFactory


def served(p: Platform, by: str, reason: str | None = None, role: str | None = None) -> int:
    return sum(
        n
        for (_, r, who, why), n in p.invoice.replicas.reads.items()
        if who == by and (reason is None or why == reason) and (role is None or r == role)
    )


async def test_reads_without_a_token_are_no_staler_than_the_role_tolerates(
    platform_factory: PlatformFactory,
) -> None:
    tolerance = 0.3
    lags = {**{name: role.max_lag_seconds for name, role in ROLES.items()}, "read": tolerance}
    async with platform_factory(replica_max_lag=lags) as p:
        _, key = await p.merchant()
        await p.replicas_serving()
        await p.replicated.pause()
        written: list[tuple[float, str]] = []  # (when its create returned, invoice id)
        finished = asyncio.Event()

        async def write() -> None:
            try:
                deadline = time.monotonic() + 4 * tolerance
                while time.monotonic() < deadline:
                    created = await p.create_invoice(key)
                    written.append((time.monotonic(), created.json()["id"]))
            finally:
                finished.set()

        async def read() -> int:
            reads = 0
            while not finished.is_set():
                started = time.monotonic()
                due = {invoice for at, invoice in written if at < started - tolerance}
                listed = await p.http.get("/v1/invoices?limit=200", headers=key)
                assert listed.status_code == 200, listed.text
                missing = due - {i["id"] for i in listed.json()["data"]}
                assert not missing, (
                    f"a read {tolerance}s after these were written did not see them: {missing}"
                )
                reads += 1
            return reads

        _, *reads = await asyncio.gather(write(), read(), read())
        assert sum(reads) > 10
        # Both happened: the paused replica answered while it was within the tolerance (stale,
        # as allowed), then the primary once it was not.
        assert served(p, "replica", role="read") > 0
        assert served(p, "primary", "lag", role="read") > 0


async def test_a_replica_stopped_mid_load_fails_no_read(platform_factory: PlatformFactory) -> None:
    async with platform_factory() as p:
        _, key = await p.merchant()
        invoice_id = (await p.create_invoice(key)).json()["id"]
        await p.replicas_serving()
        stop = asyncio.Event()
        statuses: list[int] = []

        async def read() -> None:
            while not stop.is_set():
                # The payer's page (customer role, never cached) and the merchant's list (read role).
                view = await p.http.get(f"/v1/checkout/{invoice_id}")
                listed = await p.http.get("/v1/invoices", headers=key)
                statuses.extend((view.status_code, listed.status_code))

        readers = [asyncio.create_task(read()) for _ in range(4)]
        try:
            await poll(lambda: served(p, "replica") > 20, what="reads from the replica")
            await asyncio.to_thread(p.replicated.standby.stop)
            down_before = served(p, "primary", "down")
            await poll(lambda: served(p, "primary", "down") > down_before + 20, what="reads from the primary")
            stop.set()
            await asyncio.gather(*readers)
            [status] = p.invoice.replicas.status(p.invoice.shard_of(uuid.UUID(invoice_id)))
            assert not status.up and status.lagging and status.error
        finally:
            stop.set()
            await asyncio.gather(*readers)
            await asyncio.to_thread(p.replicated.standby.start)
        assert statuses and set(statuses) == {200}


async def test_a_replica_that_catches_up_takes_reads_back_and_its_lag_metric_follows(
    platform_factory: PlatformFactory,
) -> None:
    telemetry.setup("test")
    async with platform_factory() as p:
        merchant_id, key = await p.merchant()
        shard = p.invoice.shard_of(merchant_id)
        await p.replicas_serving()
        await p.replicated.pause()
        invoice_id = (await p.create_invoice(key)).json()["id"]  # WAL the replica does not replay

        def lag() -> float:
            [status] = p.invoice.replicas.status(shard)
            return status.lag_seconds if status.lag_seconds is not None else float("inf")

        await poll(lambda: lag() > 1.0, what="the paused replica to fall behind the 1 s alert")
        shards = (await p.http.get("/v1/admin/shards", headers=p.admin)).json()["shards"]
        [replica] = shards[shard]["replicas"]
        assert replica["up"] and replica["lagging"] and replica["lag_seconds"] > 1.0
        assert replica["lag_bytes"] > 0
        assert _metric(shard) > 1.0

        # The merchant's list (never cached): the primary has the invoice, the replica would not.
        before = served(p, "primary", "lag", role="read")
        listed = await p.http.get("/v1/invoices", headers=key)
        assert [i["id"] for i in listed.json()["data"]] == [invoice_id]
        assert served(p, "primary", "lag", role="read") == before + 1

        await p.replicated.resume()
        await poll(lambda: lag() < 0.1, what="the replica to catch up")
        before = served(p, "replica", role="read")
        listed = await p.http.get("/v1/invoices", headers=key)
        assert [i["id"] for i in listed.json()["data"]] == [invoice_id]
        assert served(p, "replica", role="read") == before + 1
        shards = (await p.http.get("/v1/admin/shards", headers=p.admin)).json()["shards"]
        [replica] = shards[shard]["replicas"]
        assert not replica["lagging"] and replica["lag_seconds"] < 1.0 and replica["roles"] == sorted(ROLES)
        assert _metric(shard) < 1.0


def _metric(shard: int) -> float:
    """This shard's invoice-service replica lag as Prometheus scrapes it."""
    for line in generate_latest().decode().splitlines():
        if (
            line.startswith("checkout_replica_lag_seconds{")
            and 'service="invoice"' in line
            and f'shard="{shard}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no checkout_replica_lag_seconds for the invoice service")
