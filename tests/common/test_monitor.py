"""A service reports pool use, relay lag, projection lag and partition sizes for Prometheus."""

from __future__ import annotations

from prometheus_client import generate_latest

from libs.common import telemetry
from libs.common.config import Config
from services.invoice.service import SPEC
from tests.services import running


async def test_service_exports_pool_relay_projection_and_partition_metrics(config: Config) -> None:
    telemetry.setup("test")
    async with running(SPEC, config) as (runtime, _):
        await runtime.monitor.refresh()
        assert set(runtime.monitor.relay_lag) == set(runtime.shards)
        assert all(lag == 0 for lag in runtime.monitor.relay_lag.values())
        assert {c.durable for c in runtime.consumers} == set(runtime.monitor.consumer_pending)
        assert any(name.startswith("events_") for _, name in runtime.monitor.partition_rows)
        text = generate_latest().decode()
    for metric in (
        "checkout_db_pool_connections",
        "checkout_relay_lag_events",
        "checkout_projection_pending_messages",
        "checkout_partition_rows",
    ):
        assert metric in text, metric
