"""A gateway told to stop does not wait for its open payer pages: their streams end at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from services.gateway.__main__ import SHUTDOWN_GRACE_SECONDS
from tests.common.support import poll
from tests.pages.conftest import Shop
from tests.pages.test_checkout_page import create
from tools.devservers import free_port
from tools.devstack import ROOT, Stack


@pytest.fixture
def second_gateway(stack: Stack) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Another gateway process on the package stack's services, for this test to stop."""
    port = free_port()
    env = {**stack.env(), "CHECKOUT_HTTP_LISTEN": f"127.0.0.1:{port}"}
    process = subprocess.Popen(
        [sys.executable, "-m", "services.gateway"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    yield process, f"http://127.0.0.1:{port}"
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


async def test_stopping_the_gateway_ends_open_live_streams_instead_of_waiting_for_them(
    second_gateway: tuple[subprocess.Popen[bytes], str], http: httpx.AsyncClient, shop: Shop
) -> None:
    process, base_url = second_gateway
    invoice = await create(http, shop)
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:

        async def listening() -> bool:
            try:
                return (await client.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await poll(listening, timeout=30, what="the second gateway to listen")
        async with client.stream("GET", f"/pay/{invoice['id']}/events") as response:
            lines = response.aiter_lines()
            assert await anext(lines) == "retry: 2000"
            stopping = time.monotonic()
            os.killpg(process.pid, signal.SIGTERM)
            rest = [line async for line in lines]  # the stream ends rather than hanging on
    assert any(line.startswith("data: ") for line in rest)
    await poll(
        lambda: process.poll() is not None, timeout=SHUTDOWN_GRACE_SECONDS / 2, what="the gateway to exit"
    )
    assert time.monotonic() - stopping < SHUTDOWN_GRACE_SECONDS / 2
