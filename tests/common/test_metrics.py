"""A service's Prometheus metrics follow what it did: the RPCs it answered and how long they
took, its SQL by statement kind, its pools, partitions, shards, relay, consumers and cache."""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.samples import Sample

from libs.common import metrics
from libs.common.config import Config
from tests.common.support import poll
from tests.e2e.test_checkout_flow import bearer, invoice_body
from tests.platform import platform


def samples(metric: str, **labels: str) -> list[Sample]:
    """This process's samples named `metric` (a gauge, or a histogram's `_count`) with `labels`."""
    return [
        s
        for f in REGISTRY.collect()
        for s in f.samples
        if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def value(metric: str, **labels: str) -> float:
    return sum(s.value for s in samples(metric, **labels))


async def test_service_metrics_follow_rpcs_queries_pools_partitions_relay_and_cache(config: Config) -> None:
    async with platform(config) as p:
        rpc_before = value("checkout_grpc_server_handling_seconds_count", method="CreateInvoice", code="OK")
        inserts_before = value("checkout_db_query_duration_seconds_count", service="invoice", kind="insert")
        applied_before = value("checkout_projection_lag_seconds_count", service="analytics")
        _, key = await p.onboard()
        created = await p.http.post("/v1/invoices", json=invoice_body(), headers=bearer(key))
        assert created.status_code == 201, created.text
        invoice_id = created.json()["id"]
        assert (await p.http.get(f"/v1/invoices/{invoice_id}", headers=bearer(key))).status_code == 200
        # An id of the invoice's shard that does not exist: the service answers NOT_FOUND.
        missing = invoice_id[:-4] + ("0000" if not invoice_id.endswith("0000") else "0001")
        assert (await p.http.get(f"/v1/invoices/{missing}", headers=bearer(key))).status_code == 404
        monitor = p.runtimes["invoice"].monitor
        await monitor.refresh()

        assert (
            value("checkout_grpc_server_handling_seconds_count", method="CreateInvoice", code="OK")
            == rpc_before + 1
        )
        assert value("checkout_grpc_server_handling_seconds_count", method="VerifyApiKey", code="OK") >= 1
        assert (
            value("checkout_grpc_server_handling_seconds_count", method="GetInvoice", code="NOT_FOUND") >= 1
        )
        assert (
            value("checkout_db_query_duration_seconds_count", service="invoice", kind="insert")
            > inserts_before
        )
        assert value("checkout_cache_lookups_total", family="invoice") >= 1  # the first read asked Redis
        shards = [str(s) for s in p.runtimes["invoice"].shards]
        for shard in shards:
            pool = {
                s.labels["state"]: s.value
                for s in samples("checkout_db_pool_connections", service="invoice", shard=shard)
            }
            assert (
                set(pool) == {"open", "in_use", "idle", "max"}
                and pool["in_use"] == pool["open"] - pool["idle"]
            )
            assert pool["max"] == config.pool_max_size
            assert samples("checkout_relay_lag_seconds", service="invoice", shard=shard)
            assert value("checkout_dead_letters", service="invoice", shard=shard) == 0
        partitions = samples("checkout_partition_bytes", service="invoice")
        assert partitions and all(s.value > 0 for s in partitions)  # an empty partition has pages too
        assert {s.labels["shard"] for s in samples("checkout_shard_rows", service="invoice")} == set(shards)
        ratio = value("checkout_shard_balance_ratio", service="invoice")
        assert 0 <= ratio <= 1
        # The analytics projection applied invoice.created (and merchant.created): each one's lag,
        # from its commit in the invoice service to the read model's, is timed per durable.
        await poll(
            lambda: value("checkout_projection_lag_seconds_count", service="analytics") >= applied_before + 2,
            what="the analytics projection to apply the invoice's events",
        )
        lags = samples("checkout_projection_lag_seconds_sum", service="analytics")
        assert lags and all(0 <= s.value < 60 for s in lags)
        durables = {c.durable for c in p.runtimes["invoice"].consumers}
        assert {
            s.labels["consumer"] for s in samples("checkout_projection_pending_messages", service="invoice")
        } >= durables


def test_shard_balance_ratio_is_the_seed_size_difference() -> None:
    assert metrics.balance_ratio([100, 100]) == 0
    assert metrics.balance_ratio([100, 70]) == 0.3
    assert metrics.balance_ratio([0, 0]) == 0 and metrics.balance_ratio([5]) == 0


def test_statement_kind_names_the_statement_never_its_text() -> None:
    assert metrics.statement_kind("  SELECT * FROM invoices WHERE id = $1") == "select"
    assert metrics.statement_kind("(SELECT 1) UNION (SELECT 2)") == "select"
    assert metrics.statement_kind("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x") == "with"
    assert metrics.statement_kind("secret-looking text") == "other"
