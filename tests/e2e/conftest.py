"""The whole stack as a user runs it (the `stack` fixture, tests/conftest.py), talked to over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tools.devstack import Stack


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=15) as client:
        yield client


@pytest.fixture
def operator(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.admin_token}"}
