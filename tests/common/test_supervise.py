"""Supervised loops: a loop that fails is restarted with backoff, logged by name and counted, and a
service whose loop stays down reports NOT_SERVING until it runs again."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid

import asyncpg
import pytest
from checkout.merchant.v1 import merchant_pb2 as pb
from checkout.merchant.v1 import merchant_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.aio.client import Client as NatsClient
from prometheus_client import generate_latest

from libs.common import ids, telemetry
from libs.common.config import Config
from libs.common.supervise import Backoff, Supervisor
from services.merchant.service import SPEC
from tests.common.support import poll
from tests.services import running

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def restarts_metric(service: str, loop: str) -> float:
    for line in generate_latest().decode().splitlines():
        labels = (f'loop="{loop}"', f'service="{service}"')
        if line.startswith("checkout_loop_restarts_total{") and all(label in line for label in labels):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_a_loop_that_raises_is_restarted_logged_by_name_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    telemetry.setup("test")
    service = f"svc-{uuid.uuid4().hex[:6]}"
    supervisor = Supervisor(service, grace_seconds=60, backoff=Backoff(initial=0.01, cap=0.05))
    runs: list[int] = []
    steady = asyncio.Event()

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) <= 3:
            raise asyncpg.InterfaceError("cannot call Connection.fetch(): connection is closed")
        steady.set()
        await asyncio.Event().wait()

    supervisor.spawn("flaky-loop", flaky)
    try:
        await asyncio.wait_for(steady.wait(), timeout=10)
    finally:
        await supervisor.stop()
    assert len(runs) == 4
    assert supervisor.loops["flaky-loop"].restarts == 3
    assert restarts_metric(service, "flaky-loop") == 3
    failures = [r for r in caplog.records if r.name == "checkout.supervise" and r.levelno == logging.ERROR]
    assert len(failures) == 3 and all("flaky-loop" in r.getMessage() for r in failures)
    assert "InterfaceError" in failures[0].getMessage()


async def test_a_loop_that_returns_is_started_again() -> None:
    supervisor = Supervisor("svc", grace_seconds=60, backoff=Backoff(initial=0.01, cap=0.01))
    runs: list[int] = []

    async def once() -> None:
        runs.append(1)

    supervisor.spawn("one-shot", once)
    try:
        await poll(lambda: len(runs) >= 3, what="the returned loop to run again")
    finally:
        await supervisor.stop()
    assert supervisor.loops["one-shot"].restarts >= 2


async def test_a_loop_that_will_not_stop_is_left_behind_with_where_it_is_stuck(
    caplog: pytest.LogCaptureFixture,
) -> None:
    supervisor = Supervisor("svc", grace_seconds=60)
    stuck = asyncio.Event()

    async def wedged_release() -> None:
        # As a cleanup that awaits a connection a database restart left mid-operation would.
        while True:
            try:
                stuck.set()
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue

    async def wedged() -> None:
        await wedged_release()

    task = supervisor.spawn("wedged-loop", wedged)
    await poll(stuck.is_set, what="the loop to get stuck")
    with caplog.at_level(logging.ERROR, logger="checkout.supervise"):
        await asyncio.wait_for(supervisor.stop(patience=0.5), timeout=10)
    assert not task.done()
    (record,) = [r for r in caplog.records if "did not stop" in r.getMessage()]
    assert "wedged-loop" in record.getMessage() and "in wedged_release" in record.getMessage()
    task.get_coro().close()


def test_backoff_doubles_to_its_cap_with_jitter_below_each_step() -> None:
    backoff = Backoff(initial=1.0, cap=8.0)
    for failures, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0)]:
        delays = [backoff.delay(failures) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered, so replicas do not restart in lock step


async def test_a_loop_down_past_the_grace_period_is_unhealthy_until_it_runs_again() -> None:
    supervisor = Supervisor(
        "svc", grace_seconds=0.2, stable_seconds=0.2, backoff=Backoff(initial=0.01, cap=0.02)
    )
    broken = True

    async def loop() -> None:
        if broken:
            raise OSError("connection refused")
        await asyncio.Event().wait()

    supervisor.spawn("crash-looping", loop)
    try:
        await poll(lambda: not supervisor.healthy(), timeout=5, what="the loop to count as down")
        assert "crash-looping" in supervisor.down()
        broken = False
        await poll(supervisor.healthy, timeout=5, what="the loop to count as up again")
    finally:
        await supervisor.stop()


async def test_a_relay_pass_that_raises_interface_error_is_restarted_and_the_event_published(
    config: Config, nats_client: NatsClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a PostgreSQL restart the relay died on asyncpg.InterfaceError and nothing restarted
    it: its events were never published, and health said SERVING."""
    fast = dataclasses.replace(config, loop_grace_seconds=0.5, health_interval_seconds=0.1)
    async with running(SPEC, fast) as (runtime, channel):
        health = health_pb2_grpc.HealthStub(channel)
        await poll(lambda: _status_is(health, SERVING), timeout=10, what="the service to be serving at first")
        email = f"relay-{uuid.uuid4().hex[:6]}@shop.test"
        merchant_id = ids.new_merchant_id(email)
        relay = runtime.relays[runtime.shard_of(merchant_id)]
        real_passes = relay.publish_all  # what the relay's loop runs on each wake
        broken = True

        async def failing_passes() -> int:
            if broken:
                raise asyncpg.InterfaceError("cannot call Connection.fetch(): connection is closed")
            return await real_passes()

        monkeypatch.setattr(relay, "publish_all", failing_passes)
        stub = merchant_pb2_grpc.MerchantServiceStub(channel)
        await stub.CreateMerchant(
            pb.CreateMerchantRequest(merchant_id=str(merchant_id), business_name="Acme", contact_email=email)
        )
        await poll(lambda: _status_is(health, NOT_SERVING), timeout=10, what="NOT_SERVING while it is down")
        assert relay.published == 0

        broken = False
        js = nats_client.jetstream()
        await poll(lambda: relay.published >= 1, timeout=15, what="the restarted relay to publish")
        info = await js.stream_info(config.stream_name)
        assert info.state.messages >= 1
        await poll(lambda: _status_is(health, SERVING), timeout=10, what="SERVING once the relay runs again")
        assert runtime.supervisor.loops[f"relay-s{relay.shard}"].restarts >= 1


async def _status_is(health: health_pb2_grpc.HealthStub, status: int) -> bool:
    response = await health.Check(health_pb2.HealthCheckRequest(service=""))
    return bool(response.status == status)
