"""One run of the fault suite: the real stack (the launcher of `make up`, its dev chain, embedded
servers of its own) under load, its processes SIGKILLed and its servers restarted at random
points, then every check, one line of figures and a JSON report."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from libs.common.config import SERVICES, Config
from libs.common.evm_rpc import EvmRpc
from tools.devchain.accounts import dev_accounts
from tools.devchain.stack import StackChain, stack_chain
from tools.devservers import DATABASE_URL_ENV, NATS_URL_ENV, REDIS_URL_ENV, DevServers, free_port
from tools.devstack import Stack
from tools.faults import checks, ledger, load, rebuilds
from tools.faults.inject import Faults, inject, keep_running
from tools.faults.report import Report

log = logging.getLogger("checkout.faults")
ROOT = Path(__file__).resolve().parent.parent.parent
SHARDS = 2

# The stack as `make up` runs it, tuned to recover in seconds rather than production's minutes:
# a lost ack redelivered after 5 s, a failed webhook retried after 1 s.
TUNING = {
    "CHECKOUT_RELAY_POLL_SECONDS": "0.5",
    "CHECKOUT_DB_POOL_MIN": "1",
    "CHECKOUT_DB_POOL_MAX": "10",
    "CHECKOUT_CONSUMER_ACK_WAIT_SECONDS": "5",
    "CHECKOUT_CONSUMER_RETRY_SECONDS": "1",
    "CHECKOUT_LOOP_GRACE_SECONDS": "5",
    "CHECKOUT_LOOP_BACKOFF_MAX_SECONDS": "5",
    "CHECKOUT_HEALTH_INTERVAL_SECONDS": "1",
    "CHECKOUT_WEBHOOK_RETRY_BASE_SECONDS": "1",
    "CHECKOUT_WEBHOOK_RETRY_MAX_SECONDS": "5",
    "CHECKOUT_EXPIRY_POLL_SECONDS": "2",
}


@dataclass
class Options:
    merchants: int = 20
    invoices: int = 1000
    exact_payments: int = 110  # one transaction each
    partial_payments: int = 50  # a part, then the rest: two transactions each
    kill_rounds: int = 3  # SIGKILLs of each of the five processes
    server_restarts: int = 1  # restarts of each of PostgreSQL, NATS and Redis
    seed: int = 0  # 0: a random one (printed, to replay a run)
    settle_seconds: float = 240.0
    out: Path | None = ROOT / "bench-results" / "faults.json"
    data_dir: Path | None = None  # kept after the run when given (logs, databases, chain)

    @property
    def payments(self) -> int:
        return self.exact_payments + 2 * self.partial_payments


@contextlib.contextmanager
def _embedded_servers(data_dir: Path) -> Iterator[DevServers]:
    """Servers of the run's own, always embedded (the suite stops and starts them)."""
    saved = {
        name: os.environ.pop(name)
        for name in (DATABASE_URL_ENV, NATS_URL_ENV, REDIS_URL_ENV)
        if name in os.environ
    }
    try:
        servers = DevServers(data_dir / "servers")
        servers.start()
    finally:
        os.environ.update(saved)
    try:
        yield servers
    finally:
        servers.stop()


def run(options: Options) -> Report:
    seed = options.seed or random.SystemRandom().randint(1, 2**31)
    options = dataclasses.replace(options, seed=seed)
    log.info("fault suite, seed %d", seed)
    with contextlib.ExitStack() as exits:
        if options.data_dir is None:
            data_dir = Path(exits.enter_context(tempfile.TemporaryDirectory(prefix="checkout-faults-")))
        else:
            data_dir = options.data_dir
            data_dir.mkdir(parents=True, exist_ok=True)
        servers = exits.enter_context(_embedded_servers(data_dir))
        chain = exits.enter_context(stack_chain(data_dir, port=free_port()))
        if chain is None:
            raise RuntimeError("the fault suite pays invoices on the dev chain, which needs Node.js 18+")
        tag = os.urandom(4).hex()
        stack = Stack(
            servers.start(),
            http_port=free_port(),
            grpc_ports={service: free_port() for service in SERVICES},
            shard_count=SHARDS,
            admin_token=f"faults-{tag}",
            log_dir=data_dir / "logs",
            extra_env={**chain.env(), **TUNING},
        )
        stack.start()
        exits.callback(stack.stop)
        config = Config(
            database_url=servers.start().database_url,
            nats_url=servers.start().nats_url,
            shard_count=SHARDS,
        )
        report = asyncio.run(_drive(options, stack, servers, chain, config))
    if options.out is not None:
        options.out.parent.mkdir(parents=True, exist_ok=True)
        options.out.write_text(json.dumps(report.as_json(), indent=2, default=str) + "\n")
    return report


