"""Tiered placement on a running stack: with CHECKOUT_PLACEMENT sending enterprise merchants to
enterprise shards, a sign-up lands on its tier's shard, free merchants stay on the shared ones,
and a contact email is still unique across every shard."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from libs.common.config import with_database
from libs.common.devservers import Servers
from libs.common.shardmap import ShardMap, slot_for_email
from libs.common.shardstore import publish_map
from tests.conftest import running_stack
from tests.e2e.test_checkout_flow import bearer, invoice_body
from tests.shards.test_add_shard import shards_until
from tools.devchain.testing import EvmChain
from tools.devstack import DEMO_ETHEREUM_XPUB, Stack

ENTERPRISE_SLOTS = range(0, 256)


@pytest.fixture(scope="module")
def placed_stack(
    servers: Servers, evm_chain: EvmChain, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with running_stack(
        servers,
        evm_chain,
        Path(tmp_path_factory.mktemp("placement-logs")),
        "placed",
        extra_env={"CHECKOUT_PLACEMENT": '{"enterprise": "enterprise"}'},
    ) as running:
        yield running


@pytest.fixture
async def http(placed_stack: Stack, servers: Servers) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {placed_stack.admin_token}"}
    async with httpx.AsyncClient(base_url=placed_stack.base_url, headers=headers, timeout=60) as client:
        yield client


def email_in(slots: range, tag: str) -> str:
    return next(e for n in range(100_000) if slot_for_email(e := f"{tag}-{n}@placed.test") in slots)


async def test_merchants_land_on_their_tiers_shards_and_emails_stay_unique(
    http: httpx.AsyncClient, placed_stack: Stack, servers: Servers
) -> None:
    # An enterprise shard, given slots 0-255 while they are still empty (no data to copy).
    dsn = with_database(servers.database_url, f"placed_enterprise_{uuid.uuid4().hex[:8]}")
    assert (await http.post("/v1/admin/shards", json={"dsn": dsn, "tier": "enterprise"})).status_code == 201
    prefix = placed_stack.extra_env["CHECKOUT_DATABASE_PREFIX"]
    control = await asyncpg.connect(with_database(servers.database_url, f"{prefix}_shard_0"))
    try:
        moved = ShardMap.even(2).reassign(ENTERPRISE_SLOTS.start, ENTERPRISE_SLOTS.stop, 2)
        await publish_map(control, 1, moved, "slots 0-255 to the enterprise shard (empty)")
    finally:
        await control.close()
    await shards_until(http, lambda a: a["shard_map_version"] == 2 and all(s["healthy"] for s in a["shards"]))
    tag = uuid.uuid4().hex[:6]

    async def sign_up(email: str, plan: str) -> httpx.Response:
        body = {
            "business_name": f"{plan} shop",
            "contact_email": email,
            "plan_type": plan,
            "wallets": {"ethereum": DEMO_ETHEREUM_XPUB},
        }
        return await http.post("/v1/merchants", json=body)

    big = await sign_up(email_in(range(256, 4096), f"big{tag}"), "enterprise")
    assert big.status_code == 201, big.text
    assert big.json()["shard"] == 2
    # The email is claimed on its own slot's (shared) shard: a second sign-up with it is refused.
    again = await sign_up(big.json()["contact_email"].upper(), "free")
    assert again.status_code == 409, again.text
    # A free merchant whose email's slot is on the enterprise shard lives on a shared one.
    small_email = email_in(ENTERPRISE_SLOTS, f"small{tag}")
    small = await sign_up(small_email, "free")
    assert small.status_code == 201, small.text
    assert small.json()["shard"] in (0, 1)
    assert (await sign_up(small_email, "enterprise")).status_code == 409
    for merchant in (big.json(), small.json()):
        read = await http.get(f"/v1/merchants/{merchant['id']}")
        assert read.status_code == 200 and read.json()["contact_email"] == merchant["contact_email"]
    listed = {m["id"] for m in (await http.get("/v1/merchants?limit=100")).json()["data"]}
    assert {big.json()["id"], small.json()["id"]} <= listed

    # The shard joined at runtime runs the whole pipeline: its relay publishes the enterprise
    # merchant's invoice, and the customer service's consumer there projects its customer.
    issued = await http.post(f"/v1/merchants/{big.json()['id']}/api-keys", json={"name": "k"})
    assert issued.status_code == 201, issued.text
    merchant = bearer(issued.json()["key"])
    invoice = await http.post("/v1/invoices", json=invoice_body(email="payer@placed.test"), headers=merchant)
    assert invoice.status_code == 201, invoice.text
    deadline = time.monotonic() + 30
    while not (customers := (await http.get("/v1/customers", headers=merchant)).json()["data"]):
        assert time.monotonic() < deadline, "the customer was not projected"
        await asyncio.sleep(0.2)
    assert [c["email"] for c in customers] == ["payer@placed.test"]
