"""Under the launcher `make up` uses, every service serves its Prometheus metrics on its own port
with the seed's families, and the gateway's operator view merges them all."""

from __future__ import annotations

import uuid

import httpx
from prometheus_client.parser import text_string_to_metric_families

from libs.common import metrics
from libs.common.config import SERVICES
from tests.e2e.test_checkout_flow import bearer, invoice_body, onboard
from tools.devstack import Stack

# Families each service fills in from its start (its pools, partitions, relay, shards).
LEVELS = (
    "checkout_db_pool_connections",
    "checkout_partition_rows",
    "checkout_partition_bytes",
    "checkout_shard_rows",
    "checkout_shard_balance_ratio",
    "checkout_relay_lag_events",
    "checkout_relay_lag_seconds",
    "checkout_dead_letters",
)


def sampled(text: str) -> dict[str, list[dict[str, str]]]:
    """Sample name -> the label sets it has (a family with no samples yet maps to [])."""
    found: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        found.setdefault(family.name, [])
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample.labels)
    return found


async def test_every_service_serves_the_seed_families_on_its_own_port_and_the_gateway_merges_them(
    stack: Stack, http: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    _, key = await onboard(http, operator, f"metrics-{uuid.uuid4().hex[:6]}@shop.test")
    created = await http.post("/v1/invoices", json=invoice_body(), headers=bearer(key))
    assert created.status_code == 201, created.text

    async with httpx.AsyncClient(timeout=10) as client:
        served = {}
        for service in SERVICES:
            response = await client.get(stack.metrics_url(service))
            assert response.status_code == 200, service
            served[service] = sampled(response.text)
    for service, found in served.items():
        for family in LEVELS:
            assert any(labels.get("service") == service for labels in found.get(family, [])), (
                service,
                family,
            )
        assert any(
            labels.get("service") == service for labels in found["checkout_db_query_duration_seconds_count"]
        )
        # Every family the code declares is exported, with or without samples yet.
        for family in (*metrics.GAUGES, "checkout_webhook_attempts", "checkout_cache_lookups"):
            assert family in found, (service, family)
    rpcs = served["invoice"]["checkout_grpc_server_handling_seconds_count"]
    assert {"service": "checkout.invoice.v1.InvoiceService", "method": "CreateInvoice", "code": "OK"} in rpcs
    assert any(
        labels["method"] == "VerifyApiKey"
        for labels in served["merchant"]["checkout_grpc_server_handling_seconds_count"]
    )
    assert served["invoice"]["checkout_projection_pending_messages"]
    assert any(
        labels["network"] == "ethereum" for labels in served["invoice"]["checkout_watcher_head_lag_blocks"]
    )

    view = await http.get("/v1/admin/metrics", headers=operator)
    assert view.status_code == 200 and view.headers["content-type"].startswith("text/plain")
    merged = sampled(view.text)
    up = [line for line in view.text.splitlines() if line.startswith("checkout_metrics_target_up{")]
    assert {labels["checkout_service"] for labels in merged["checkout_metrics_target_up"]} == {
        "gateway",
        *SERVICES,
    }
    assert len(up) == 1 + len(SERVICES) and all(line.endswith(" 1.0") for line in up), up
    assert "gateway_http_request_duration_seconds_count" in merged
    assert {labels["checkout_service"] for labels in merged["checkout_db_pool_connections"]} == set(SERVICES)
    assert (await http.get("/v1/admin/metrics", headers=bearer(key))).status_code == 403
    assert (await http.get("/v1/admin/metrics")).status_code == 401
