"""Benchmarks, written as JSON to bench-results/ (a measurement, not a pass/fail test).

- event appends per second per shard: concurrent writers appending one-event streams through
  the real event store (stream head guard, JSONB, NOTIFY) on one shard;
- invoice point lookups through the gateway: p50/p99 of `GET /v1/invoices/{id}` over HTTP against
  the whole stack (service processes, Postgres, Redis cache), and of the uncached payer view;
- payment detection latency: a signed ETH transfer on a local ganache (instamine), from the
  moment its receipt exists (the block is mined) until the payer's view over HTTP says `paid`,
  with the watcher polling as `make up` configures it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import statistics
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from checkout.merchant.v1 import events_pb2

from libs.common import ids
from libs.common.config import SERVICES, Config
from libs.common.db import ShardPools, migrate_shard, migrations_for
from libs.common.devservers import DevServers, Servers, free_port
from libs.common.eventstore import EventStore
from libs.common.evm_rpc import EvmRpc
from libs.common.partitions import PartitionedTable, ensure_partitions
from tools import bench_http, bench_replicas
from tools.devchain import tx
from tools.devchain.accounts import dev_accounts
from tools.devchain.chain import CHAIN_ID, DevChain, networks_json
from tools.devchain.install import ensure_installed
from tools.devstack import DEMO_ETHEREUM_XPUB, Stack

ROOT = Path(__file__).resolve().parent.parent
MAKE_UP_POLL_SECONDS = 1.0  # the watcher's poll interval under `make up` (tools/devchain/stack.py)


async def _deploy(chain: DevChain) -> str:
    async with EvmRpc(chain.rpc_url) as rpc:
        return await tx.setup_token(rpc, dev_accounts())


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def bench_appends(servers: Servers, writers: int, per_writer: int) -> dict[str, Any]:
    config = Config(database_url=servers.database_url, database_prefix=f"bench_{uuid.uuid4().hex[:8]}",
                    pool_max_size=writers, pool_min_size=writers)  # fmt: skip
    with tempfile.TemporaryDirectory() as empty:
        await migrate_shard(config.shard_dsn(0), "benchstore", migrations_for(Path(empty)))
    pools = ShardPools(config, "benchstore")
    await pools.open([0])
    pool = pools[0]
    async with pool.acquire() as conn:
        await ensure_partitions(conn, PartitionedTable("events", "month"), ahead=1)
    store = EventStore("benchstore_events")
    event = events_pb2.MerchantCreated(business_name="bench", contact_email="bench@example.com")

    async def writer(n: int) -> None:
        for _ in range(per_writer):
            async with pool.acquire() as conn, conn.transaction():
                await store.append(conn, aggregate_id=ids.new_id(n), aggregate_type="Bench",
                                   expected_version=0, new_events=[event])  # fmt: skip

    started = time.perf_counter()
    await asyncio.gather(*(writer(n) for n in range(writers)))
    elapsed = time.perf_counter() - started
    await pools.close()
    total = writers * per_writer
    return {"events": total, "writers": writers, "seconds": round(elapsed, 3),
            "appends_per_second_per_shard": round(total / elapsed, 1)}  # fmt: skip


async def bench_lookups(stack: Stack, invoices: int, lookups: int) -> dict[str, Any]:
    operator = {"Authorization": f"Bearer {stack.admin_token}"}
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:
        merchant = (await http.post("/v1/merchants", headers=operator, json={
            "business_name": "Bench", "contact_email": f"bench-{uuid.uuid4().hex[:6]}@example.com",
            "wallets": {"ethereum": DEMO_ETHEREUM_XPUB}})).json()  # fmt: skip
        key = (await http.post(f"/v1/merchants/{merchant['id']}/api-keys", headers=operator,
                               json={"name": "bench"})).json()["key"]  # fmt: skip
        auth = {"Authorization": f"Bearer {key}"}
        body = {"title": "Bench", "items": [{"name": "x", "quantity": "1", "unit_price": "10.00"}],
                "currency": "USD", "crypto_currency": "ETH"}  # fmt: skip
        created = [
            (await http.post("/v1/invoices", headers=auth, json=body)).json()["id"] for _ in range(invoices)
        ]

        async def measure(path_of: Any, headers: dict[str, str]) -> dict[str, float]:
            samples = []
            for n in range(lookups):
                started = time.perf_counter()
                response = await http.get(path_of(created[n % len(created)]), headers=headers)
                samples.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.text
            return {"p50_ms": round(percentile(samples, 50), 2), "p99_ms": round(percentile(samples, 99), 2),
                    "mean_ms": round(statistics.fmean(samples), 2), "requests": lookups}  # fmt: skip

        return {
            "invoice_get_authenticated": await measure(lambda i: f"/v1/invoices/{i}", auth),
            "checkout_view_public": await measure(lambda i: f"/v1/checkout/{i}", {}),
        }


async def bench_detection(stack: Stack, chain: DevChain, token: str, payments: int) -> dict[str, Any]:
    operator = {"Authorization": f"Bearer {stack.admin_token}"}
    samples = []
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http, EvmRpc(chain.rpc_url) as rpc:
        merchant = (await http.post("/v1/merchants", headers=operator, json={
            "business_name": "Bench", "contact_email": f"pay-{uuid.uuid4().hex[:6]}@example.com",
            "wallets": {"ethereum": DEMO_ETHEREUM_XPUB}})).json()  # fmt: skip
        key = (await http.post(f"/v1/merchants/{merchant['id']}/api-keys", headers=operator,
                               json={"name": "bench"})).json()["key"]  # fmt: skip
        auth = {"Authorization": f"Bearer {key}"}
        body = {"title": "Bench", "items": [{"name": "x", "quantity": "1", "unit_price": "10.00"}],
                "currency": "USD", "crypto_currency": "ETH"}  # fmt: skip
        payer = dev_accounts()[1]
        for _ in range(payments):
            invoice = (await http.post("/v1/invoices", headers=auth, json=body)).json()
            # Pay at a random point of the watcher's poll cycle, or every sample lands in the same phase.
            await asyncio.sleep(random.uniform(0, MAKE_UP_POLL_SECONDS))
            wei = int(Decimal(invoice["crypto_amount"]).scaleb(18))
            await tx.wait_receipt(
                rpc, await tx.send_eth(rpc, payer.private_key, invoice["payment_address"], wei)
            )
            mined = time.perf_counter()
            while (await http.get(f"/v1/checkout/{invoice['id']}")).json()["status"] != "paid":
                if time.perf_counter() - mined > 30:
                    raise RuntimeError(f"invoice {invoice['id']} was not paid within 30 s")
                await asyncio.sleep(0.01)
            samples.append((time.perf_counter() - mined) * 1000)
    return {"payments": payments, "watcher_poll_seconds": MAKE_UP_POLL_SECONDS,
            "p50_ms": round(percentile(samples, 50), 1), "p95_ms": round(percentile(samples, 95), 1),
            "max_ms": round(max(samples), 1), "mean_ms": round(statistics.fmean(samples), 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.bench")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--appends", type=int, default=250, help="appends per writer")
    parser.add_argument("--lookups", type=int, default=1000)
    parser.add_argument("--payments", type=int, default=20, help="payments for the detection latency")
    parser.add_argument("--out", default=str(ROOT / "bench-results" / "bench.json"))
    args = parser.parse_args()
    ensure_installed()
    with (
        tempfile.TemporaryDirectory() as tmp,
        DevServers(Path(tmp) / "servers") as servers,
        DevChain() as chain,
    ):
        appends = asyncio.run(bench_appends(servers, args.writers, args.appends))
        token = asyncio.run(_deploy(chain))
        env = {"CHECKOUT_NETWORKS": networks_json(chain.rpc_url, token, poll_seconds=MAKE_UP_POLL_SECONDS),
               "CHECKOUT_ETHEREUM_CHAIN_ID": str(CHAIN_ID),
               # A thousand lookups a minute per key: the free plan's limit must not be what is timed.
               "CHECKOUT_RATE_LIMIT_FREE": "1000000/minute", "CHECKOUT_RATE_LIMIT_CHECKOUT": "1000000/minute"}  # fmt: skip
        stack = Stack(servers, http_port=free_port(), grpc_ports={s: free_port() for s in SERVICES},
                      admin_token=uuid.uuid4().hex, log_dir=Path(tmp) / "logs", extra_env=env)  # fmt: skip
        stack.start()
        try:
            lookups = asyncio.run(bench_lookups(stack, invoices=50, lookups=args.lookups))
            detection = asyncio.run(bench_detection(stack, chain, token, args.payments))
        finally:
            stack.stop()
    result = {
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "event_store": appends,
        "gateway_lookups": lookups,
        "payment_detection": detection,
    }
    result["gateway_http"] = bench_http.run()  # the gateway against a bare Starlette app (issue 10)
    result["replicas"] = bench_replicas.run()  # its own primary and standby (issue 14)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
