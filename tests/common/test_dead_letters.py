"""Dead letters: an event a projection keeps failing on is parked after a bounded number of
attempts, the events after it are applied, and the operator lists it and retries it over HTTP
once the cause is fixed. A rebuild skips and reports such events instead of aborting."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Sequence

import asyncpg
import pytest
from prometheus_client import generate_latest

from libs.common import telemetry
from libs.common.config import Config
from libs.common.consumer import rebuild
from libs.common.db import Connection
from libs.common.messaging import Envelope
from tests.common.support import poll
from tests.e2e.test_checkout_flow import bearer, invoice_body
from tests.platform import SPECS, Platform, platform
from tests.services import with_projections

TABLE = "CREATE TABLE IF NOT EXISTS fragile_seen (event_id UUID PRIMARY KEY, title TEXT NOT NULL)"


class Fragile:
    """A read model of invoice titles that cannot take some titles until it is fixed."""

    name = "fragile"
    event_types: Sequence[str] = ("invoice.created",)

    def __init__(self) -> None:
        self.rejects: set[str] = {"poison"}

    async def apply(self, conn: Connection, event: Envelope) -> None:
        title = str(event.data["title"])
        if title in self.rejects:
            raise ValueError(f"cannot take the title {title!r}")
        await conn.execute("INSERT INTO fragile_seen (event_id, title) VALUES ($1, $2)", event.id, title)


@pytest.fixture
def fragile() -> Fragile:
    return Fragile()


@pytest.fixture
async def running_platform(config: Config, fragile: Fragile) -> AsyncIterator[Platform]:
    customer = SPECS["customer"]
    specs = {
        **SPECS,
        "customer": with_projections(customer, lambda own: [*own, fragile]),
    }
    fast = dataclasses.replace(config, consumer_max_attempts=3, consumer_retry_seconds=0.1)
    async with platform(fast, specs) as started:
        for _, pool in started.runtimes["customer"].pools.items():
            await pool.execute(TABLE)
        yield started


async def titles(pool: asyncpg.Pool) -> list[str]:
    return [r["title"] for r in await pool.fetch("SELECT title FROM fragile_seen ORDER BY title")]


async def titles_are(pool: asyncpg.Pool, expected: list[str]) -> bool:
    return await titles(pool) == expected


async def dead_letters_are(p: Platform, count: int) -> bool:
    listed = await p.http.get("/v1/admin/dead-letters", headers=p.operator)
    return len(listed.json()["data"]) == count


def parked_metric(projection: str) -> float:
    for line in generate_latest().decode().splitlines():
        if line.startswith("checkout_dead_letters_parked_total{") and f'projection="{projection}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def create_invoices(p: Platform, key: str, *names: str) -> list[str]:
    created = []
    for name in names:
        response = await p.http.post("/v1/invoices", json=invoice_body(name), headers=bearer(key))
        assert response.status_code == 201, response.text
        created.append(response.json()["id"])
    return created


async def test_a_failing_event_is_parked_later_ones_applied_and_the_operator_retries_it_once_fixed(
    running_platform: Platform, fragile: Fragile
) -> None:
    telemetry.setup("test")
    p = running_platform
    before = parked_metric("fragile")
    merchant, key = await p.onboard()
    pool = p.runtimes["customer"].pools[merchant["shard"]]
    await create_invoices(p, key, "poison", "good 1", "good 2")

    await poll(lambda: titles_are(pool, ["good 1", "good 2"]), timeout=20, what="the later events applied")
    await poll(lambda: dead_letters_are(p, 1), timeout=20, what="the failing event parked")
    listed = (await p.http.get("/v1/admin/dead-letters", headers=p.operator)).json()
    assert listed["complete"] is True and listed["failed"] == [] and listed["next_cursor"] is None
    [letter] = listed["data"]
    assert (letter["service"], letter["shard"], letter["projection"]) == (
        "customer",
        merchant["shard"],
        "fragile",
    )
    assert letter["event_type"] == "invoice.created" and letter["attempts"] == 3
    assert "cannot take the title 'poison'" in letter["error"]
    assert letter["event"]["data"]["title"] == "poison" and letter["event"]["id"] == letter["event_id"]
    assert parked_metric("fragile") == before + 1
    for query, expected in [
        ("?service=invoice", 0),
        ("?projection=fragile", 1),
        ("?event_type=invoice.paid", 0),
    ]:
        found = (await p.http.get(f"/v1/admin/dead-letters{query}", headers=p.operator)).json()["data"]
        assert len(found) == expected, query

    still = await p.http.post(f"/v1/admin/dead-letters/{letter['id']}/retry", headers=p.operator)
    assert still.status_code == 409 and "poison" in still.json()["error"]["message"]
    [again] = (await p.http.get("/v1/admin/dead-letters", headers=p.operator)).json()["data"]
    assert again["attempts"] == 4

    fragile.rejects.clear()  # the fix is deployed
    retried = await p.http.post(f"/v1/admin/dead-letters/{letter['id']}/retry", headers=p.operator)
    assert retried.status_code == 200, retried.text
    assert retried.json()["applied"] is True and retried.json()["dead_letter"]["id"] == letter["id"]
    assert await titles(pool) == ["good 1", "good 2", "poison"]
    assert (await p.http.get("/v1/admin/dead-letters", headers=p.operator)).json()["data"] == []
    gone = await p.http.post(f"/v1/admin/dead-letters/{letter['id']}/retry", headers=p.operator)
    assert gone.status_code == 404


async def test_dead_letters_are_listed_newest_first_a_page_at_a_time_and_need_the_operator(
    running_platform: Platform, fragile: Fragile
) -> None:
    p = running_platform
    fragile.rejects = {"bad 1", "bad 2", "bad 3"}
    _, key = await p.onboard()
    await create_invoices(p, key, "bad 1", "bad 2", "bad 3")

    await poll(lambda: dead_letters_are(p, 3), timeout=20, what="three dead letters")
    first = (await p.http.get("/v1/admin/dead-letters?limit=2", headers=p.operator)).json()
    second = (
        await p.http.get(f"/v1/admin/dead-letters?limit=2&cursor={first['next_cursor']}", headers=p.operator)
    ).json()
    pages = [d["event"]["data"]["title"] for d in first["data"] + second["data"]]
    assert second["next_cursor"] is None and sorted(pages) == ["bad 1", "bad 2", "bad 3"]
    assert [d["id"] for d in first["data"] + second["data"]] == sorted(
        (d["id"] for d in first["data"] + second["data"]), key=uuid.UUID, reverse=True
    )
    assert (await p.http.get("/v1/admin/dead-letters", headers=bearer(key))).status_code == 403
    bad = await p.http.get("/v1/admin/dead-letters?shard=9&limit=0", headers=p.operator)
    assert bad.status_code == 422 and {d["field"] for d in bad.json()["error"]["details"]} == {
        "shard",
        "limit",
    }


async def test_a_rebuild_skips_and_reports_parked_and_failing_events_instead_of_aborting(
    running_platform: Platform, fragile: Fragile
) -> None:
    p = running_platform
    merchant, key = await p.onboard()
    shard = merchant["shard"]
    pool = p.runtimes["customer"].pools[shard]
    await create_invoices(p, key, "poison", "good 1", "good 2")
    await poll(lambda: titles_are(pool, ["good 1", "good 2"]), timeout=20, what="the live read model")
    await poll(lambda: dead_letters_are(p, 1), timeout=20, what="the failing event parked")

    invoice_runtime = p.runtimes["invoice"]
    async with invoice_runtime.pools[shard].acquire() as conn:
        stored = await invoice_runtime.store.read_all(conn, limit=10_000)
    events = [Envelope.of(e, shard) for e in stored if e.event_type in Fragile.event_types]
    fragile.rejects = {"poison", "good 2"}  # good 2 now fails too, during the rebuild only
    report = await rebuild(pool, fragile, events, "TRUNCATE fragile_seen", service="customer")

    assert report.applied == 1
    reasons = {s.event_id: s.reason for s in report.skipped}
    poison, _, good_2 = (e.id for e in events)
    assert set(reasons) == {poison, good_2}
    assert reasons[poison] == "parked as a dead letter" and "good 2" in reasons[good_2]
    assert await titles(pool) == ["good 1"]
    # The event that failed in the rebuild is parked too, for the operator to retry.
    listed = (await p.http.get("/v1/admin/dead-letters?projection=fragile", headers=p.operator)).json()[
        "data"
    ]
    assert {d["event_id"] for d in listed} == {str(poison), str(good_2)}
