"""Benchmarks, written as JSON to bench-results/ (a measurement, not a pass/fail test).

Each throughput is a ratio to a peer run by the bench itself on the same servers in interleaved
rounds (tools/bench_support.py), since the machine is shared and absolute figures drift:

- the event pipeline (tools/bench_pipeline.py): event append at concurrency 8 vs a raw INSERT of
  the same row and vs the `eventsourcing` library's PostgreSQL recorder; the relay vs nats-py
  publishing the same envelopes with a window of 256 (with each side's CPU per event);
- the slot move (tools/bench_slotmove.py): the mover's bulk copy in rows/s vs a binary COPY of the
  same rows, and the fence time while a writer appends to the moving slots;
- the stack (tools/bench_stack.py): CreateInvoice over gRPC from 16 callers across 16 merchants
  and on one merchant (beside the server's health check), and projection lag (commit -> row in
  another service's read model) at a steady 500 events/s;
- invoice point lookups through the gateway: p50/p99 of `GET /v1/invoices/{id}` over HTTP against
  the whole stack (service processes, Postgres, Redis cache), and of the uncached payer view;
- payment detection latency: a signed ETH transfer on a local ganache (instamine), from the
  moment its receipt exists (the block is mined) until the payer's view over HTTP says `paid`,
  with the watcher polling as `make up` configures it;
- page latency (tools/bench_pages.py): the same, until the payer's hosted page says `paid` in a
  real browser and over its event stream, next to a 10 ms poll of the invoice service as the peer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from libs.common.evm_rpc import EvmRpc
from tools import bench_http, bench_replicas, bench_slotmove
from tools.bench_pages import bench_page_latency
from tools.bench_pipeline import bench_appends, bench_relay
from tools.bench_stack import account_xpub, bench_creates, bench_projection_lag
from tools.bench_support import percentile
from tools.devchain import tx
from tools.devchain.accounts import dev_accounts
from tools.devchain.chain import CHAIN_ID, DevChain, networks_json
from tools.devchain.install import ensure_installed
from tools.devservers import DevServers, Servers
from tools.devstack import DEMO_ETHEREUM_XPUB, Stack, free_stack_ports

ROOT = Path(__file__).resolve().parent.parent
DETECTION_ACCOUNT = 99
MAKE_UP_POLL_SECONDS = 1.0  # the watcher's poll interval under `make up` (tools/devchain/stack.py)


async def _deploy(chain: DevChain) -> str:
    async with EvmRpc(chain.rpc_url) as rpc:
        return await tx.setup_token(rpc, dev_accounts())


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
            # A key of its own: an address shared with the lookups' merchant may be credited there.
            "wallets": {"ethereum": account_xpub(DETECTION_ACCOUNT)}})).json()  # fmt: skip
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


def _start_stack(servers: Servers, logs: Path, env: dict[str, str]) -> Stack:
    """The stack on free ports; a port taken by another process in the meantime is retried."""
    for attempt in range(3):
        http_port, grpc_ports = free_stack_ports()
        stack = Stack(servers, http_port=http_port, grpc_ports=grpc_ports,
                      admin_token=uuid.uuid4().hex, log_dir=logs / str(attempt), extra_env=env)  # fmt: skip
        try:
            stack.start()
        except RuntimeError as error:
            if "bind" not in str(error) or attempt == 2:
                raise
            continue
        return stack
    raise AssertionError("unreachable")


STACK_SECTIONS = (
    "invoice_create_grpc",
    "gateway_lookups",
    "payment_detection",
    "page_latency",
    "projection_lag",
)


def _stack_sections(
    args: argparse.Namespace,
    want: Callable[[str], bool],
    record: Callable[[str, dict[str, Any]], None],
    servers: Servers,
    chain: DevChain,
    tmp: Path,
) -> None:
    token = asyncio.run(_deploy(chain))
    env = {"CHECKOUT_NETWORKS": networks_json(chain.rpc_url, token, poll_seconds=MAKE_UP_POLL_SECONDS),
           "CHECKOUT_ETHEREUM_CHAIN_ID": str(CHAIN_ID),
           # The lookups and the 10 ms polls come from one address, far above a payer's rate.
           **bench_http.UNLIMITED}  # fmt: skip
    stack = _start_stack(servers, tmp / "logs", env)
    try:
        if want("invoice_create_grpc"):
            record("invoice_create_grpc", asyncio.run(bench_creates(stack, 16, args.creates, 3)))
        if want("gateway_lookups"):
            record("gateway_lookups", asyncio.run(bench_lookups(stack, invoices=50, lookups=args.lookups)))
        if want("payment_detection"):
            record("payment_detection", asyncio.run(bench_detection(stack, chain, token, args.payments)))
        if want("page_latency"):
            record("page_latency", asyncio.run(bench_page_latency(stack, chain.rpc_url, args.payments)))
        # Last: the consumers it leaves catching up would slow whatever ran after it.
        if want("projection_lag"):
            lag = bench_projection_lag(servers, stack.shard_count, args.lag_rate, args.lag_seconds)
            record("projection_lag", asyncio.run(lag))
    finally:
        stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.bench")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--appends", type=int, default=50, help="appends per writer per round")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds per comparison")
    parser.add_argument("--relay-events", type=int, default=5000, help="events per relay round")
    parser.add_argument("--creates", type=int, default=40, help="CreateInvoice calls per caller per round")
    parser.add_argument("--lag-rate", type=float, default=500.0, help="events per second for the lag")
    parser.add_argument("--lag-seconds", type=float, default=10.0)
    parser.add_argument("--lookups", type=int, default=1000)
    parser.add_argument("--payments", type=int, default=20, help="payments for the detection latency")
    parser.add_argument(
        "--move-invoices", type=int, default=20000, help="invoices on the shard a slot move halves"
    )
    parser.add_argument("--only", nargs="*", default=None, help="run only these sections (keys of the JSON)")
    parser.add_argument("--out", default=str(ROOT / "bench-results" / "bench.json"))
    args = parser.parse_args()
    wanted = set(args.only) if args.only else None

    def want(section: str) -> bool:
        return wanted is None or section in wanted

    if any(want(section) for section in STACK_SECTIONS):
        ensure_installed()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count()}}

    def record(section: str, value: dict[str, Any]) -> None:
        # Written after every section, so a failure late in the run keeps what was measured.
        result[section] = value
        out.write_text(json.dumps(result, indent=2) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        dev = DevServers(Path(tmp) / "servers")
        with dev as servers:
            if want("event_append"):
                appends = bench_appends(servers, args.writers, args.appends, args.rounds)
                record("event_append", asyncio.run(appends))
            if want("relay"):
                relay = bench_relay(servers, args.relay_events, args.rounds, 256, server_pids=dev.pids)
                record("relay", asyncio.run(relay))
            if want("slot_move"):
                record("slot_move", asyncio.run(bench_slotmove.run(servers, args.move_invoices, 3)))
            # The chain and the stack only for the sections that use them (the ones above share
            # the machine's two cores with neither).
            if any(want(section) for section in STACK_SECTIONS):
                with DevChain() as chain:
                    _stack_sections(args, want, record, servers, chain, Path(tmp))
    if want("gateway_http"):
        record("gateway_http", bench_http.run())  # the gateway against a bare Starlette app (issue 10)
    if want("replicas"):
        record("replicas", bench_replicas.run())  # its own primary and standby (issue 14)
    print(json.dumps(result, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
