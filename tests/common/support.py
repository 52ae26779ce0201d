"""Test helpers: a deadline poll (never a bare sleep) and a tiny aggregate."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
from bip_utils import Bip39SeedGenerator, Bip44, Bip44Coins  # type: ignore[import-untyped, unused-ignore]
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


async def index_valid(conn: asyncpg.Connection, schema: str, name: str) -> bool | None:
    """Whether the schema's index is valid (False: a concurrent build was interrupted; None: none)."""
    valid: bool | None = await conn.fetchval(
        """SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2""",
        schema,
        name,
    )
    return valid


async def building(conn: asyncpg.Connection) -> bool:
    """A concurrent index build is under way and waiting for an open snapshot to go."""
    phase = await conn.fetchval(
        "SELECT phase FROM pg_stat_progress_create_index WHERE datname = current_database()"
    )
    return phase is not None and phase.startswith("waiting")


T = TypeVar("T")


async def poll_for(
    fetch: Callable[[], Awaitable[T | None]], *, timeout: float = 10.0, what: str = "a value"
) -> T:
    """Polls `fetch` until it returns something other than None (with a deadline); returns it."""
    found: list[T] = []

    async def check() -> bool:
        value = await fetch()
        if value is not None:
            found.append(value)
        return value is not None

    await poll(check, timeout=timeout, what=what)
    return found[0]


def ethereum_account_xpub(mnemonic: str, account: int = 0) -> str:
    """The BIP44 Ethereum account key m/44'/60'/<account>' of a mnemonic, as a merchant gives it."""
    seed = Bip39SeedGenerator(mnemonic).Generate()
    return str(
        Bip44.FromSeed(seed, Bip44Coins.ETHEREUM).Purpose().Coin().Account(account).PublicKey().ToExtended()
    )


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
