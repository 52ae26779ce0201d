"""Run the whole platform locally: backing servers, four services, the gateway.

`make up` calls `python -m tools.devstack up`; the end-to-end tests use `Stack` directly. Every
process it starts runs in its own session and is stopped by it (SIGTERM, then SIGKILL after a
deadline), on Ctrl-C, on SIGTERM and on normal exit, so nothing is left behind holding a port or
CI's output open.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cryptography.fernet import Fernet

from libs.common.config import DEFAULT_GRPC_PORTS, DEFAULT_METRICS_PORTS, SERVICES, with_database
from libs.common.devservers import DevServers, Servers, free_ports
from libs.common.replica_config import ROLES
from tools.devchain.stack import StackChain, stack_chain

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("checkout.devstack")

# The BIP39 test mnemonic "abandon abandon ... about": a public, watch-only demo account, so the
# demo merchant can take invoices. Never send real funds to it.
DEMO_ETHEREUM_XPUB = "xpub6DCoCpSuQZB2jawqnGMEPS63ePKWkwWPH4TU45Q7LPXWuNd8TMtVxRrgjtEshuqpK3mdhaWHPFsBngh5GFZaM6si3yZdUsT8ddYM3PwnATt"


def free_stack_ports() -> tuple[int, dict[str, int]]:
    """A free HTTP port and a free gRPC port per service, all different (picked at once)."""
    http_port, *grpc_ports = free_ports(1 + len(SERVICES))
    return http_port, dict(zip(SERVICES, grpc_ports, strict=True))


@dataclass
class Stack:
    servers: Servers
    http_port: int = 8080
    grpc_ports: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_GRPC_PORTS))
    # Where each service serves /metrics; empty: free ports (`make up` uses DEFAULT_METRICS_PORTS).
    metrics_ports: Mapping[str, int] = field(default_factory=dict)
    shard_count: int = 2
    admin_token: str = ""
    # CHECKOUT_WEBHOOK_SECRET_KEYS: a fresh key unless given (`make up` keeps one in .dev/).
    webhook_secret_keys: str = field(default_factory=lambda: Fernet.generate_key().decode(), repr=False)
    log_dir: Path | None = None  # None: children write to this terminal
    extra_env: Mapping[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)
    _commands: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.metrics_ports:
            taken = {self.http_port, *self.grpc_ports.values()}
            ports = free_ports(len(SERVICES))
            while taken & set(ports):  # picked after the others were released: may repeat one
                ports = free_ports(len(SERVICES))
            self.metrics_ports = dict(zip(SERVICES, ports, strict=True))

    def metrics_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.metrics_ports[service]}/metrics"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHECKOUT_")}
        env.update(
            {
                "CHECKOUT_DATABASE_URL": self.servers.database_url,
                "CHECKOUT_NATS_URL": self.servers.nats_url,
                "CHECKOUT_REDIS_URL": self.servers.redis_url,
                "CHECKOUT_SHARD_COUNT": str(self.shard_count),
                "CHECKOUT_ADMIN_TOKEN": self.admin_token,
                "CHECKOUT_WEBHOOK_SECRET_KEYS": self.webhook_secret_keys,
                "CHECKOUT_HTTP_LISTEN": f"127.0.0.1:{self.http_port}",
                "CHECKOUT_ETHEREUM_CHAIN_ID": "1337",
                # Webhooks may target receivers on this machine (never private or metadata ones).
                "CHECKOUT_WEBHOOK_ALLOW_LOOPBACK": "true",
                "PYTHONUNBUFFERED": "1",
                # Children stop themselves if this process dies without stopping them.
                "CHECKOUT_PARENT_PID": str(os.getpid()),
            }
        )
        for service in SERVICES:
            env[f"CHECKOUT_{service.upper()}_ENDPOINTS"] = f"127.0.0.1:{self.grpc_ports[service]}"
            env[f"CHECKOUT_{service.upper()}_METRICS"] = f"127.0.0.1:{self.metrics_ports[service]}"
        env.update(self.extra_env)
        return env

    def _spawn(self, name: str, module: str, env: dict[str, str]) -> None:
        out: IO[bytes] | None = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
            self._logs.append(out)
        self._commands[name] = (module, env)
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
        )

    def start(self, timeout: float = 90.0) -> None:
        env = self.env()
        try:
            for service in SERVICES:
                self._spawn(
                    service,
                    f"services.{service}",
                    {
                        **env,
                        "CHECKOUT_GRPC_LISTEN": f"127.0.0.1:{self.grpc_ports[service]}",
                        "CHECKOUT_METRICS_LISTEN": f"127.0.0.1:{self.metrics_ports[service]}",
                    },
                )
            self._spawn("gateway", "services.gateway", env)
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(
                        f"{name} exited with {process.returncode} during start-up{self._hint(name)}"
                    )
            try:
                with urllib.request.urlopen(f"{self.base_url}/readyz", timeout=2) as response:
                    if response.status == 200:
                        return
            except urllib.error.HTTPError as error:
                last = error.read().decode(errors="replace")[:500]
            except OSError as error:
                last = str(error)
            time.sleep(0.2)
        raise TimeoutError(f"the stack was not ready after {timeout:.0f}s: {last}")

    def _hint(self, name: str) -> str:
        if self.log_dir is None:
            return ""
        path = self.log_dir / f"{name}.log"
        tail = path.read_text(errors="replace").splitlines()[-15:] if path.exists() else []
        return f" (see {path}):\n" + "\n".join(tail)

    def kill(self, name: str) -> None:
        """SIGKILL one process (the fault suite): no shutdown, as a crash or an OOM kill would."""
        process = self.processes[name]
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def restart(self, name: str) -> None:
        """Starts a process that was killed (or exited) again, as it was started."""
        if self.processes[name].poll() is None:
            raise RuntimeError(f"{name} is still running")
        module, env = self._commands[name]
        self._spawn(name, module, env)

    def stop(self, grace: float = 10.0) -> None:
        # The gateway first, so nothing new comes in while the services drain.
        order = ["gateway", *reversed(SERVICES)]
        for name in order:
            process = self.processes.get(name)
            if process and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for name in order:
            process = self.processes.get(name)
            if process is None:
                continue
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0fs; killing it", name, grace)
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()
        for handle in self._logs:
            handle.close()
        self._logs.clear()


def request(base_url: str, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        base_url + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def seed_demo(stack: Stack, state_file: Path) -> dict[str, str]:
    """The demo merchant and its API key, created once and remembered in .dev/."""
    if state_file.exists():
        demo: dict[str, str] = json.loads(state_file.read_text())
        status, _ = request(stack.base_url, "GET", "/v1/api-keys", demo["api_key"])
        if status == 200:
            return demo
    email = f"demo+{secrets.token_hex(3)}@checkout.local"
    status, merchant = request(
        stack.base_url,
        "POST",
        "/v1/merchants",
        stack.admin_token,
        {"business_name": "Demo Shop", "contact_email": email, "wallets": {"ethereum": DEMO_ETHEREUM_XPUB}},
    )
    if status != 201:
        raise RuntimeError(f"could not create the demo merchant: {status} {merchant}")
    status, key = request(
        stack.base_url,
        "POST",
        f"/v1/merchants/{merchant['id']}/api-keys",
        stack.admin_token,
        {"name": "demo"},
    )
    if status != 201:
        raise RuntimeError(f"could not create the demo API key: {status} {key}")
    demo = {"merchant_id": merchant["id"], "api_key": key["key"], "contact_email": email}
    state_file.write_text(json.dumps(demo, indent=2))
    state_file.chmod(0o600)
    return demo


DEMO_ORDER = {
    "title": "Coffee beans",
    "items": [{"name": "Beans 1kg", "quantity": "2", "unit_price": "12.50"}],
    "currency": "USD",
    "crypto_currency": "ETH",
    "customer_email": "buyer@example.com",
}


def demo_invoice(stack: Stack, demo: dict[str, str]) -> dict[str, Any] | None:
    """A fresh invoice of the demo merchant, so there is a payer's page to open at once."""
    status, invoice = request(stack.base_url, "POST", "/v1/invoices", demo["api_key"], DEMO_ORDER)
    if status != 201:
        log.warning("could not create the demo invoice: %s %s", status, invoice)
        return None
    return dict(invoice)


