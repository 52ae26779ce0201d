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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from libs.common.config import SERVICES, Config
from libs.common.devservers import DATABASE_URL_ENV, NATS_URL_ENV, REDIS_URL_ENV, DevServers, free_port
from libs.common.evm_rpc import EvmRpc
from tools.devchain.accounts import dev_accounts
from tools.devchain.stack import StackChain, stack_chain
from tools.devstack import Stack
from tools.faults import checks, ledger, load, rebuilds

log = logging.getLogger("checkout.faults")
ROOT = Path(__file__).resolve().parent.parent.parent
PROCESSES = (*SERVICES, "gateway")
SERVERS = ("postgres", "nats-server", "redis-server")
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


@dataclass
class Faults:
    kills: Counter[str] = field(default_factory=Counter)
    restarts: Counter[str] = field(default_factory=Counter)
    # Processes that exited on their own (a service that cannot reach PostgreSQL while starting
    # exits, as it would under Kubernetes) and were started again, as Kubernetes would.
    exits: Counter[str] = field(default_factory=Counter)
    log: list[str] = field(default_factory=list)
    killing: set[str] = field(default_factory=set)


@dataclass
class Report:
    options: dict[str, Any]
    workload: dict[str, Any]
    faults: Faults
    statuses: load.Statuses
    events: checks.EventAudit
    ledger: ledger.LedgerAudit
    read_models_compared: int
    mismatches: list[rebuilds.Mismatch]
    # /readyz after the faults and again after every check: no loop left dead past its grace.
    ready_at_end: bool
    elapsed: float

    @property
    def lost(self) -> int:
        return self.events.missing + self.ledger.lost

    @property
    def http_500(self) -> int:
        return self.statuses.counts.get(500, 0)

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.ledger.double_counted == 0
            and not self.ledger.webhooks_missing
            and self.http_500 == 0
            and not self.ledger.unconfirmed
            and not self.mismatches
            and self.ready_at_end
            # The suite's own check: every invoice it paid in full is seen as fully paid on chain.
            and self.ledger.fully_paid == self.workload["exact"] + self.workload["partial_then_topped_up"]
        )

    def line(self) -> str:
        other_5xx = {s: n for s, n in self.statuses.server_errors.items() if s != 500}
        return (
            f"faults: {self.workload['invoices']} invoices, {self.workload['merchants']} merchants on "
            f"{SHARDS} shards, {self.workload['payments']} payments; {sum(self.faults.kills.values())} kills, "
            f"{sum(self.faults.restarts.values())} server restarts ({sum(self.faults.exits.values())} exits) "
            f"-> lost {self.lost}, "
            f"double-counted {self.ledger.double_counted}, webhooks missing {len(self.ledger.webhooks_missing)} "
            f"of {self.ledger.webhooks_expected} ({self.ledger.webhook_duplicates} duplicates), "
            f"HTTP 500 {self.http_500} (other 5xx {other_5xx or 0}, unreachable {self.statuses.unreachable}), "
            f"unconfirmed {len(self.ledger.unconfirmed)} of {self.ledger.fully_paid} paid, read models off "
            f"{len(self.mismatches)} of {self.read_models_compared}, invoice.paid missing "
            f"{len(self.ledger.paid_event_missing)}, ready at the end {'yes' if self.ready_at_end else 'NO'}; "
            f"{self.elapsed:.0f}s"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "line": self.line(),
            "options": self.options,
            "load": self.workload,
            "faults": {
                "kills": dict(self.faults.kills),
                "restarts": dict(self.faults.restarts),
                "exits": dict(self.faults.exits),
                "log": self.faults.log,
            },
            "results": {
                "lost": self.lost,
                "double_counted": self.ledger.double_counted,
                "webhooks_missing": len(self.ledger.webhooks_missing),
                "webhook_duplicates": self.ledger.webhook_duplicates,
                "http_statuses": {str(k): v for k, v in sorted(self.statuses.counts.items())},
                "http_500": self.http_500,
                "http_500_requests": self.statuses.internal[:20],
                "unreachable": self.statuses.unreachable,
                "unconfirmed": len(self.ledger.unconfirmed),
                "invoice_paid_missing": len(self.ledger.paid_event_missing),
                "ready_at_end": self.ready_at_end,
            },
            "events": self.events.summary(),
            "ledger": self.ledger.summary(),
            "read_models": {
                "compared": self.read_models_compared,
                "mismatches": [dataclasses.asdict(m) for m in self.mismatches],
            },
            "elapsed_seconds": round(self.elapsed, 1),
        }


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
        keeper = asyncio.create_task(_keep_running(stack, faults))
        injector = asyncio.create_task(_inject(options, stack, servers, faults, rng))
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
            ready_after_faults = await _ready(client, timeout=120)
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
            ready_at_end = ready_after_faults and await _ready(client, timeout=0)
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
            "merchants": len(merchants),
            "invoices": len(invoices),
            "payments": payments.sent,
            "exact": len(payments.exact),
            "partial_then_topped_up": len(payments.partial),
        },
        faults=faults,
        statuses=statuses,
        events=events,
        ledger=audit,
        read_models_compared=compared,
        mismatches=mismatches,
        ready_at_end=ready_at_end,
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


def _plan(options: Options, rng: random.Random) -> list[tuple[str, str]]:
    actions = [("kill", p) for p in PROCESSES for _ in range(options.kill_rounds)]
    actions += [("restart", s) for s in SERVERS for _ in range(options.server_restarts)]
    rng.shuffle(actions)
    return actions


async def _inject(
    options: Options, stack: Stack, servers: DevServers, faults: Faults, rng: random.Random
) -> None:
    """SIGKILLs processes and restarts servers at random moments, one at a time."""
    for action, name in _plan(options, rng):
        await asyncio.sleep(rng.uniform(0.5, 2.5))
        down = rng.uniform(0.2, 2.0)
        if action == "kill":
            faults.killing.add(name)
            try:
                await asyncio.to_thread(stack.kill, name)
                await asyncio.sleep(down)
                await asyncio.to_thread(stack.restart, name)
            finally:
                faults.killing.discard(name)
            faults.kills[name] += 1
        else:
            # PostgreSQL goes down without a checkpoint (immediate mode), Redis by SIGKILL; NATS
            # shuts down cleanly, as a rolling restart of a JetStream node would.
            await asyncio.to_thread(servers.stop_server, name, kill=name != "nats-server")
            await asyncio.sleep(down)
            await asyncio.to_thread(servers.start_server, name)
            faults.restarts[name] += 1
        faults.log.append(f"{action} {name} ({down:.1f}s down)")
        log.info("fault: %s %s, down %.1fs", action, name, down)


async def _ready(client: load.Client, timeout: float) -> bool:
    """Whether /readyz said 200 within `timeout` (asked directly, as the operator's probe)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.TransportError):
            if (await client.http.get("/readyz")).status_code == 200:
                return True
        if time.monotonic() > deadline:
            log.error("the stack was not ready %.0fs after the faults", timeout)
            return False
        await asyncio.sleep(0.5)


async def _keep_running(stack: Stack, faults: Faults) -> None:
    """Starts again a process that exited by itself (not one being killed on purpose)."""
    while True:
        await asyncio.sleep(0.5)
        for name, process in list(stack.processes.items()):
            if name in faults.killing or process.poll() is None:
                continue
            log.warning("%s exited with %s by itself; starting it again", name, process.returncode)
            faults.exits[name] += 1
            faults.log.append(f"{name} exited with {process.returncode}; started again")
            await asyncio.to_thread(stack.restart, name)


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
