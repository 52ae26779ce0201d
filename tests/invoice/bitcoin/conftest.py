"""Fixtures of the Bitcoin watcher tests: an Esplora client on the loopback Esplora (`esplora`,
tests/invoice/conftest.py), the network, the in-memory ledger watching A, B and C, the watcher."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from libs.common.networks import NetworkConfig
from services.invoice.chains.bitcoin import BitcoinWatcher
from services.invoice.chains.esplora import EsploraClient
from tests.invoice.bitcoin.memory_ledger import REQUIRED, A, B, C, MemoryLedger
from tests.invoice.fake_esplora import FakeEsplora


@pytest.fixture
async def client(esplora: FakeEsplora) -> AsyncIterator[EsploraClient]:
    async with httpx.AsyncClient() as http:
        yield EsploraClient(esplora.base_url, client=http, timeout=5)


@pytest.fixture
def network(esplora: FakeEsplora) -> NetworkConfig:
    return NetworkConfig(
        name="bitcoin", kind="bitcoin", node_url=esplora.base_url, confirmations=REQUIRED, poll_seconds=0.05
    )


@pytest.fixture
def ledger() -> MemoryLedger:
    memory = MemoryLedger()
    for address in (A, B, C):
        memory.watch(address)
    return memory


@pytest.fixture
def watcher(network: NetworkConfig, ledger: MemoryLedger, client: EsploraClient) -> BitcoinWatcher:
    return BitcoinWatcher(network, ledger, client)
