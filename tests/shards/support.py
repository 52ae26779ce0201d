"""What the slot-move tests share: merchants placed in chosen slots, a steady stream of invoices
for them, and the rows a shard holds of a slot range."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from libs.common import ids, slotmove, slotmove_catalog
from libs.common.config import SERVICES, Config
from libs.common.shardmap import slot_for_email
from libs.common.slotmove_catalog import SlotRange
from tests.common.support import poll
from tests.platform import Platform

INVOICE = {
    "title": "Coffee beans",
    "items": [{"name": "Beans 1kg", "quantity": "2", "unit_price": "12.50"}],
    "currency": "USD",
    "crypto_currency": "ETH",
    "customer_email": "buyer@example.com",
}


def tag_in(slots: SlotRange, taken: set[str]) -> str:
    """A tag whose merchant email (Platform.onboard's) falls in `slots`."""
    for n in itertools.count():
        tag = f"{uuid.uuid4().hex[:6]}{n}"
        if tag not in taken and slots.first <= slot_for_email(f"shop-{tag}@shop.test") <= slots.last:
            taken.add(tag)
            return tag
    raise AssertionError("unreachable")


@dataclass
class Shop:
    merchant: dict[str, Any]
    key: str
    invoices: list[str] = field(default_factory=list)

    @property
    def id(self) -> uuid.UUID:
        return uuid.UUID(self.merchant["id"])

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def shops_in(platform: Platform, slots: SlotRange, count: int) -> list[Shop]:
    taken: set[str] = set()
    shops = []
    for _ in range(count):
        merchant, key = await platform.onboard(tag_in(slots, taken))
        assert slots.first <= ids.slot_of(uuid.UUID(merchant["id"])) <= slots.last
        shops.append(Shop(merchant, key))
    return shops


async def shops_with_invoices(platform: Platform, slots: SlotRange, count: int, invoices: int) -> list[Shop]:
    """`count` shops in `slots`, each with `invoices` invoices created."""
    shops = await shops_in(platform, slots, count)
    for shop in shops:
        for _ in range(invoices):
            assert (await create_invoice(platform.http, shop)).status_code == 201
    return shops


async def create_invoice(http: httpx.AsyncClient, shop: Shop) -> httpx.Response:
    response = await http.post("/v1/invoices", json=INVOICE, headers=shop.headers)
    if response.status_code == 201:
        shop.invoices.append(response.json()["id"])
    return response


class Writer:
    """Creates invoices for the shops, one after another, until stopped; keeps every answer that
    was not a 201 (the move must cause none)."""

    def __init__(self, http: httpx.AsyncClient, shops: list[Shop]) -> None:
        self.http = http
        self.shops = shops
        self.failures: list[str] = []
        self.created = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Writer:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_: object) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task

    async def writes_on(self, count: int = 3) -> None:
        """Waits until `count` more invoices were created: the platform takes writes still."""
        after = self.created
        await poll(lambda: self.created >= after + count, timeout=30, what=f"{count} more invoices")

    async def _run(self) -> None:
        for shop in itertools.cycle(self.shops):
            if self._stop.is_set():
                return
            response = await create_invoice(self.http, shop)
            if response.status_code == 201:
                self.created += 1
            else:
                self.failures.append(f"{response.status_code} {response.text}")


@contextlib.asynccontextmanager
async def control_store(config: Config) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the control database (once the platform has created it)."""
    conn = await asyncpg.connect(config.control_database())
    try:
        yield conn
    finally:
        await conn.close()


async def rows_in(dsn: str, slots: SlotRange) -> dict[str, int]:
    """Rows per table (every service schema) the shard at `dsn` holds in `slots`, empty ones left out."""
    conn = await asyncpg.connect(dsn)
    try:
        counts: dict[str, int] = {}
        for schema in SERVICES:
            counts.update(
                await slotmove.count_rows(conn, await slotmove_catalog.describe(conn, schema), slots)
            )
        return {table: n for table, n in counts.items() if n}
    finally:
        await conn.close()


def today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


async def assert_moved(
    platform: Platform, moved: list[Shop], stayed: list[Shop], slots: SlotRange, to: int, source: int
) -> None:
    """What a finished move promises: every invoice readable, the moved shops' rows on `to` and
    none left on `source`, and the other services' projections counting each invoice once."""
    config = platform.config
    for shop in [*moved, *stayed]:
        for invoice in shop.invoices:
            got = await platform.http.get(f"/v1/invoices/{invoice}", headers=shop.headers)
            assert got.status_code == 200, got.text
    assert await rows_in(config.shard_dsn(source), slots) == {}
    on_target = await rows_in(config.shard_dsn(to), slots)
    assert on_target["invoice.invoices"] == sum(len(s.invoices) for s in moved)
    assert on_target["merchant.merchants"] == len(moved)
    for shop in [*moved, *stayed]:
        await counted_once(platform, shop)


async def counted_once(platform: Platform, shop: Shop) -> None:
    """The analytics day and the customer's invoice count match the invoices created: never
    more (an event seen twice), and, once the consumers caught up, not fewer."""
    expected = len(shop.invoices)

    async def counted() -> bool:
        daily = (
            await platform.http.get(
                "/v1/analytics/daily", params={"from": today(), "to": today()}, headers=shop.headers
            )
        ).json()["data"]
        customers = (await platform.http.get("/v1/customers", headers=shop.headers)).json()["data"]
        created = sum(d["invoices_created"] for d in daily)
        assert created <= expected and all(c["invoice_count"] <= expected for c in customers)
        return created == expected and [c["invoice_count"] for c in customers] == [expected]

    await poll(counted, timeout=30, what=f"the projections to count {expected} invoices once")