class MailLog:
    """An aiosmtpd handler that appends every notification email to a file and logs a line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        with self.path.open("ab") as out:
            out.write(
                f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} to {', '.join(envelope.rcpt_tos)}\n".encode()
            )
            out.write(content.replace(b"\r\n", b"\n") + b"\n")
        log.info("notification email to %s (see %s)", ", ".join(envelope.rcpt_tos), self.path)
        return "250 OK"


def start_mail_receiver(path: Path) -> dict[str, str]:
    """A local SMTP server (aiosmtpd, on a free loopback port) for notification emails; returns
    the merchant service's SMTP setting. It runs in a daemon thread until this process exits."""
    from aiosmtpd.controller import Controller  # a dev dependency: only `make up` needs it

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(MailLog(path), hostname="127.0.0.1", port=port)
    controller.start()
    atexit.register(controller.stop)
    print(f"notification emails: SMTP on 127.0.0.1:{port}, written to {path}", flush=True)
    return {"CHECKOUT_SMTP_URL": f"smtp://127.0.0.1:{port}"}


def admin_token(data_dir: Path) -> tuple[str, bool]:
    """CHECKOUT_ADMIN_TOKEN, or one generated once and kept in .dev/ (returned with True)."""
    given = os.environ.get("CHECKOUT_ADMIN_TOKEN", "").strip()
    if given:
        return given, False
    path = data_dir / "admin-token"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip(), True


