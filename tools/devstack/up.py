"""`make up`: the backing servers, the dev chain, a mail receiver and the stack, until Ctrl-C.

`python -m tools.devstack up` runs `main`. Every process it starts is stopped on Ctrl-C, on
SIGTERM, on SIGHUP and on normal exit.
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
import sys
import time
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet

from libs.common.config import DEFAULT_METRICS_PORTS, SERVICES
from libs.common.replica_config import ROLES
from tools.devchain.stack import stack_chain
from tools.devservers import DevServers, Servers
from tools.devstack.demo import banner, demo_invoice, seed_demo
from tools.devstack.stack import ROOT, Stack

log = logging.getLogger("checkout.devstack")


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
        # Only the first signal stops: a second one (`timeout make up` signals the process group
        # and make passes SIGTERM on again) would cut the stop short and take the servers away
        # from services still draining.
        nonlocal stopping
        if stopping:
            return
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
