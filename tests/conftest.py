"""Layered fixtures: servers (embedded, or external via CHECKOUT_*_URL) -> config (a fresh set
of shard databases and a fresh JetStream stream per test) -> pools / JetStream clients."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

# Before gRPC is first imported: the tests start servers with subprocess while gRPC's threads
# run in this process, and gRPC's fork handlers then left a child to die of SIGSEGV before it
# could exec (pg_ctl "exited -11"). Nothing here forks to run Python in the child.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")

import nats
import pytest
from cryptography.fernet import Fernet
from nats.aio.client import Client as NatsClient

from libs.common.config import Config
from tools.devservers import DevServers, Servers

if TYPE_CHECKING:
    from tools.devchain import DevChain
    from tools.devchain.testing import EvmChain
    from tools.devstack import Stack


def pytest_configure(config: pytest.Config) -> None:
    # CI or `timeout` stops pytest with SIGTERM, which skips atexit and fixture teardown; as a
    # KeyboardInterrupt pytest tears down, so the embedded servers stop instead of outliving it.
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    with DevServers(tmp_path_factory.mktemp("servers")) as started:
        yield started


def make_config(servers: Servers, **overrides: object) -> Config:
    tag = uuid.uuid4().hex[:10]
    values: dict[str, object] = {
        "database_url": servers.database_url,
        "database_prefix": f"test_{tag}",
        "nats_url": servers.nats_url,
        "redis_url": servers.redis_url,
        "shard_count": 2,
        "stream_name": f"TEST_{tag.upper()}",
        "subject_prefix": f"t{tag}",
        "admin_token": f"admin-{tag}",
        "relay_poll_seconds": 0.2,
        "pool_min_size": 1,
        "pool_max_size": 10,
        "fixed_rates": "ETH-USD=2400.00,BTC-USD=48000.00,USDC-USD=1.00",
        # A fresh key per test, as `make up` makes one per checkout (tools/devstack/up.py).
        "webhook_secret_keys": (Fernet.generate_key().decode(),),
    }
    values.update(overrides)
    return Config(**values)  # type: ignore[arg-type]


@pytest.fixture
def config(servers: Servers) -> Config:
    return make_config(servers)


@pytest.fixture
async def nats_client(config: Config) -> AsyncIterator[NatsClient]:
    nc = await nats.connect(config.nats_url)
    yield nc
    await nc.drain()


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


# -- the local EVM dev chain (tools/devchain): one ganache per session, instamine -----------------


@pytest.fixture(scope="session")
def evm_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevChain]:
    # Imported here: eth-account takes a second to import, and most test runs need no chain.
    from tools.devchain import DevChain, InstallFailed, NodeMissing, ensure_installed

    try:
        ensure_installed()
    except (NodeMissing, InstallFailed) as error:
        # A failure, not a skip: the payment tests are the point of the suite.
        pytest.fail(f"the EVM dev chain cannot run: {error}", pytrace=False)
    with DevChain(log_path=tmp_path_factory.mktemp("devchain") / "ganache.log") as chain:
        yield chain


@pytest.fixture(scope="session")
async def evm_chain(evm_node: DevChain) -> AsyncIterator[EvmChain]:
    """The chain with the test USDC deployed; see tools/devchain/testing.py for the helpers."""
    from tools.devchain.testing import evm_chain_on

    async with evm_chain_on(evm_node) as chain:
        yield chain


@contextmanager
def running_stack(
    servers: Servers,
    evm_chain: EvmChain,
    log_dir: Path,
    name: str,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """The whole stack as a user runs it: four service processes and the gateway, started by the
    same launcher as `make up`, on free ports and fresh databases named after `name`, the invoice
    service watching the session's dev chain."""
    from tools.devstack import Stack, free_stack_ports

    tag = uuid.uuid4().hex[:8]
    http_port, grpc_ports = free_stack_ports()
    running = Stack(
        servers,
        http_port=http_port,
        grpc_ports=grpc_ports,
        admin_token=f"admin-{tag}",
        log_dir=log_dir,
        extra_env={
            "CHECKOUT_DATABASE_PREFIX": f"{name}_{tag}",
            "CHECKOUT_STREAM_NAME": f"{name.upper()}_{tag.upper()}",
            "CHECKOUT_SUBJECT_PREFIX": f"{name}{tag}",
            "CHECKOUT_RELAY_POLL_SECONDS": "0.2",
            "CHECKOUT_DB_POOL_MIN": "1",
            "CHECKOUT_DB_POOL_MAX": "10",
            "CHECKOUT_NETWORKS": evm_chain.networks_json(confirmations=2, poll_seconds=0.2),
            "CHECKOUT_ETHEREUM_CHAIN_ID": str(evm_chain.chain_id),
            "CHECKOUT_EXPIRY_POLL_SECONDS": "0.5",
            # CSV exports stream a page at a time: small pages make every export test page.
            "CHECKOUT_EXPORT_PAGE_ROWS": "2",
            **(extra_env or {}),
        },
    )
    running.start()
    try:
        yield running
    finally:
        running.stop()


# Once a session for tests/e2e, tests/client and tests/cli.
@pytest.fixture(scope="session")
def stack(servers: Servers, evm_chain: EvmChain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(servers, evm_chain, Path(tmp_path_factory.mktemp("stack-logs")), "e2e") as running:
        yield running
