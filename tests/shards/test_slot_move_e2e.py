"""2 -> 3 shards on the running stack, as an operator does it: register a shard, move a slot
range to it through the API while merchants create invoices, payers pay them on the dev chain and
webhooks are delivered; then nothing is lost, nothing counted twice, and the new shard holds the
moved merchants."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from libs.common.config import Config, with_database
from libs.common.shardmap import slot_for_email
from libs.common.slotmove_catalog import SlotRange
from tests.common.support import ethereum_account_xpub, poll, poll_for
from tests.conftest import running_stack
from tests.merchant.webhook_support import Receiver, receiver
from tests.shards.support import Shop, Writer, create_invoice, rows_in
from tools.devchain.testing import EvmChain
from tools.devservers import Servers
from tools.devstack import Stack
from tools.faults import rebuilds

MOVING = SlotRange(0, 1023)  # half of shard 0's slots, to the new shard 2
# The merchants' wallets: account keys of a mnemonic no other test derives addresses from.
MNEMONIC = "legal winner thank year wave sausage worth useful legal winner thank yellow"


@pytest.fixture(scope="module")
def move_stack(
    servers: Servers, evm_chain: EvmChain, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    logs = Path(tmp_path_factory.mktemp("move-logs"))
    extra = {"CHECKOUT_RATE_LIMIT_FREE": "60000/minute"}
    with running_stack(servers, evm_chain, logs, "moves", extra) as running:
        yield running


@pytest.fixture
async def http(move_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=move_stack.base_url, timeout=60) as client:
        yield client


async def onboard(http: httpx.AsyncClient, operator: dict[str, str], email: str, account: int) -> Shop:
    """A merchant with an xpub of its own (two merchants of one xpub would share addresses)."""
    xpub = ethereum_account_xpub(MNEMONIC, account)
    created = await http.post(
        "/v1/merchants",
        json={"business_name": "Moving shop", "contact_email": email, "wallets": {"ethereum": xpub}},
        headers=operator,
    )
    assert created.status_code == 201, created.text
    merchant = created.json()
    issued = await http.post(f"/v1/merchants/{merchant['id']}/api-keys", json={"name": "k"}, headers=operator)
    assert issued.status_code == 201, issued.text
    return Shop(merchant, issued.json()["key"])


class Payer:
    """Pays invoices in full, one after another, from a dev account, as they are handed over."""

    def __init__(self, http: httpx.AsyncClient, chain: EvmChain) -> None:
        self.http = http
        self.chain = chain
        self.queue: asyncio.Queue[tuple[Shop, str]] = asyncio.Queue()
        self.paid: list[str] = []
        self.handed: set[str] = set()

    def hand_over(self, shop: Shop) -> None:
        """The shop's newest invoice not handed over yet (each is paid once, in full)."""
        invoice_id = next(i for i in reversed(shop.invoices) if i not in self.handed)
        self.handed.add(invoice_id)
        self.queue.put_nowait((shop, invoice_id))

    async def pay(self, shop: Shop, invoice_id: str) -> None:
        invoice = (await self.http.get(f"/v1/invoices/{invoice_id}", headers=shop.headers)).json()
        wei = int(Decimal(invoice["crypto_amount"]).scaleb(18))
        await self.chain.wait_receipt(
            await self.chain.send_eth(self.chain.accounts[5], invoice["payment_address"], wei)
        )
        self.paid.append(invoice_id)

    async def run(self) -> None:
        while True:
            shop, invoice_id = await self.queue.get()
            await self.pay(shop, invoice_id)


