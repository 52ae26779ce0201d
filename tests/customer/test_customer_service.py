"""The customer service over real gRPC, fed by real invoice events relayed through JetStream."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any

import asyncpg
import grpc
import pytest
from checkout.customer.v1 import customer_pb2 as pb
from checkout.customer.v1 import customer_pb2_grpc

from libs.common import ids
from libs.common.config import Config
from libs.common.consumer import rebuild
from libs.common.eventstore import StoredEvent
from libs.common.grpc_errors import from_rpc_error
from services.customer.projections import CustomersProjection
from services.customer.service import SPEC
from tests.common.eventsource import EventSource, event_source, invoice_created, merchant_on_shard
from tests.common.support import poll
from tests.services import running

if TYPE_CHECKING:  # the async stub type exists only in the generated .pyi
    Stub = customer_pb2_grpc.CustomerServiceAsyncStub


def stub_of(channel: grpc.aio.Channel) -> Stub:
    return customer_pb2_grpc.CustomerServiceStub(channel)


@pytest.fixture
async def source(config: Config) -> AsyncIterator[EventSource]:
    async with event_source(config) as started:
        yield started


def customer_id(merchant_id: uuid.UUID, email: str) -> str:
    return str(ids.derived_id(ids.slot_of(merchant_id), "customer", str(merchant_id), email.lower()))


async def invoice(
    source: EventSource, merchant_id: uuid.UUID, at: dt.datetime, email: str = ""
) -> StoredEvent:
    invoice_id, event = invoice_created(merchant_id, total="10.00", at=at, email=email)
    [stored] = await source.append(invoice_id, "Invoice", event)
    return stored


async def get(stub: Stub, merchant_id: uuid.UUID, customer: str) -> pb.Customer:
    return await stub.GetCustomer(pb.GetCustomerRequest(merchant_id=str(merchant_id), customer_id=customer))


async def fails_with(call: Awaitable[Any], code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    assert error.value.code() == code
    return error.value


async def table(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return list(await pool.fetch("SELECT * FROM customers ORDER BY id"))


async def test_a_customer_is_created_once_per_merchant_and_email_whatever_its_case(
    config: Config, source: EventSource
) -> None:
    merchant, _ = merchant_on_shard(config, 0, "alice-shop")
    other, _ = merchant_on_shard(config, 1, "other-shop")
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    first = await invoice(source, merchant, t0, "Alice@Example.com")
    await invoice(source, merchant, t0 + dt.timedelta(minutes=2), "ALICE@EXAMPLE.COM")
    await invoice(source, merchant, t0 + dt.timedelta(minutes=1), "alice@example.com")
    await invoice(source, merchant, t0 + dt.timedelta(minutes=3))  # anonymous: no customer
    await invoice(source, other, t0, "alice@example.com")
    alice = customer_id(merchant, "alice@example.com")
    others_alice = customer_id(other, "alice@example.com")
    assert alice != others_alice

    async with running(SPEC, config) as (runtime, channel):
        stub = stub_of(channel)

        async def counted(merchant_id: uuid.UUID, customer: str, n: int) -> bool:
            try:
                return (await get(stub, merchant_id, customer)).invoice_count == n
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.NOT_FOUND
                return False

        await poll(lambda: counted(merchant, alice, 3), what="three invoices of alice on shard 0")
        await poll(lambda: counted(other, others_alice, 1), what="the other merchant's alice on shard 1")

        found = await get(stub, merchant, alice)
        assert (found.id, found.merchant_id, found.email, found.status) == (
            alice,
            str(merchant),
            "alice@example.com",
            "active",
        )
        assert found.created_at.ToDatetime(tzinfo=dt.UTC) == t0
        assert found.last_seen_at.ToDatetime(tzinfo=dt.UTC) == t0 + dt.timedelta(minutes=2)
        listed = await stub.ListCustomers(pb.ListCustomersRequest(merchant_id=str(merchant)))
        assert [c.id for c in listed.customers] == [alice]

        # Another merchant's customer is not found, never forbidden; nor is nonsense.
        await fails_with(get(stub, other, alice), grpc.StatusCode.NOT_FOUND)
        await fails_with(get(stub, merchant, others_alice), grpc.StatusCode.NOT_FOUND)
        await fails_with(get(stub, merchant, "not-a-uuid"), grpc.StatusCode.NOT_FOUND)

        # A relay that republishes after a crash (a new Nats-Msg-Id) must not count twice.
        seq = await source.redeliver(first)
        await poll(
            lambda: source.consumer_acked_through("customer-customers-s0", seq), what="the duplicate's ack"
        )
        assert (await get(stub, merchant, alice)).invoice_count == 3

        # Dropped and rebuilt from the invoice events, the read model is the same.
        pool = runtime.pools[0]
        live = await table(pool)
        events = [e for e in await source.envelopes(0) if e.type in CustomersProjection.event_types]
        await rebuild(pool, CustomersProjection(), events, CustomersProjection.reset_sql)
        assert await table(pool) == live


async def test_customers_are_listed_newest_first_filtered_by_email_and_paged_by_cursor(
    config: Config, source: EventSource
) -> None:
    merchant, _ = merchant_on_shard(config, 1, "list-shop")
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=1)
    # c3 and c4 arrive in the same microsecond: the id breaks the tie, and no page loses one.
    times = [t0, t0 + dt.timedelta(minutes=1), t0 + dt.timedelta(minutes=2), t0 + dt.timedelta(minutes=3)]
    times.append(times[3])
    for n, at in enumerate(times):
        await invoice(source, merchant, at, f"C{n}@Shop.test")

    async with running(SPEC, config) as (_, channel):
        stub = stub_of(channel)

        def listed(**kwargs: Any) -> Awaitable[pb.ListCustomersResponse]:
            return stub.ListCustomers(pb.ListCustomersRequest(merchant_id=str(merchant), **kwargs))

        async def all_there() -> bool:
            return len((await listed(limit=200)).customers) == 5

        await poll(all_there, what="five customers")
        everyone = (await listed()).customers
        expected = sorted(
            ((times[n], customer_id(merchant, f"c{n}@shop.test")) for n in range(5)), reverse=True
        )
        assert [c.id for c in everyone] == [cid for _, cid in expected]

        pages: list[list[str]] = []
        cursor = ""
        while True:
            page = await listed(limit=2, cursor=cursor)
            pages.append([c.id for c in page.customers])
            if not page.next_cursor:
                break
            cursor = page.next_cursor
        assert [len(p) for p in pages] == [2, 2, 1]
        assert [cid for p in pages for cid in p] == [c.id for c in everyone]

        only = await listed(email="C2@SHOP.TEST")
        assert [c.email for c in only.customers] == ["c2@shop.test"]
        assert only.next_cursor == ""
        assert list((await listed(email="nobody@shop.test")).customers) == []

        for kwargs, field in (
            ({"limit": 201}, "limit"),
            ({"limit": -1}, "limit"),
            ({"cursor": "bm9wZQ"}, "cursor"),
        ):
            error = await fails_with(listed(**kwargs), grpc.StatusCode.INVALID_ARGUMENT)
            assert [d.field for d in from_rpc_error(error).details] == [field]


async def test_payment_history_is_paged_and_only_for_the_merchants_own_customer(
    config: Config, source: EventSource
) -> None:
    merchant, _ = merchant_on_shard(config, 0, "pay-shop")
    stranger, _ = merchant_on_shard(config, 0, "stranger-shop")
    t0 = dt.datetime.now(dt.UTC).replace(microsecond=0)
    await invoice(source, merchant, t0, "payer@shop.test")
    payer = customer_id(merchant, "payer@shop.test")

    async with running(SPEC, config) as (runtime, channel):
        stub = stub_of(channel)

        async def projected() -> bool:
            listed = await stub.ListCustomers(pb.ListCustomersRequest(merchant_id=str(merchant)))
            return [c.id for c in listed.customers] == [payer]

        await poll(projected, what="the payer")

        def payments(merchant_id: uuid.UUID, **kwargs: Any) -> Awaitable[pb.ListCustomerPaymentsResponse]:
            return stub.ListCustomerPayments(
                pb.ListCustomerPaymentsRequest(merchant_id=str(merchant_id), customer_id=payer, **kwargs)
            )

        # invoice.created made the invoice's row, pending (the payment history projection).
        async def pending_row() -> bool:
            return [p.status for p in (await payments(merchant)).payments] == ["pending"]

        await poll(pending_row, what="the invoice's pending row")
        assert (await payments(merchant)).next_cursor == ""

        # More rows, to page through.
        amounts = ["0.004166666666666667", "0.00020833", "12.50"]
        await runtime.pools[0].executemany(
            "INSERT INTO payment_history (customer_id, invoice_id, amount, currency, status, paid_at, created_at) "
            "VALUES ($1, $2, $3::numeric, $4, 'confirmed', $5, $5)",
            [
                (
                    uuid.UUID(payer),
                    ids.new_id(ids.slot_of(merchant)),
                    amount,
                    currency,
                    t0 + dt.timedelta(minutes=n + 1),
                )
                for n, (amount, currency) in enumerate(zip(amounts, ["ETH", "BTC", "USD"], strict=True))
            ],
        )
        first = await payments(merchant, limit=2)
        second = await payments(merchant, limit=2, cursor=first.next_cursor)
        assert [p.amount for p in first.payments] == ["12.50", "0.00020833"]
        assert [p.amount for p in second.payments] == ["0.004166666666666667", "10.00"]
        assert second.next_cursor == ""
        assert {p.customer_id for p in [*first.payments, *second.payments]} == {payer}

        await fails_with(payments(stranger), grpc.StatusCode.NOT_FOUND)
