"""The event feed through the merchant client against the real stack: a receiver that was down
catches up in order without gaps, a long poll answers when an invoice is created, a merchant
sees only its own events, old events go after the retention, and bad input is a 422."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest
from checkout_client import AsyncClient, Client, Conflict, InvalidArgument, calls
from checkout_client.types import Merchant

from libs.common.config import Config
from services.merchant.feed import repository
from services.merchant.feed.application import prune
from tests.common.support import poll, poll_for
from tests.exports.test_exports import new_merchant
from tests.merchant.webhook_support import receiver
from tools.devstack import Stack

ITEMS = [{"name": "Beans 1kg", "quantity": "3", "unit_price": "12.34"}]


def onboard(stack: Stack) -> tuple[Merchant, str]:
    return new_merchant(stack, "Feed shop")


def invoice(client: Client, title: str) -> str:
    made = client.create_invoice(title=title, items=ITEMS, currency="USD", crypto_currency="ETH")
    return str(made["id"])


async def feed_of(client: Client, count: int, after: str | None = None) -> list[dict[str, Any]]:
    """The whole feed after `after`, once it holds `count` events (they are recorded a moment
    after the invoice service commits them)."""

    async def whole() -> list[dict[str, Any]] | None:
        found = list(client.iter_events(after=after))
        return found if len(found) >= count else None

    return await poll_for(whole, timeout=15, what=f"{count} events in the feed")


def numbered(events: Sequence[dict[str, Any]]) -> list[int]:
    return [e["sequence"] for e in events]


async def test_a_receiver_that_was_down_catches_up_in_order_without_gaps(stack: Stack) -> None:
    _, key = onboard(stack)
    with Client(stack.base_url, key) as client:
        first, second = invoice(client, "one"), invoice(client, "two")
        client.cancel_invoice(first)
        seen = await feed_of(client, 3)
        assert numbered(seen) == [1, 2, 3]
        assert [(e["type"], e["data"]["invoice_id"]) for e in seen] == [
            ("invoice.created", first),
            ("invoice.created", second),
            ("invoice.cancelled", first),
        ]
        created = seen[0]["data"]
        assert (created["total"], created["currency"]) == ("37.02", "USD")  # the webhook's data

        # The receiver handled two events, then went down; meanwhile more happened.
        handled = client.events(limit=2)
        assert numbered(handled["data"]) == [1, 2] and handled["next_cursor"]
        cursor = handled["data"][-1]["cursor"]
        later = [invoice(client, f"while down {n}") for n in range(3)]
        caught_up = await feed_of(client, 4, after=cursor)
        assert numbered(caught_up) == [3, 4, 5, 6]
        assert [e["data"]["invoice_id"] for e in caught_up[1:]] == later
        assert len({e["id"] for e in caught_up}) == 4
        # Paging one at a time gives the same, and the end of the feed says so.
        one_by_one = list(client.pages(lambda c: calls.events(c or cursor, None, 1)))
        assert [e["id"] for e in one_by_one] == [e["id"] for e in caught_up]
        last = client.events(after=caught_up[-1]["cursor"])
        assert last == {"data": [], "next_cursor": None}
        only = list(client.iter_events(types=["invoice.cancelled"]))
        assert [(e["sequence"], e["type"]) for e in only] == [(3, "invoice.cancelled")]


async def test_a_feed_event_is_the_webhook_delivery_of_the_same_event(stack: Stack) -> None:
    _, key = onboard(stack)
    async with receiver() as hook:
        with Client(stack.base_url, key) as client:
            client.create_webhook_endpoint(url=hook.url(), events=["invoice.created"])
            made = invoice(client, "hooked")
            await poll(lambda: len(hook.received) == 1, timeout=20, what="the webhook POST")
            (event,) = await feed_of(client, 1)
    delivered = json.loads(hook.received[0].body)
    assert delivered == {k: event[k] for k in ("id", "type", "created_at", "data")}
    assert delivered["data"]["invoice_id"] == made


async def test_a_long_poll_answers_as_soon_as_an_invoice_is_created(stack: Stack) -> None:
    _, key = onboard(stack)
    with Client(stack.base_url, key) as client:
        invoice(client, "before")
        (existing,) = await feed_of(client, 1)
    async with AsyncClient(stack.base_url, key) as feed:
        begin = time.monotonic()
        empty = await feed.events(after=existing["cursor"], wait=1)
        assert empty["data"] == [] and time.monotonic() - begin >= 0.9  # it waited

        waiting = asyncio.create_task(feed.events(after=existing["cursor"], wait=25))
        begin = time.monotonic()
        made = await feed.create_invoice(title="now", items=ITEMS, currency="USD", crypto_currency="ETH")
        answer = await asyncio.wait_for(waiting, timeout=30)
        took = time.monotonic() - begin
    assert [(e["type"], e["data"]["invoice_id"]) for e in answer["data"]] == [("invoice.created", made["id"])]
    assert took < 10, f"the long poll answered {took:.1f} s after the invoice, not at once"


async def test_a_merchant_never_sees_another_merchants_events(stack: Stack) -> None:
    _, key = onboard(stack)
    _, other_key = onboard(stack)
    with Client(stack.base_url, key) as client, Client(stack.base_url, other_key) as other:
        mine = invoice(client, "mine")
        theirs = invoice(other, "theirs")
        (own,) = await feed_of(client, 1)
        (their,) = await feed_of(other, 1)
        assert own["data"]["invoice_id"] == mine and their["data"]["invoice_id"] == theirs
        assert own["sequence"] == their["sequence"] == 1  # each merchant's own numbering
        assert other.events(after=own["cursor"])["data"] == []  # a cursor names no merchant's events


def merchant_db(stack: Stack, shard: int) -> Any:
    config = Config(
        database_url=stack.servers.database_url, database_prefix=stack.extra_env["CHECKOUT_DATABASE_PREFIX"]
    )
    return asyncpg.create_pool(
        config.shard_dsn(shard), min_size=1, max_size=4, server_settings={"search_path": "merchant"}
    )


async def test_concurrent_recordings_are_numbered_in_commit_order_and_a_rollback_leaves_no_gap(
    stack: Stack,
) -> None:
    merchant_id = uuid.uuid4()  # the feed's tables only: no merchant needed

    async def visible() -> list[int]:
        return [r["sequence"] for r in await repository.events_after(pool, merchant_id, 0, (), 10)]

    async def record(conn: Any) -> int | None:
        return await repository.record(conn, merchant_id, uuid.uuid4(), "invoice.created", "{}")

    async with merchant_db(stack, 0) as pool, pool.acquire() as a, pool.acquire() as b:
        # A takes number 1 and holds it; B, recording for the same merchant, waits for A.
        ta, tb = a.transaction(), b.transaction()
        await ta.start()
        await tb.start()
        assert await record(a) == 1
        behind = asyncio.create_task(record(b))
        await poll_for(
            lambda: _waiting_on_lock(pool, b), timeout=10, what="the second recording to wait for the first"
        )
        assert await visible() == []
        await ta.rollback()  # A's number goes back: B gets 1, not 2
        assert await behind == 1
        await tb.commit()
        assert await visible() == [1]

        # Two more, committed in the order they took their numbers: never 3 without 2.
        ta, tb = a.transaction(), b.transaction()
        await ta.start()
        await tb.start()
        assert await record(a) == 2
        behind = asyncio.create_task(record(b))
        await poll_for(lambda: _waiting_on_lock(pool, b), timeout=10, what="the recording to wait")
        await ta.commit()
        assert await behind == 3
        assert await visible() == [1, 2]
        await tb.commit()
        assert await visible() == [1, 2, 3]


async def _waiting_on_lock(pool: Any, conn: Any) -> bool | None:
    pid = conn.get_server_pid()
    waiting = await pool.fetchval("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid)
    return True if waiting else None


async def test_events_past_the_retention_are_pruned_from_the_oldest_end(stack: Stack) -> None:
    merchant, key = onboard(stack)
    with Client(stack.base_url, key) as client:
        for n in range(3):
            invoice(client, f"aging {n}")
        first, second, _ = await feed_of(client, 3)
        async with merchant_db(stack, merchant["shard"]) as pool:
            await pool.execute(
                """UPDATE event_feed SET recorded_at = recorded_at - interval '91 days'
                   WHERE merchant_id = $1 AND sequence <= 2""",
                uuid.UUID(merchant["id"]),
            )
            # The upkeep's own cut: what CHECKOUT_EVENT_FEED_RETENTION_DAYS=90 keeps.
            assert await prune(pool, dt.datetime.now(dt.UTC) - dt.timedelta(days=90)) >= 2
        assert numbered(list(client.iter_events())) == [3]
        # A receiver whose cursor is the second event misses nothing: it reads on.
        assert numbered(list(client.iter_events(after=second["cursor"]))) == [3]
        # One whose cursor is the first would silently skip the deleted second: it is told.
        with pytest.raises(Conflict) as expired:
            client.events(after=first["cursor"])
        assert [d["field"] for d in expired.value.details] == ["after"]
        assert "retention" in str(expired.value)


def test_bad_feed_input_is_422_naming_the_field(stack: Stack) -> None:
    _, key = onboard(stack)
    with Client(stack.base_url, key) as client:
        cases: list[tuple[dict[str, Any], str]] = [
            ({"after": "not-a-cursor"}, "after"),
            ({"types": ["invoice.nope"]}, "types"),
            ({"limit": 0}, "limit"),
            ({"wait": 31}, "wait"),
        ]
        for kwargs, field in cases:
            with pytest.raises(InvalidArgument) as invalid:
                client.events(**kwargs)
            assert [d["field"] for d in invalid.value.details] == [field], kwargs
