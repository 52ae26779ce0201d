"""A local ganache node for `make up` and the tests, and what tools need to know about it.

    with DevChain() as chain:          # instamine, a free port
        rpc = EvmRpc(chain.rpc_url)

The node runs through run.js, which exits when this process goes away (see there why), so a
killed launcher or test run never leaves a chain holding a port.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from tools.devchain.accounts import ACCOUNT_COUNT, BALANCE_ETH, MNEMONIC
from tools.devchain.install import HERE, NODE_MODULES, NodeMissing
from tools.devservers import LOOPBACK, free_port

CHAIN_ID = 1337
DEFAULT_PORT = 8545
START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
_START_ATTEMPTS = 3  # a port picked by free_port() can be taken before ganache binds it
TOKEN_SYMBOL = "USDC"
TOKEN_DECIMALS = 6


class ChainStartError(RuntimeError):
    """ganache exited or did not answer eth_chainId in time; the message has its log."""


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a server could listen on the port now (connections in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


class DevChain:
    """ganache on 127.0.0.1 with chain id 1337 and the test mnemonic's funded accounts.

    `block_time` None (the default) mines a block per transaction before its hash is returned;
    a number of seconds mines on that interval instead, so confirmations advance on their own.
    `db_path` keeps the chain on disk between runs (`make up`); without it the chain lives in memory.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        block_time: float | None = None,
        log_path: Path | None = None,
        db_path: Path | None = None,
        accounts: int = ACCOUNT_COUNT,
    ) -> None:
        self.requested_port = port
        self.block_time = block_time
        self.db_path = db_path
        self.log_path = log_path
        self.accounts = accounts
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._tmp_log: tempfile.TemporaryDirectory[str] | None = None

    @property
    def rpc_url(self) -> str:
        if not self.port:
            raise RuntimeError("the dev chain is not running")
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def options(self) -> dict[str, Any]:
        """ganache's options (its CLI's names, nested), as run.js passes them on."""
        options: dict[str, Any] = {
            "chain": {"chainId": CHAIN_ID, "networkId": CHAIN_ID},
            "wallet": {
                "mnemonic": MNEMONIC,
                "totalAccounts": self.accounts,
                "defaultBalance": BALANCE_ETH,
            },
            "miner": {"blockTime": self.block_time or 0, "instamine": "eager"},
            "logging": {"quiet": True},
            "server": {"ws": False},
        }
        if self.db_path is not None:
            options["database"] = {"dbPath": str(self.db_path)}
        return options

    def start(self, timeout: float = START_TIMEOUT) -> DevChain:
        if self._process is not None:
            return self
        node = shutil.which("node")
        if node is None:
            raise NodeMissing("node not found on PATH: the local EVM dev chain needs Node.js 18+")
        if not (NODE_MODULES / "ganache").is_dir():
            raise ChainStartError(
                f"ganache is not installed in {NODE_MODULES}: call ensure_installed() first"
            )
        if self.log_path is None:
            self._tmp_log = tempfile.TemporaryDirectory(prefix="devchain-")
            self.log_path = Path(self._tmp_log.name) / "ganache.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.db_path is not None:
            self.db_path.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self.requested_port else _START_ATTEMPTS
        for attempt in range(1, attempts + 1):
            port = self.requested_port or free_port()
            try:
                self._spawn(node, port)
                self._wait_ready(port, timeout)
            except _Exited as exited:
                self._reap()
                if attempt == attempts:
                    raise ChainStartError(str(exited)) from None
                continue
            except BaseException:
                self.stop()
                raise
            self.port = port
            return self
        raise AssertionError("unreachable")

    def _spawn(self, node: str, port: int) -> None:
        argv = [node, str(HERE / "run.js"), LOOPBACK, str(port), json.dumps(self.options())]
        assert self.log_path is not None
        log: IO[bytes]
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                argv,
                cwd=HERE,
                # run.js exits on end of file here: our death closes the pipe.
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C in the terminal reaches the launcher, which stops us.
                start_new_session=True,
            )

    def _wait_ready(self, port: int, timeout: float) -> None:
        process = self._process
        assert process is not None
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            if process.poll() is not None:
                raise _Exited(
                    f"ganache exited with status {process.returncode} while starting on port {port}; "
                    f"see {self.log_path}:\n{self.log_tail()}"
                )
            try:
                answer = _probe_chain_id(port)
            except OSError as error:
                last = str(error)
            else:
                if answer != CHAIN_ID:
                    raise ChainStartError(f"port {port} answers with chain id {answer}, not {CHAIN_ID}")
                return
            if time.monotonic() > deadline:
                raise ChainStartError(
                    f"ganache did not answer eth_chainId on port {port} within {timeout:.0f}s ({last}); "
                    f"see {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def log_tail(self, limit: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:] if self.log_path else ""
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(STOP_TIMEOUT)
        self._reap()
        self.port = 0
        if self._tmp_log is not None:
            self._tmp_log.cleanup()
            self._tmp_log = None
            self.log_path = None

    def _reap(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait(STOP_TIMEOUT)
        if process.stdin is not None:
            process.stdin.close()

    def __enter__(self) -> DevChain:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Exited(Exception):
    pass


def _probe_chain_id(port: int) -> int:
    """eth_chainId, synchronously: start() runs before (and outside) any event loop."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    request = urllib.request.Request(
        f"http://{LOOPBACK}:{port}", data=body, headers={"Content-Type": "application/json"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
    try:
        with opener.open(request, timeout=2) as response:
            answer = json.loads(response.read())
    except (urllib.error.URLError, ValueError) as error:
        raise OSError(str(error)) from None
    result = answer.get("result") if isinstance(answer, dict) else None
    if not isinstance(result, str):
        raise OSError(f"not a chain id answer: {answer!r}")
    return int(result, 16)


@dataclass(frozen=True)
class ChainInfo:
    """What `make up` writes to .dev/devchain.json for tools.pay (and a developer) to read."""

    rpc_url: str
    chain_id: int
    token: str  # the test USDC contract
    token_symbol: str = TOKEN_SYMBOL
    token_decimals: int = TOKEN_DECIMALS

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> ChainInfo:
        data = json.loads(path.read_text())
        return cls(
            rpc_url=str(data["rpc_url"]),
            chain_id=int(data["chain_id"]),
            token=str(data["token"]),
            token_symbol=str(data.get("token_symbol", TOKEN_SYMBOL)),
            token_decimals=int(data.get("token_decimals", TOKEN_DECIMALS)),
        )


def networks_json(
    rpc_url: str,
    token: str,
    *,
    chain_id: int = CHAIN_ID,
    confirmations: int = 3,
    poll_seconds: float = 1,
    start_block: int | None = None,
) -> str:
    """CHECKOUT_NETWORKS for an invoice service watching this chain (libs/common/networks.py)."""
    ethereum: dict[str, Any] = {
        "kind": "evm",
        "node_url": rpc_url,
        "chain_id": chain_id,
        "confirmations": confirmations,
        "poll_seconds": poll_seconds,  # a duration, not money
        "tokens": [{"symbol": TOKEN_SYMBOL, "contract": token, "decimals": TOKEN_DECIMALS}],
    }
    if start_block is not None:
        ethereum["start_block"] = start_block
    return json.dumps({"ethereum": ethereum})
