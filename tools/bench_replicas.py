"""Read replicas in `make bench`: point lookups from a streaming standby against the primary, and
the share of reads a replica serves under a mixed read/write load.

Two invoice-service runtimes run in this process on the same shard database: one reads the
primary only, its peer routes reads to a real hot standby (libs/common/replicas.py). Lookups
alternate between the two in rounds (the order flips every round), so a noisy neighbour on a
shared machine costs both the same and the ratio stays meaningful.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from checkout.invoice.v1 import invoice_pb2 as pb

from libs.common import ids
from libs.common.config import Config, with_database
from libs.common.eventstore import utcnow
from libs.common.replica_config import ANALYTICS, CUSTOMER, READ, ROLES
from libs.common.service import Runtime
from services.invoice import repository
from services.invoice.grpc_api import fingerprint, new_invoice
from services.invoice.service import SPEC, InvoiceBuilt
from tools.devservers import DevServers
from tools.devstack import DEMO_ETHEREUM_XPUB


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))], 3),
        "mean_ms": round(statistics.fmean(ordered), 3),
        "lookups": len(ordered),
    }


async def _timed(read: Callable[[], Awaitable[object]], n: int) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await read()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def _bench(config: Config, lookups: int, seconds: float) -> dict[str, Any]:
    primary_rt = Runtime(SPEC, dataclasses.replace(config, grpc_listen="127.0.0.1:0"))
    replica_rt = Runtime(SPEC, dataclasses.replace(config, grpc_listen="127.0.0.1:0", shard_replicas={
        0: {role: (config.shard_replicas[0]["read"][0],) for role in ROLES}}))  # fmt: skip
    await primary_rt.start()
    await replica_rt.start()
    try:
        merchant_id = ids.new_id(0)
        async with primary_rt.pools[0].acquire() as conn:
            await repository.upsert_merchant_profile(
                conn, merchant_id, wallets={"ethereum": DEMO_ETHEREUM_XPUB}, settings={}, at=utcnow()
            )
        app = InvoiceBuilt.of(replica_rt).app

        async def create() -> str:
            request = pb.CreateInvoiceRequest(
                merchant_id=str(merchant_id), title="Bench", currency="USD", crypto_currency="ETH",
                items=[pb.LineItem(name="x", quantity="1", unit_price="10.00")],
            )  # fmt: skip
            return (
                await app.create_invoice(request.merchant_id, new_invoice(request), fingerprint(request))
            ).id

        created = [uuid.UUID(await create()) for _ in range(50)]
        # Caught up and probed: the lookups below measure the replica, not the fallback.
        deadline = time.monotonic() + 30
        while not all(s.up and (s.lag_seconds or 1) < 0.05 for s in replica_rt.replicas.status(0)):
            if time.monotonic() > deadline:
                raise RuntimeError("the standby did not catch up within 30 s")
            await replica_rt.replicas.probe()

        def lookup(rt: Runtime) -> Callable[[], Awaitable[object]]:
            async def read() -> object:
                invoice_id = random.choice(created)
                return await rt.read(READ, invoice_id, lambda db: repository.invoice(db, invoice_id))

            return read

        samples: dict[str, list[float]] = {"replica": [], "primary": []}
        rounds = 20
        for n in range(rounds):
            order = [("replica", replica_rt), ("primary", primary_rt)]
            for name, rt in order if n % 2 else reversed(order):
                samples[name] += await _timed(lookup(rt), max(1, lookups // rounds))
        before = Counter(replica_rt.replicas.reads)
        replica, primary = _ms(samples["replica"]), _ms(samples["primary"])
        point = {
            "replica": replica,
            "primary": primary,
            "replica_over_primary_p50": round(replica["p50_ms"] / primary["p50_ms"], 3),
            "served_by_replica": sum(v for k, v in before.items() if k[2] == "replica"),
        }

        # Mixed load: writers creating invoices (WAL to replay) while readers read every role.
        stop = time.monotonic() + seconds
        lags: list[float] = []
        writes = 0

        async def writer() -> None:
            nonlocal writes
            while time.monotonic() < stop:
                created.append(uuid.UUID(await create()))
                writes += 1

        async def one_read(invoice_id: uuid.UUID, kind: float) -> object:
            if kind < 0.5:
                return await replica_rt.read(READ, invoice_id, lambda db: repository.invoice(db, invoice_id))
            if kind < 0.7:
                where = repository.InvoiceFilter(merchant_id)
                return await replica_rt.read(READ, merchant_id, lambda db: repository.invoices(db, where, 20))
            if kind < 0.9:
                return await replica_rt.read(
                    CUSTOMER, invoice_id, lambda db: repository.payments(db, invoice_id)
                )
            return await replica_rt.read_shard(ANALYTICS, 0, repository.count_invoices)

        async def reader() -> None:
            while time.monotonic() < stop:
                await one_read(random.choice(created), random.random())

        async def sample_lag() -> None:
            while time.monotonic() < stop:
                lags.extend(s.lag_seconds for s in replica_rt.replicas.status(0) if s.lag_seconds is not None)
                await asyncio.sleep(0.05)

        await asyncio.gather(*(writer() for _ in range(4)), *(reader() for _ in range(8)), sample_lag())
        mixed = Counter(replica_rt.replicas.reads) - before
        total = sum(mixed.values())
        by_replica = sum(v for k, v in mixed.items() if k[2] == "replica")
        reasons = Counter[str]()
        for (_, role, by, why), v in mixed.items():
            reasons[f"{role}:{by}:{why}"] += v
        return {
            "point_lookup": point,
            "mixed_load": {
                "seconds": seconds,
                "writers": 4,
                "readers": 8,
                "writes": writes,
                "reads": total,
                "served_by_replica_share": round(by_replica / total, 3) if total else None,
                "reads_by_role_served_reason": dict(sorted(reasons.items())),
                "replica_lag_seconds_p50": round(statistics.median(lags), 4) if lags else None,
                "replica_lag_seconds_max": round(max(lags), 4) if lags else None,
            },
        }
    finally:
        await replica_rt.stop()
        await primary_rt.stop()


def run(lookups: int = 2000, seconds: float = 10.0) -> dict[str, Any]:
    """The `replicas` section of bench.json (its own embedded primary, standby, NATS, Redis)."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        DevServers(Path(tmp) / "servers", replicas=1, embedded_postgres=True) as servers,
    ):
        tag = uuid.uuid4().hex[:8]
        config = Config(
            database_url=servers.database_url, database_prefix=f"bench_{tag}", shard_count=1,
            nats_url=servers.nats_url, redis_url=servers.redis_url, stream_name=f"BENCH_{tag.upper()}",
            subject_prefix=f"bench{tag}", fixed_rates="ETH-USD=2400.00", pool_min_size=1, pool_max_size=10,
            expiry_poll_seconds=3600, webhook_secret_keys=(),
        )  # fmt: skip
        database = urlsplit(config.shard_dsn(0)).path[1:]
        replica = with_database(servers.replica_urls[0], database)
        config = dataclasses.replace(config, shard_replicas={0: {"read": (replica,)}})
        return asyncio.run(_bench(config, lookups, seconds))


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=2))
