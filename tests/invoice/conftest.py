"""Fixtures of the invoice service's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.invoice.fake_esplora import FakeEsplora


@pytest.fixture
async def esplora() -> AsyncIterator[FakeEsplora]:
    server = FakeEsplora()
    await server.start()
    yield server
    await server.stop()