async def test_two_shards_become_three_under_load_and_nothing_is_lost(
    http: httpx.AsyncClient, move_stack: Stack, servers: Servers, evm_chain: EvmChain
) -> None:
    operator = {"Authorization": f"Bearer {move_stack.admin_token}"}
    tag = uuid.uuid4().hex[:6]
    emails = (f"move-{tag}-{n}@shop.test" for n in range(10_000))
    moving_emails = [e for e in emails if MOVING.first <= slot_for_email(e) <= MOVING.last][:2]
    shops = [await onboard(http, operator, email, 100 + n) for n, email in enumerate(moving_emails)]

    async with receiver() as hook:
        for shop in shops:
            endpoint = await http.post(
                "/v1/webhook-endpoints", json={"url": hook.url(), "events": ["*"]}, headers=shop.headers
            )
            assert endpoint.status_code == 201, endpoint.text
        for shop in shops:
            for _ in range(3):
                assert (await create_invoice(http, shop)).status_code == 201

        dsn = with_database(servers.database_url, f"moves_extra_{tag}")
        added = await http.post("/v1/admin/shards", json={"dsn": dsn}, headers=operator)
        assert added.status_code == 201, added.text
        new_shard = added.json()["id"]

        async def served() -> bool:
            view = (await http.get("/v1/admin/shards", headers=operator)).json()
            return len(view["shards"]) == 3 and all(s["healthy"] for s in view["shards"])

        await poll(served, timeout=60, what="every service serving the new shard")

        payer = Payer(http, evm_chain)
        paying = asyncio.create_task(payer.run())
        try:
            async with Writer(http, shops) as writer:
                for shop in shops:
                    payer.hand_over(shop)
                started = await http.post(
                    "/v1/admin/slot-moves", json={"slots": "0-1023", "to_shard": new_shard}, headers=operator
                )
                assert started.status_code == 201, started.text
                move_id = started.json()["id"]
                for shop in shops:  # paid while the move runs
                    payer.hand_over(shop)

                async def finished() -> dict[str, Any] | None:
                    move = (await http.get(f"/v1/admin/slot-moves/{move_id}", headers=operator)).json()
                    return move if move["phase"] == "done" else None

                move = await poll_for(finished, timeout=180, what="the move to finish")
                for shop in shops:  # paid after the switch, on the new shard
                    payer.hand_over(shop)
                count = writer.created
                await poll(lambda: writer.created >= count + 3, timeout=30, what="invoices after the move")
            await poll(lambda: len(payer.paid) == 3 * len(shops), timeout=60, what="the payments")
        finally:
            paying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await paying
        await evm_chain.mine(2)

        assert writer.failures == []
        assert move["fence_ms"] is not None and move["fence_ms"] < 1000, move
        assert move["rows_copied"] > 0 and move["rows_per_second"] > 0
        view = (await http.get("/v1/admin/shards", headers=operator)).json()
        assert view["shard_map_version"] == 2
        assert (
            next(s for s in view["shards"] if s["id"] == new_shard)["slots"] == MOVING.last - MOVING.first + 1
        )

        # Every invoice readable; each paid one counted once (its amount, not twice that).
        paid = set(payer.paid)
        for shop in shops:
            for invoice_id in shop.invoices:
                got = await http.get(f"/v1/invoices/{invoice_id}", headers=shop.headers)
                assert got.status_code == 200, got.text
            for invoice_id in paid & set(shop.invoices):

                async def settled(shop: Shop = shop, invoice_id: str = invoice_id) -> bool:
                    got = (await http.get(f"/v1/invoices/{invoice_id}", headers=shop.headers)).json()
                    assert Decimal(got["amount_paid"]) <= Decimal(got["crypto_amount"]), got
                    return (
                        got["status"] in ("paid", "confirmed") and got["amount_paid"] == got["crypto_amount"]
                    )

                await poll(settled, timeout=30, what=f"invoice {invoice_id} paid once")

        # The moved merchants live on the new shard alone.
        shard_0 = Config.from_env(move_stack.env()).shard_dsn(0)  # the stack's own configuration
        assert await rows_in(shard_0, MOVING) == {}
        on_new = await rows_in(dsn, MOVING)
        assert on_new["merchant.merchants"] == len(shops)
        assert on_new["invoice.invoices"] == sum(len(s.invoices) for s in shops)

        # Every read model of every shard equals a rebuild from that shard's events.
        two = Config.from_env(move_stack.env())
        three = dataclasses.replace(two, shard_dsns=(shard_0, two.shard_dsn(1), dsn), shard_count=3)
        compared, mismatches = await rebuilds.compare(three)
        assert compared and mismatches == []

        # Projections and webhooks saw each event once: one created per invoice, one paid per payment.
        await poll(lambda: delivered(hook, shops, paid), timeout=60, what="every webhook")
        for shop in shops:
            await poll(partial(counted, http, shop, paid), timeout=60, what=f"{shop.id}'s projections")


def delivered(hook: Receiver, shops: list[Shop], paid: set[str]) -> bool:
    seen: dict[str, tuple[str, str]] = {}
    for got in hook.received:
        body = json.loads(got.body)
        seen[body["id"]] = (body["type"], body["data"].get("invoice_id", ""))
    kinds = list(seen.values())
    created = {i for t, i in kinds if t == "invoice.created"}
    paid_seen = [i for t, i in kinds if t == "invoice.paid"]
    assert len(paid_seen) == len(set(paid_seen)), "an invoice.paid sent twice under two event ids"
    every = {i for s in shops for i in s.invoices}
    return created == every and set(paid_seen) == paid


async def counted(http: httpx.AsyncClient, shop: Shop, paid: set[str]) -> bool:
    today = time.strftime("%Y-%m-%d", time.gmtime())
    daily = (
        await http.get("/v1/analytics/daily", params={"from": today, "to": today}, headers=shop.headers)
    ).json()["data"]
    created = sum(d["invoices_created"] for d in daily)
    paid_count = sum(d["invoices_paid"] for d in daily)
    customers = (await http.get("/v1/customers", headers=shop.headers)).json()["data"]
    expected_paid = len(paid & set(shop.invoices))
    assert created <= len(shop.invoices) and paid_count <= expected_paid
    return (
        created == len(shop.invoices)
        and paid_count == expected_paid
        and [c["invoice_count"] for c in customers] == [len(shop.invoices)]
    )
