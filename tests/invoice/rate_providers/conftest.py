"""Fixtures of the rate provider tests: the loopback exchange and one HTTP client to call it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.invoice.rate_providers.ticker import TickerServer


@pytest.fixture
async def server() -> AsyncIterator[TickerServer]:
    ticker_server = TickerServer()
    await ticker_server.start()
    yield ticker_server
    await ticker_server.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http