def webhook_secret_keys(data_dir: Path) -> str:
    """CHECKOUT_WEBHOOK_SECRET_KEYS, or a key generated once and kept in .dev/: the webhook
    secrets sealed with it must still open after a restart."""
    given = os.environ.get("CHECKOUT_WEBHOOK_SECRET_KEYS", "").strip()
    if given:
        return given
    path = data_dir / "webhook-secret-key"
    if not path.exists():
        path.write_text(Fernet.generate_key().decode())
        path.chmod(0o600)
    return path.read_text().strip()


def up(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    token, generated = admin_token(data_dir)
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        raise KeyboardInterrupt

    # Installed explicitly: a shell starts background jobs with SIGINT ignored, and Python would
    # keep ignoring it; SIGHUP covers a closed terminal.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)
    started = time.monotonic()
    servers_dir = data_dir / "servers"
    with (
        DevServers(servers_dir, persistent=True, replicas=args.replicas) as servers,
        stack_chain(data_dir) as chain,
    ):
        # The local EVM chain (when Node.js is there) for the invoice service's watcher.
        chain_env = chain.env() if chain else {}
        mail_env = start_mail_receiver(data_dir / "mail.log")
        stack = Stack(
            servers,
            http_port=args.port,
            metrics_ports=DEFAULT_METRICS_PORTS,
            shard_count=args.shards,
            admin_token=token,
            webhook_secret_keys=webhook_secret_keys(data_dir),
            extra_env={**chain_env, **mail_env, **replica_env(servers)},
        )
        try:
            print(f"starting {len(SERVICES)} services and the gateway on {stack.base_url} ...", flush=True)
            stack.start()
            demo = seed_demo(stack, data_dir / "demo.json")
            invoice = demo_invoice(stack, demo)
            seconds = time.monotonic() - started
            print(banner(stack, demo, token if generated else "", seconds, chain, invoice), flush=True)
            while all(p.poll() is None for p in stack.processes.values()):
                time.sleep(0.5)
            dead = [n for n, p in stack.processes.items() if p.poll() is not None]
            print(f"{', '.join(dead)} exited; stopping the stack", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("\nstopping ...", flush=True)
            return 0
        finally:
            stack.stop()


def replica_env(servers: Servers) -> dict[str, str]:
    """CHECKOUT_SHARD_REPLICAS for the standbys DevServers started: every role of every shard on
    them (each shard's database on a standby is named as on the primary)."""
    if not servers.replica_urls:
        return {}
    urls = list(servers.replica_urls)
    value: object = urls[0] if len(urls) == 1 else {role: urls for role in ROLES}
    return {"CHECKOUT_SHARD_REPLICAS": json.dumps({"*": value})}


def banner(
    stack: Stack,
    demo: dict[str, str],
    generated_token: str,
    seconds: float,
    chain: StackChain | None = None,
    invoice: dict[str, Any] | None = None,
) -> str:
    curl = (
        f"curl -s -X POST {stack.base_url}/v1/invoices \\\n"
        f"    -H 'Authorization: Bearer {demo['api_key']}' -H 'Content-Type: application/json' \\\n"
        """    -d '{"title": "Coffee beans", "items": [{"name": "Beans 1kg", "quantity": "2", "unit_price": "12.50"}], """
        """"currency": "USD", "crypto_currency": "ETH", "customer_email": "buyer@example.com"}'"""
    )
    lines = [
        "",
        f"Checkout platform is up in {seconds:.1f}s: {stack.base_url}  (Ctrl-C stops everything)",
        f"  demo merchant:  {demo['merchant_id']}",
        f"  demo API key:   {demo['api_key']}",
        f"  API docs:       {stack.base_url}/docs  (Authorize with the key above, then try any call)",
    ]
    if generated_token:
        lines.append(
            f"  operator token: {generated_token}  (generated; set CHECKOUT_ADMIN_TOKEN to choose one)"
        )
    if chain is not None:
        lines.append(
            f"  EVM dev chain:  {chain.info.rpc_url} (chain id {chain.info.chain_id}, a block every "
            f"{chain.chain.block_time:.0f}s), test USDC at {chain.info.token}"
        )
    if stack.servers.replica_urls:
        lines.append(
            f"  read replicas:  {len(stack.servers.replica_urls)} streaming standby(s) of every shard; "
            f"lag in GET {stack.base_url}/v1/admin/shards (operator token)"
        )
    lines.append(f"  dashboard:      {stack.base_url}/dashboard  (sign in with the demo API key)")
    lines.append(
        f"  metrics:        {stack.base_url}/metrics (gateway), "
        + ", ".join(f"{s} :{stack.metrics_ports[s]}/metrics" for s in SERVICES)
    )
    lines.append(f"                  all of them: {stack.base_url}/v1/admin/metrics (operator token)")
    new_shard = with_database(stack.servers.database_url, f"checkout_shard_{stack.shard_count}")
    lines.append(f"  add a shard:    checkout-admin shards add --dsn '{new_shard}'  (README: Adding a shard)")
    if invoice is not None:
        lines += [
            "",
            "A demo invoice is waiting; open the payer's page in a browser:",
            "",
            f"    {invoice['checkout_url']}",
        ]
        if chain is not None:
            lines += [
                "",
                "then pay it from a funded dev account and watch the page go to confirmed:",
                "",
                f"    make pay INVOICE={invoice['id']}",
            ]
    lines += ["", "Create another invoice (its checkout_url is its payer's page):", "", curl, ""]
    if stack.servers.replica_urls:
        lines += [
            "Its response carries Checkout-Consistency-Token (curl -i shows it). Send it back, and the",
            "read sees your invoice at once, from the replica once it has replayed that far:",
            "",
            f"curl -s {stack.base_url}/v1/invoices/<id> -H 'Authorization: Bearer {demo['api_key']}' \\\n"
            "    -H 'Checkout-Consistency-Token: <token>'",
            "",
        ]
    if chain is not None:
        lines += [
            "Pay it from a funded dev account, and watch it go to confirmed:",
            "",
            f"make pay INVOICE=<id>      # then: curl -s {stack.base_url}/v1/checkout/<id>",
            "",
        ]
    else:
        lines += ["(no EVM dev chain without Node.js: invoices stay pending)", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.devstack")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("up", help="run the whole stack until Ctrl-C")
    run.add_argument("--data-dir", default=str(ROOT / ".dev"))
    run.add_argument("--port", type=int, default=int(os.environ.get("CHECKOUT_HTTP_PORT", "8080")))
    run.add_argument("--shards", type=int, default=int(os.environ.get("CHECKOUT_SHARD_COUNT", "2")))
    run.add_argument(
        "--replicas",
        type=int,
        default=int(os.environ.get("CHECKOUT_REPLICAS", "0") or "0"),
        help="streaming standbys of the embedded PostgreSQL that reads are routed to",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s devstack  %(levelname)-7s %(message)s")
    return up(args)


if __name__ == "__main__":
    sys.exit(main())
