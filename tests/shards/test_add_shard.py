"""A running stack gains a shard through the operator API: no process restarts, every service
serves it, it owns no slots, and the balance proposes moving slots to it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from libs.common.config import SERVICES, with_database
from libs.common.devservers import Servers
from tests.cli.test_admin import admin
from tests.conftest import running_stack
from tools.devchain.testing import EvmChain
from tools.devstack import Stack


@pytest.fixture(scope="module")
def shard_stack(
    servers: Servers, evm_chain: EvmChain, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with running_stack(servers, evm_chain, Path(tmp_path_factory.mktemp("shard-logs")), "shards") as running:
        yield running


@pytest.fixture
async def http(shard_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {shard_stack.admin_token}"}
    async with httpx.AsyncClient(base_url=shard_stack.base_url, headers=headers, timeout=60) as client:
        yield client


async def shards_until(http: httpx.AsyncClient, ready: Any, seconds: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        answer = (await http.get("/v1/admin/shards")).json()
        if ready(answer):
            return dict(answer)
        assert time.monotonic() < deadline, f"not within {seconds}s: {answer}"
        await asyncio.sleep(0.2)


async def test_a_registered_shard_is_served_by_every_service_without_a_restart(
    http: httpx.AsyncClient, shard_stack: Stack, servers: Servers
) -> None:
    for n in range(6):
        email = f"shop-{n}-{uuid.uuid4().hex[:6]}@shards.test"
        created = await http.post(
            "/v1/merchants", json={"business_name": f"Shop {n}", "contact_email": email}
        )
        assert created.status_code == 201, created.text
    pids = {name: process.pid for name, process in shard_stack.processes.items()}
    dsn = with_database(servers.database_url, f"shards_extra_{uuid.uuid4().hex[:8]}")

    added = await http.post("/v1/admin/shards", json={"dsn": dsn, "tier": "shared"})
    assert added.status_code == 201, added.text
    assert added.json() == {"id": 2, "tier": "shared", "dsn": dsn, "slots": 0}

    answer = await shards_until(http, lambda a: len(a["shards"]) == 3 and a["shards"][2]["healthy"])
    third = answer["shards"][2]
    assert (third["slots"], third["slot_ranges"], third["merchants"], third["rows"]) == (0, [], 0, 0)
    assert answer["shard_map_version"] == 1  # registering moves nothing
    assert sum(s["slots"] for s in answer["shards"]) == 4096
    # Two shards holding the merchants and an empty one: the planner's first move fills it.
    assert answer["balance"]["balanced"] is False and answer["balance"]["complete"] is True
    moves = answer["balance"]["proposed_moves"]
    assert moves and moves[0]["to_shard"] == 2 and moves[0]["rows"] > 0
    assert {name: process.pid for name, process in shard_stack.processes.items()} == pids


async def test_a_shard_that_cannot_be_reached_or_is_registered_already_is_refused(
    http: httpx.AsyncClient, servers: Servers
) -> None:
    unreachable = await http.post("/v1/admin/shards", json={"dsn": "postgresql://nobody@127.0.0.1:1/x"})
    assert unreachable.status_code == 422, unreachable.text
    assert unreachable.json()["error"]["details"][0]["field"] == "dsn"
    bad_tier = await http.post("/v1/admin/shards", json={"dsn": servers.database_url, "tier": "gold"})
    assert bad_tier.status_code == 422
    before = (await http.get("/v1/admin/shards")).json()["shards"]
    first = before[0]
    assert first["tier"] == "shared" and isinstance(first["rows"], int) and isinstance(first["bytes"], int)
    dsn = with_database(servers.database_url, f"shards_twice_{uuid.uuid4().hex[:8]}")
    assert (await http.post("/v1/admin/shards", json={"dsn": dsn})).status_code == 201
    again = await http.post("/v1/admin/shards", json={"dsn": dsn})
    assert again.status_code == 409, again.text
    assert len((await http.get("/v1/admin/shards")).json()["shards"]) == len(before) + 1


def test_the_operator_cli_adds_a_shard_and_shows_the_plan(shard_stack: Stack, servers: Servers) -> None:
    dsn = with_database(servers.database_url, f"shards_cli_{uuid.uuid4().hex[:8]}")
    added = admin(shard_stack, "shards", "add", "--dsn", dsn, "--tier", "pro")
    assert added.returncode == 0, added.stderr
    assert "registered" in added.stdout and "owns no slots" in added.stdout
    listed = admin(shard_stack, "shards", "list")
    assert listed.returncode == 0 and "map version 1" in listed.stdout and "pro" in listed.stdout
    plan = admin(shard_stack, "shards", "plan", "--json")
    assert plan.returncode == 0 and '"proposed_moves"' in plan.stdout
    as_before = admin(shard_stack, "shards", "--json")  # the command as it was, before the group
    assert as_before.returncode == 0 and '"tier": "pro"' in as_before.stdout
    # A rebuild finds the added shard's database in the registry, not in the environment.
    number = added.stdout.split()[1]
    rebuilt = admin(shard_stack, "projections", "rebuild", "customer", "customers", "--shard", number)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert f"shard {number}: 0 applied" in rebuilt.stdout
    unknown = admin(shard_stack, "projections", "rebuild", "customer", "customers", "--shard", "99")
    assert unknown.returncode == 2 and "not registered" in unknown.stderr


async def test_every_service_exports_the_rows_and_bytes_of_each_of_its_shards(shard_stack: Stack) -> None:
    async def per_shard(service: str) -> dict[str, dict[str, float]]:
        async with httpx.AsyncClient(timeout=10) as client:
            text = (await client.get(shard_stack.metrics_url(service))).text
        found: dict[str, dict[str, float]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in ("checkout_shard_rows", "checkout_shard_bytes"):
                    found.setdefault(sample.name, {})[sample.labels["shard"]] = sample.value
        return found

    for service in SERVICES:
        deadline = time.monotonic() + 30
        while not {"0", "1"} <= set((found := await per_shard(service)).get("checkout_shard_bytes", {})):
            assert time.monotonic() < deadline, f"{service}: {found}"
            await asyncio.sleep(0.2)
        assert all(size > 0 for size in found["checkout_shard_bytes"].values())
        assert {"0", "1"} <= set(found["checkout_shard_rows"])
