"""Test helpers: a deadline poll (never a bare sleep) and a tiny aggregate."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from checkout.merchant.v1 import events_pb2

from libs.common.aggregate import Aggregate


async def poll(
    condition: Callable[[], bool | Awaitable[bool]], *, timeout: float = 10.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


class Counter(Aggregate):
    aggregate_type = "Counter"

    def __init__(self, aggregate_id: uuid.UUID) -> None:
        super().__init__(aggregate_id)
        self.name = ""
        self.renames = 0

    def rename(self, name: str) -> None:
        self._emit(events_pb2.MerchantUpdated(business_name=name))

    def _apply(self, event: Any) -> None:
        self.name = event.business_name
        self.renames += 1

    def snapshot(self) -> dict[str, Any]:
        return {"name": self.name, "renames": self.renames}

    def restore(self, data: dict[str, Any]) -> None:
        self.name, self.renames = data["name"], data["renames"]
