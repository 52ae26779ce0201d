"""Benchmarks against the whole stack (`tools.devstack.Stack`: every service in its own process):

- invoice creation at the gRPC level: `CreateInvoice` from 16 concurrent callers across 16
  merchants, and from 16 callers on one merchant, p50/p99, beside the same server's gRPC health
  check from 16 callers (the transport and server with no work, as the peer);
- projection lag: `invoice.created` events appended to the invoice service's event store at a
  steady rate (as its own commands would), from the commit until the row is visible in another
  service's read model (the customer service's `payment_history`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from typing import Any

import grpc
import httpx
import nats
from checkout.invoice.v1 import events_pb2 as invoice_events
from checkout.invoice.v1 import invoice_pb2, invoice_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nats.aio.msg import Msg

from libs.common import ids
from libs.common.config import Config
from libs.common.db import ShardPools
from libs.common.eventstore import EventStore
from libs.common.messaging import subject
from libs.common.protoconv import timestamp
from libs.common.shardmap import slot_for_email
from services.customer.projections import customer_id_for
from tools.bench_support import interleaved, latency_summary, throughput
from tools.devservers import Servers
from tools.devstack import Stack

DEMO_MNEMONIC = "abandon " * 11 + "about"

CALLER = (("x-actor", "api_key:bench"), ("x-request-id", "bench"))


def account_xpub(account: int) -> str:
    """Account `account` of the demo mnemonic (account 0 is DEMO_ETHEREUM_XPUB): merchants that
    share no key share no addresses, so the other benchmarks' payments find their own invoice."""
    from bip_utils import Bip39SeedGenerator, Bip44, Bip44Coins

    seed = Bip39SeedGenerator(DEMO_MNEMONIC).Generate()
    key = Bip44.FromSeed(seed, Bip44Coins.ETHEREUM).Purpose().Coin().Account(account).PublicKey()
    return str(key.ToExtended())


async def _merchants(stack: Stack, count: int) -> list[str]:
    operator = {"Authorization": f"Bearer {stack.admin_token}"}
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:
        made = []
        for n in range(count):
            response = await http.post(
                "/v1/merchants",
                headers=operator,
                json={
                    "business_name": f"Bench {n}",
                    "contact_email": f"bench-{n}-{uuid.uuid4().hex[:6]}@example.com",
                    "wallets": {"ethereum": account_xpub(n + 1)},
                },
            )
            response.raise_for_status()
            made.append(response.json()["id"])
        return made


def _request(merchant_id: str, n: int) -> invoice_pb2.CreateInvoiceRequest:
    return invoice_pb2.CreateInvoiceRequest(
        merchant_id=merchant_id,
        title=f"Bench order {n}",
        items=[invoice_pb2.LineItem(name="Beans 1kg", quantity="2", unit_price="12.50")],
        currency="USD",
        crypto_currency="ETH",
        customer_email=f"payer-{n % 50}@example.com",
    )


async def bench_creates(stack: Stack, callers: int, per_caller: int, rounds: int) -> dict[str, Any]:
    merchants = await _merchants(stack, callers)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{stack.grpc_ports['invoice']}")
    invoices = invoice_pb2_grpc.InvoiceServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    total = callers * per_caller
    latencies: dict[str, list[float]] = {"across_merchants": [], "one_merchant": [], "health_check": []}

    async def timed(kind: str, call: Any) -> None:
        started = time.perf_counter()
        await call
        latencies[kind].append((time.perf_counter() - started) * 1000)

    def creates(kind: str, merchant_of: Any) -> Any:
        async def caller(c: int) -> None:
            for n in range(per_caller):
                await timed(
                    kind, invoices.CreateInvoice(_request(merchant_of(c), n), metadata=CALLER, timeout=30)
                )

        return lambda: throughput(total, lambda: asyncio.gather(*(caller(c) for c in range(callers))))

    async def health_checks() -> float:
        async def caller() -> None:
            for _ in range(per_caller):
                await timed("health_check", health.Check(health_pb2.HealthCheckRequest(), timeout=30))

        return await throughput(total, lambda: asyncio.gather(*(caller() for _ in range(callers))))

    # Warm up: connections, prepared statements, the merchants' profiles.
    await asyncio.gather(*(invoices.CreateInvoice(_request(m, 0), metadata=CALLER) for m in merchants))
    try:
        across = await interleaved(
            creates("across_merchants", lambda c: merchants[c]), {"health_check": health_checks}, rounds
        )
        one = await interleaved(creates("one_merchant", lambda c: merchants[0]), {}, rounds)
    finally:
        await channel.close(grace=None)
    return {
        "callers": callers,
        "calls_per_round": total,
        "across_merchants": {**across, "latency": latency_summary(latencies["across_merchants"])},
        "one_merchant": {**one, "latency": latency_summary(latencies["one_merchant"])},
        "health_check_latency": latency_summary(latencies["health_check"]),
    }


