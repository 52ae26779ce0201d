"""The platform's processes: four services and the gateway, each in its own session.

`Stack` starts them against given backing servers (`tools.devservers`), waits for the gateway's
/readyz, and stops them (SIGTERM, then SIGKILL after a deadline) so nothing is left behind
holding a port or CI's output open. `make up` (tools/devstack/up.py) and the end-to-end tests
use it; `request` is the JSON call both make to the gateway.
"""

from __future__ import annotations

import json
import logging
import os
import signal
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

from libs.common.config import DEFAULT_GRPC_PORTS, SERVICES
from tools.devservers import Servers, free_ports

ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger("checkout.devstack")


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