async def _drive(
    options: Options, stack: Stack, servers: DevServers, chain: StackChain, config: Config
) -> Report:
    started = time.monotonic()
    rng = random.Random(options.seed)
    statuses = load.Statuses()
    client = load.Client(stack.base_url, statuses)
    faults = Faults()
    # A generous deadline: ganache on a busy machine can take seconds to estimate gas.
    async with EvmRpc(chain.info.rpc_url, timeout=60) as rpc:
        merchants = await load.onboard(client, stack.admin_token, options.merchants, SHARDS)
        keeper = asyncio.create_task(keep_running(stack, faults))
        injector = asyncio.create_task(
            inject(
                stack,
                servers,
                faults,
                rng,
                kill_rounds=options.kill_rounds,
                server_restarts=options.server_restarts,
            )
        )
        try:
            invoices = await load.create_invoices(client, merchants, options.invoices, rng)
            payer = load.Payer(rpc, chain.info.token, dev_accounts())
            payments = await load.pay_invoices(
                payer, invoices, options.exact_payments, options.partial_payments, rng
            )
            reader = asyncio.create_task(_read_while(injector, client, merchants, invoices, rng))
            await injector
            await reader
            log.info("faults done; waiting for the platform to settle")
            down_after_faults = await _ready(client, timeout=120)
            # New work after the faults: if a loop died in them and stayed dead, its events are
            # the ones left unpublished or unapplied.
            invoices += await load.create_invoices(
                client, merchants, len(merchants), rng, first=options.invoices
            )
            intended: Counter[str] = Counter(i.merchant_id for i in invoices)
            created = [i.id for i in invoices]
            deadline = time.monotonic() + options.settle_seconds
            audit = await _settled_ledger(
                config, rpc, chain.info.token, merchants, created, dict(intended), deadline
            )
            events = await checks.settled_audit(config, timeout=max(10.0, deadline - time.monotonic()))
            compared, mismatches = await rebuilds.compare(config)
            # Asked again once everything settled, allowing a probe's worth of time on a loaded
            # machine: a loop left dead past its grace does not come back within it.
            down_at_end = down_after_faults or await _ready(client, timeout=10)
        finally:
            for task in (injector, keeper):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await client.close()
            for merchant in merchants:
                await merchant.receiver.stop()
    return Report(
        options={k: str(v) for k, v in dataclasses.asdict(options).items()},
        workload={
            "shards": SHARDS,
            "merchants": len(merchants),
            "invoices": len(invoices),
            "payments": payments.sent,
            "exact": len(payments.exact),
            "partial_then_topped_up": len(payments.partial),
            # Sent again to get ganache to mine what it had stranded (see load.Payer).
            "payments_resent": payer.resent,
        },
        faults=faults,
        statuses=statuses,
        events=events,
        ledger=audit,
        read_models_compared=compared,
        mismatches=mismatches,
        down_at_end=down_at_end,
        elapsed=time.monotonic() - started,
    )


async def _settled_ledger(
    config: Config,
    rpc: EvmRpc,
    token: str,
    merchants: list[load.Merchant],
    created: list[str],
    intended: dict[str, int],
    deadline: float,
) -> ledger.LedgerAudit:
    """The ledger audit once every paid invoice is confirmed and every webhook arrived, or at
    the deadline (blocks keep coming every 2 s, so confirmations do too)."""
    while True:
        audit = await ledger.audit_ledger(config, rpc, token, merchants, created, intended)
        settled = not audit.unconfirmed and not audit.webhooks_missing and not audit.underpaid
        if settled or time.monotonic() > deadline:
            return audit
        await asyncio.sleep(2)


async def _ready(client: load.Client, timeout: float) -> list[str]:
    """What /readyz said was down if it did not say 200 within `timeout` (asked directly, as the
    operator's probe), or nothing once it did."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = await client.http.get("/readyz")
        except httpx.TransportError as error:
            down = [f"gateway unreachable ({type(error).__name__})"]
        else:
            if response.status_code == 200:
                return []
            down = _down_checks(response)
        if time.monotonic() > deadline:
            log.error("the stack was not ready %.0fs after the faults: %s", timeout, "; ".join(down))
            return down
        await asyncio.sleep(0.5)


def _down_checks(response: httpx.Response) -> list[str]:
    try:
        checks = response.json().get("down") or []
        return [f"{c['service']} shard {c['shard']}: {c['status']}" for c in checks] or [response.text[:200]]
    except (ValueError, AttributeError, KeyError, TypeError):
        return [f"HTTP {response.status_code}: {response.text[:200]}"]


async def _read_while(
    injector: asyncio.Task[None],
    client: load.Client,
    merchants: list[load.Merchant],
    invoices: list[load.Invoice],
    rng: random.Random,
) -> None:
    """Reads as merchants and payers do until the faults are over, so the kills meet traffic."""
    keys = {m.id: m.key for m in merchants}
    while not injector.done():
        invoice = rng.choice(invoices)
        await client.call("GET", f"/v1/invoices/{invoice.id}", token=keys[invoice.merchant_id])
        await client.call("GET", f"/v1/checkout/{invoice.id}", token="")