def _merchant_on_shard(config: Config, shard: int) -> uuid.UUID:
    shard_map = config.shard_map()
    for n in range(10_000):
        email = f"lag-{n}-{uuid.uuid4().hex[:6]}@example.com"
        if shard_map.shard_for_slot(slot_for_email(email)) == shard:
            return ids.new_merchant_id(email)
    raise RuntimeError(f"no merchant id found for shard {shard}")


async def bench_projection_lag(
    servers: Servers, shard_count: int, rate: float, seconds: float, poll_ms: float = 5.0
) -> dict[str, Any]:
    config = Config(
        database_url=servers.database_url, shard_count=shard_count, pool_min_size=2, pool_max_size=16
    )
    shard = 0
    invoice_pools, customer_pools = ShardPools(config, "invoice"), ShardPools(config, "customer")
    await invoice_pools.open([shard])
    await customer_pools.open([shard])
    store = EventStore("invoice_events")  # the invoice service's store; its relay runs there
    merchant = _merchant_on_shard(config, shard)
    email = "lag@example.com"
    customer = customer_id_for(merchant, email)
    committed: dict[uuid.UUID, float] = {}
    seen: dict[uuid.UUID, float] = {}
    pending: set[uuid.UUID] = set()
    writes: set[asyncio.Task[None]] = set()

    async def append(n: int) -> None:
        invoice_id = ids.new_id(ids.slot_of(merchant))
        event = invoice_events.InvoiceCreated(
            invoice_id=str(invoice_id), merchant_id=str(merchant), customer_id=str(customer),
            customer_email=email, title=f"Lag {n}", subtotal="10.00", tax="0", total="10.00",
            currency="USD", crypto_currency="ETH", crypto_amount="0.004166666666666667",
            network="ethereum", created_at=timestamp(dt.datetime.now(dt.UTC)),
        )  # fmt: skip
        async with invoice_pools[shard].acquire() as conn, conn.transaction():
            await store.append(
                conn,
                aggregate_id=invoice_id,
                aggregate_type="Invoice",
                expected_version=0,
                new_events=[event],
            )
        committed[invoice_id] = time.perf_counter()
        pending.add(invoice_id)

    async def watch(stop: asyncio.Event) -> None:
        pool = customer_pools[shard]
        while not (stop.is_set() and not pending):
            if pending:
                rows = await pool.fetch(
                    "SELECT invoice_id FROM payment_history WHERE customer_id = $1 AND invoice_id = ANY($2::uuid[])",
                    customer,
                    list(pending),
                )
                now = time.perf_counter()
                for row in rows:
                    seen[row["invoice_id"]] = now
                    pending.discard(row["invoice_id"])
            await asyncio.sleep(poll_ms / 1000)

    # Where the time goes: the relay's part ends when the event reaches NATS.
    on_stream: dict[uuid.UUID, float] = {}
    nc = await nats.connect(servers.nats_url)

    async def arrived(msg: Msg) -> None:
        on_stream[uuid.UUID(json.loads(msg.data)["aggregate_id"])] = time.perf_counter()

    await nc.subscribe(subject(config.subject_prefix, shard, "invoice.created"), cb=arrived)
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch(stop))
    count = int(rate * seconds)
    started = time.perf_counter()
    try:
        for n in range(count):
            # A steady rate: each write starts at its slot in time, whatever the others do.
            delay = started + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(append(n))
            writes.add(task)
            task.add_done_callback(writes.discard)
        await asyncio.gather(*writes)
        offered = time.perf_counter() - started
        stop.set()
        async with asyncio.timeout(60):
            await watcher
    finally:
        watcher.cancel()
        await nc.drain()
        await invoice_pools.close()
        await customer_pools.close()
    lags = [(seen[i] - committed[i]) * 1000 for i in committed if i in seen]
    relayed = [(on_stream[i] - committed[i]) * 1000 for i in committed if i in on_stream]
    return {
        "target_events_per_second": rate,
        "achieved_events_per_second": round(count / offered, 1),
        "events": count,
        "seen": len(lags),
        "poll_interval_ms": poll_ms,
        "lag": latency_summary(lags),
        "of_which_commit_to_nats": latency_summary(relayed) if relayed else None,
    }
