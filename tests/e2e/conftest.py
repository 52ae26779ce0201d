"""The whole stack as a user runs it: four service processes and the gateway, started by the
same launcher as `make up`, on free ports and fresh databases, talked to over HTTP."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from libs.common.devservers import Servers
from tools.devchain.testing import EvmChain
from tools.devstack import Stack, free_stack_ports


@pytest.fixture(scope="session")
def stack(servers: Servers, evm_chain: EvmChain, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tag = uuid.uuid4().hex[:8]
    http_port, grpc_ports = free_stack_ports()
    running = Stack(
        servers,
        http_port=http_port,
        grpc_ports=grpc_ports,
        admin_token=f"admin-{tag}",
        log_dir=Path(tmp_path_factory.mktemp("stack-logs")),
        extra_env={
            "CHECKOUT_DATABASE_PREFIX": f"e2e_{tag}",
            "CHECKOUT_STREAM_NAME": f"E2E_{tag.upper()}",
            "CHECKOUT_SUBJECT_PREFIX": f"e2e{tag}",
            "CHECKOUT_RELAY_POLL_SECONDS": "0.2",
            "CHECKOUT_DB_POOL_MIN": "1",
            "CHECKOUT_DB_POOL_MAX": "10",
            # The invoice service watches the session's dev chain, as under `make up`.
            "CHECKOUT_NETWORKS": evm_chain.networks_json(confirmations=2, poll_seconds=0.2),
            "CHECKOUT_ETHEREUM_CHAIN_ID": str(evm_chain.chain_id),
            "CHECKOUT_EXPIRY_POLL_SECONDS": "0.5",
        },
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=15) as client:
        yield client


@pytest.fixture
def operator(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.admin_token}"}
