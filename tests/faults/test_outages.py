"""PostgreSQL, NATS and Redis stopped and started again under a small load: clients see 503 with
Retry-After (never 500) while a server is down, readiness says so, and afterwards every event is
published and applied by every projection without anyone restarting a service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest

from services.merchant.application import MerchantApp
from tests.common.support import poll
from tests.e2e.test_checkout_flow import bearer, invoice_body
from tests.faults.conftest import Faulty
from tests.platform import Platform
from tools.faults.checks import settled_audit


@dataclass
class Load:
    """Creates invoices one after another and reads each back, recording every status."""

    http: httpx.AsyncClient
    key: str
    statuses: Counter[int] = field(default_factory=Counter)
    created: list[str] = field(default_factory=list)
    retry_after: set[str] = field(default_factory=set)
    stopping: bool = False

    async def run(self) -> None:
        # A flag as well as the cancellation: a cancellation that lands inside the gateway's
        # request handling can be swallowed on Python 3.11, and a loop that only stops when
        # cancelled then runs until the test times out.
        while not self.stopping:
            try:
                response = await self.http.post("/v1/invoices", json=invoice_body(), headers=bearer(self.key))
            except httpx.TransportError:
                self.statuses[-1] += 1
                continue
            self.statuses[response.status_code] += 1
            if response.status_code in (429, 503):
                self.retry_after.add(response.headers.get("retry-after", ""))
                await asyncio.sleep(0.05)  # as a client honouring Retry-After would, only quicker
            if response.status_code == 201:
                self.created.append(response.json()["id"])
                read = await self.http.get(f"/v1/invoices/{self.created[-1]}", headers=bearer(self.key))
                self.statuses[read.status_code] += 1


@contextlib.asynccontextmanager
async def load(platform: Platform) -> AsyncIterator[Load]:
    _, key = await platform.onboard()
    running = Load(platform.http, key)
    task = asyncio.create_task(running.run())
    try:
        yield running
    finally:
        running.stopping = True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def ready(platform: Platform) -> bool:
    return (await platform.http.get("/readyz")).status_code == 200


async def not_ready(platform: Platform) -> bool:
    return (await platform.http.get("/readyz")).status_code == 503


async def assert_every_event_published_and_applied(platform: Platform) -> None:
    audit = await settled_audit(platform.config, timeout=60)
    assert audit.missing == 0, audit.summary()
    assert audit.settled and not any(audit.parked.values()), audit.summary()
    assert audit.stored > 0 and audit.duplicates_on_stream == 0


async def test_a_postgres_restart_under_load_gives_503s_and_ends_with_every_event_published_and_applied(
    faulty: Faulty,
) -> None:
    platform = faulty.platform
    async with load(platform) as running:
        await poll(lambda: len(running.created) >= 5, timeout=30, what="invoices before the outage")
        await asyncio.to_thread(faulty.servers.stop_server, "postgres")
        try:
            await poll(lambda: not_ready(platform), timeout=15, what="/readyz to say 503")
            await poll(lambda: running.statuses[503] >= 3, timeout=15, what="503s during the outage")
        finally:
            await asyncio.to_thread(faulty.servers.start_server, "postgres")
        await poll(lambda: ready(platform), timeout=30, what="/readyz to say 200 again")
        before = len(running.created)
        await poll(lambda: len(running.created) >= before + 5, timeout=30, what="invoices after it")
    assert set(running.statuses) <= {200, 201, 503}, running.statuses
    assert running.retry_after and all(v.isdigit() and int(v) > 0 for v in running.retry_after)
    await assert_every_event_published_and_applied(platform)
    # Each relay lost the session that held its LISTEN and lock, and started over on a new one.
    for runtime in platform.runtimes.values():
        for shard in runtime.relays:
            assert runtime.supervisor.loops[f"relay-s{shard}"].restarts >= 1, (runtime.spec.name, shard)


async def test_a_nats_restart_under_load_ends_with_every_event_published_and_applied(
    faulty: Faulty,
) -> None:
    platform = faulty.platform
    async with load(platform) as running:
        await poll(lambda: len(running.created) >= 5, timeout=30, what="invoices before the outage")
        await asyncio.to_thread(faulty.servers.stop_server, "nats-server")
        try:
            await poll(lambda: not_ready(platform), timeout=15, what="/readyz to say 503")
            during = len(running.created)
            # Writes need only PostgreSQL: invoices are still taken, their events wait.
            await poll(lambda: len(running.created) >= during + 3, timeout=30, what="invoices meanwhile")
        finally:
            await asyncio.to_thread(faulty.servers.start_server, "nats-server")
        await poll(lambda: ready(platform), timeout=30, what="/readyz to say 200 again")
        before = len(running.created)
        await poll(lambda: len(running.created) >= before + 5, timeout=30, what="invoices after it")
    assert set(running.statuses) <= {200, 201, 503}, running.statuses
    await assert_every_event_published_and_applied(platform)


async def test_a_redis_restart_under_load_fails_no_request_and_loses_no_event(faulty: Faulty) -> None:
    platform = faulty.platform
    async with load(platform) as running:
        await poll(lambda: len(running.created) >= 5, timeout=30, what="invoices before the outage")
        await asyncio.to_thread(faulty.servers.stop_server, "redis-server", kill=True)
        try:
            during = len(running.created)
            await poll(lambda: len(running.created) >= during + 5, timeout=30, what="invoices without Redis")
            assert await ready(platform)
        finally:
            await asyncio.to_thread(faulty.servers.start_server, "redis-server")
        before = len(running.created)
        await poll(lambda: len(running.created) >= before + 5, timeout=30, what="invoices after it")
    assert set(running.statuses) <= {200, 201}, running.statuses
    await assert_every_event_published_and_applied(platform)


async def test_with_postgres_stopped_every_kind_of_request_is_503_with_retry_after_and_works_after(
    faulty: Faulty,
) -> None:
    platform = faulty.platform
    merchant, key = await platform.onboard()
    invoice = await platform.http.post("/v1/invoices", json=invoice_body(), headers=bearer(key))
    assert invoice.status_code == 201, invoice.text
    invoice_id = invoice.json()["id"]
    requests = [
        ("POST", "/v1/invoices", bearer(key), invoice_body()),  # the API key is verified first
        ("GET", f"/v1/invoices/{invoice_id}", bearer(key), None),
        ("GET", f"/v1/merchants/{merchant['id']}", platform.operator, None),
        ("GET", "/v1/customers", bearer(key), None),
        ("GET", f"/v1/checkout/{invoice_id}", {}, None),
    ]
    await asyncio.to_thread(faulty.servers.stop_server, "postgres")
    try:
        for method, path, headers, body in requests:
            response = await platform.http.request(method, path, json=body, headers=headers)
            assert response.status_code == 503, (path, response.status_code, response.text)
            error = response.json()["error"]
            assert error["code"] == "unavailable" and error["request_id"], path
            assert int(response.headers["retry-after"]) > 0, path
    finally:
        await asyncio.to_thread(faulty.servers.start_server, "postgres")

    async def all_succeed() -> bool:
        for method, path, headers, body in requests:
            response = await platform.http.request(method, path, json=body, headers=headers)
            if response.status_code >= 300:
                return False
        return True

    await poll(all_succeed, timeout=30, what="every request to succeed once PostgreSQL is back")


async def test_an_unexpected_error_in_a_servicer_is_500_internal_logged_with_its_request_id(
    faulty: Faulty, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    platform = faulty.platform
    merchant, _ = await platform.onboard()

    async def bug(self: MerchantApp, request: object) -> object:
        raise KeyError("settings")

    monkeypatch.setattr(MerchantApp, "get_merchant", bug)
    with caplog.at_level(logging.ERROR, logger="checkout.grpc"):
        response = await platform.http.get(
            f"/v1/merchants/{merchant['id']}", headers={**platform.operator, "X-Request-Id": "req-bug-1"}
        )
    assert response.status_code == 500
    assert response.json()["error"] == {
        "code": "internal",
        "message": "internal error",
        "details": [],
        "request_id": "req-bug-1",
    }
    [logged] = [r for r in caplog.records if r.name == "checkout.grpc" and "req-bug-1" in r.getMessage()]
    assert logged.exc_info is not None and logged.exc_info[0] is KeyError
