"""The invoice service over real gRPC, next to a real merchant service, on real PostgreSQL,
NATS and Redis."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import grpc
import pytest
from checkout.invoice.v1 import invoice_pb2 as pb
from checkout.invoice.v1 import invoice_pb2_grpc
from checkout.merchant.v1 import merchant_pb2, merchant_pb2_grpc

from libs.common import ids
from libs.common.addresses import derive_bitcoin_address, derive_ethereum_address
from libs.common.composition import ServiceSpec
from libs.common.config import Config, Endpoint
from libs.common.grpc_errors import from_rpc_error
from libs.common.protoconv import struct
from libs.common.service import Runtime
from services.invoice import projections, repository
from services.invoice.service import SPEC
from services.merchant.service import SPEC as MERCHANT_SPEC
from tests.common.support import ethereum_account_xpub, poll
from tests.services import running

MNEMONIC = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
ETH_XPUB = ethereum_account_xpub(MNEMONIC)
# Published vectors of the same mnemonic (BIP84 test vectors; the widely published m/44'/60'/0'/0/0).
BTC_ZPUB = (
    "zpub6rFR7y4Q2AijBEqTUquhVz398htDFrtymD9xYYfG1m4wAcvPhXNfE3EfH1r1"
    "ADqtfSdVCToUG868RvUUkgDKf31mGDtKsAYz2oz2AGutZYs"
)
ETH_ADDRESS_0 = "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"
BTC_ADDRESS_0 = "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"

CALLER = (("x-actor", "api_key:test"), ("x-request-id", "req-test-1"))


@dataclass
class Platform:
    merchants: merchant_pb2_grpc.MerchantServiceAsyncStub
    invoices: invoice_pb2_grpc.InvoiceServiceAsyncStub
    runtime: Runtime

    def pool(self, any_id: str) -> asyncpg.Pool:
        return self.runtime.pool_for(uuid.UUID(any_id))


@asynccontextmanager
async def platform(config: Config, invoice_spec: ServiceSpec = SPEC) -> AsyncIterator[Platform]:
    async with running(MERCHANT_SPEC, config) as (merchant_runtime, merchant_channel):
        assert merchant_runtime.server is not None
        merchant_address = merchant_runtime.server.address
        invoice_config = dataclasses.replace(
            config, endpoints={"merchant": (Endpoint(frozenset(config.shards), merchant_address),)}
        )
        async with running(invoice_spec, invoice_config) as (runtime, channel):
            yield Platform(
                merchant_pb2_grpc.MerchantServiceStub(merchant_channel),
                invoice_pb2_grpc.InvoiceServiceStub(channel),
                runtime,
            )


async def new_merchant(
    p: Platform, email: str, wallets: dict[str, str] | None = None, settings: dict[str, Any] | None = None
) -> merchant_pb2.Merchant:
    return await p.merchants.CreateMerchant(
        merchant_pb2.CreateMerchantRequest(
            merchant_id=str(ids.new_merchant_id(email)),
            business_name="Shop",
            contact_email=email,
            wallets=wallets or {},
            settings=struct(settings),
        )
    )


def invoice_request(merchant_id: str, **overrides: Any) -> pb.CreateInvoiceRequest:
    values: dict[str, Any] = {
        "merchant_id": merchant_id,
        "title": "Blue widgets",
        "description": "Two widgets and a sticker",
        "items": [
            pb.LineItem(name="Widget", quantity="2", unit_price="4.25"),
            pb.LineItem(name="Sticker", quantity="1", unit_price="0.75"),
        ],
        "tax": "0.75",
        "currency": "USD",
        "crypto_currency": "ETH",
    }
    values.update(overrides)
    return pb.CreateInvoiceRequest(**values)


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    return error.value


async def test_invoice_is_priced_addressed_read_listed_and_searched(config: Config) -> None:
    async with platform(config) as p:
        merchant = await new_merchant(
            p,
            "round@shop.test",
            {"ethereum": ETH_XPUB, "bitcoin": BTC_ZPUB},
            {"payment_tolerance": {"underpaid_percent": "1.5"}},
        )
        request = invoice_request(merchant.id, customer_email=" Payer@Example.test ")
        created = await p.invoices.CreateInvoice(request, metadata=CALLER)

        exact = sum((Decimal(i.quantity) * Decimal(i.unit_price) for i in request.items), Decimal(0))
        assert (created.subtotal, created.tax, created.total) == ("9.25", "0.75", "10.00")
        assert Decimal(created.subtotal) == exact and Decimal(created.total) == exact + Decimal("0.75")
        # 10.00 / 2400 = 0.0041666…: rounded UP to the wei, so the merchant never gets less.
        assert created.crypto_amount == "0.004166666666666667"
        assert created.payment_address == derive_ethereum_address(ETH_XPUB, 0) == ETH_ADDRESS_0
        assert created.payment_uri == f"ethereum:{ETH_ADDRESS_0}@1?value=4166666666666667"
        assert (created.exchange_rate.rate, created.exchange_rate.source) == ("2400.00", "fixed")
        assert created.exchange_rate.pair == "ETH-USD" and created.exchange_rate.HasField("fetched_at")
        assert created.payment_tolerance.underpaid_percent == "1.5"  # the merchant's default
        assert created.status == "pending" and created.network == "ethereum" and created.address_index == 0
        assert created.customer_email == "payer@example.test"
        merchant_uuid = uuid.UUID(merchant.id)
        assert created.customer_id == str(
            ids.derived_id(ids.slot_of(merchant_uuid), "customer", merchant.id, "payer@example.test")
        )
        expiry = created.expires_at.ToDatetime() - created.created_at.ToDatetime()
        assert expiry == dt.timedelta(seconds=config.invoice_expiry_seconds)
        # The id carries the merchant's slot: it routes to the merchant's shard with no lookup.
        assert ids.slot_of(uuid.UUID(created.id)) == ids.slot_of(merchant_uuid)
        assert p.runtime.shard_of(uuid.UUID(created.id)) == merchant.shard

        fetched = await p.invoices.GetInvoice(
            pb.GetInvoiceRequest(merchant_id=merchant.id, invoice_id=created.id)
        )
        assert fetched == created
        audit = await p.pool(created.id).fetchrow(
            "SELECT event, actor, request_id FROM audit_entries WHERE invoice_id = $1", uuid.UUID(created.id)
        )
        assert audit is not None and tuple(audit) == ("invoice.created", "api_key:test", "req-test-1")

        btc = await p.invoices.CreateInvoice(
            invoice_request(
                merchant.id,
                title="Gadget",
                description="",
                crypto_currency="btc",
                payment_tolerance=pb.PaymentTolerance(underpaid_percent="0.5"),
            )
        )
        assert btc.payment_address == derive_bitcoin_address(BTC_ZPUB, 0) == BTC_ADDRESS_0
        assert btc.crypto_amount == "0.00020834"  # 10.00 / 48000 = 0.000208333… rounded up to the sat
        assert btc.payment_uri == f"bitcoin:{BTC_ADDRESS_0}?amount=0.00020834"
        assert btc.payment_tolerance.underpaid_percent == "0.5"
        second_eth = await p.invoices.CreateInvoice(invoice_request(merchant.id, title="Spare parts"))
        assert second_eth.address_index == 1
        assert second_eth.payment_address == derive_ethereum_address(ETH_XPUB, 1)

        listed = await p.invoices.ListInvoices(pb.ListInvoicesRequest(merchant_id=merchant.id))
        assert [i.id for i in listed.invoices] == [second_eth.id, btc.id, created.id]
        assert listed.next_cursor == ""
        first_page = await p.invoices.ListInvoices(pb.ListInvoicesRequest(merchant_id=merchant.id, limit=2))
        rest = await p.invoices.ListInvoices(
            pb.ListInvoicesRequest(merchant_id=merchant.id, limit=2, cursor=first_page.next_cursor)
        )
        assert [i.id for i in [*first_page.invoices, *rest.invoices]] == [i.id for i in listed.invoices]
        assert rest.next_cursor == ""
        by_customer = await p.invoices.ListInvoices(
            pb.ListInvoicesRequest(merchant_id=merchant.id, customer_id=created.customer_id)
        )
        assert [i.id for i in by_customer.invoices] == [created.id]
        later = await p.invoices.ListInvoices(
            pb.ListInvoicesRequest(merchant_id=merchant.id, status="paid", created_after=created.created_at)
        )
        assert list(later.invoices) == []

        found = await p.invoices.SearchInvoices(
            pb.SearchInvoicesRequest(merchant_id=merchant.id, query="widgets")
        )
        assert [i.id for i in found.invoices] == [second_eth.id, created.id]  # description matches too
        assert [
            i.id
            for i in (
                await p.invoices.SearchInvoices(
                    pb.SearchInvoicesRequest(merchant_id=merchant.id, query="gadget")
                )
            ).invoices
        ] == [btc.id]
        paged = await p.invoices.SearchInvoices(
            pb.SearchInvoicesRequest(merchant_id=merchant.id, query="widget", limit=1)
        )
        assert [i.id for i in paged.invoices] == [second_eth.id] and paged.next_cursor == second_eth.id

        # Search filters on the index's own expression (repository.SEARCH_DOCUMENT), so the GIN
        # index can serve it; with a sequential scan ruled out, the planner shows it does.
        async with p.pool(merchant.id).acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")
            plan = await conn.fetch(
                f"EXPLAIN SELECT id FROM invoices WHERE {repository.SEARCH_DOCUMENT} @@ plainto_tsquery('english', $1)",
                "widget",
            )
        assert "idx_invoices_merchant_search" in "\n".join(r[0] for r in plan)
        sql, _ = repository.invoices_query(repository.InvoiceFilter(merchant_uuid, search="widget"), 10)
        assert f"{repository.SEARCH_DOCUMENT} @@ (" in sql
        # Stop words alone name nothing to find: no results, rather than every invoice.
        nothing = await p.invoices.SearchInvoices(
            pb.SearchInvoicesRequest(merchant_id=merchant.id, query="the")
        )
        assert list(nothing.invoices) == []

        stats = await p.invoices.GetShardStats(pb.GetShardStatsRequest(shard=merchant.shard))
        assert stats.invoices == 3


async def test_concurrent_creates_for_one_merchant_never_share_an_address(config: Config) -> None:
    async with platform(config) as p:
        merchant = await new_merchant(p, "busy@shop.test", {"ethereum": ETH_XPUB})
        created = await asyncio.gather(
            *(p.invoices.CreateInvoice(invoice_request(merchant.id, title=f"Order {n}")) for n in range(200))
        )
        assert sorted(i.address_index for i in created) == list(range(200))
        assert len({i.payment_address for i in created}) == 200
        for invoice in created[:5]:
            assert invoice.payment_address == derive_ethereum_address(ETH_XPUB, invoice.address_index)


async def test_a_merchants_creates_take_their_address_indexes_without_waiting_for_each_others_commits(
    config: Config,
) -> None:
    async with platform(config) as p:
        merchant = await new_merchant(p, "queue@shop.test", {"ethereum": ETH_XPUB})
        await p.invoices.CreateInvoice(invoice_request(merchant.id))  # index 0; the wallet is known
        pool = p.pool(merchant.id)
        blocker = await pool.acquire()
        try:
            hold = blocker.transaction()
            await hold.start()
            # Every create now stops at its audit entry, inside its own transaction.
            await blocker.execute("LOCK TABLE audit_entries IN EXCLUSIVE MODE")

            async def create(n: int) -> pb.Invoice:
                invoice: pb.Invoice = await p.invoices.CreateInvoice(
                    invoice_request(merchant.id, title=f"#{n}")
                )
                return invoice

            creates = [asyncio.create_task(create(n)) for n in range(3)]

            async def all_allocated() -> bool:
                return bool(await pool.fetchval("SELECT max(next_index) FROM address_allocations") == 4)

            # Had the allocation's row lock lasted until commit, the second create would wait here.
            await poll(all_allocated, what="three uncommitted creates to hold three indexes")
            assert not any(c.done() for c in creates)
            await hold.rollback()
        finally:
            await pool.release(blocker)
        created = await asyncio.gather(*creates)
        assert sorted(i.address_index for i in created) == [1, 2, 3]


async def test_invalid_invoice_names_every_bad_field_and_leaves_nothing_behind(config: Config) -> None:
    async with platform(config) as p:
        merchant = await new_merchant(p, "strict@shop.test", {"ethereum": ETH_XPUB})
        bad = invoice_request(
            merchant.id,
            title="  ",
            items=[pb.LineItem(name="", quantity="0", unit_price="ten")],
            tax="-1",
            currency="XYZ",
            crypto_currency="DOGE",
            customer_email="not-an-email",
            expires_in_seconds=30,
            payment_tolerance=pb.PaymentTolerance(underpaid_percent="75"),
            metadata=struct({"blob": "x" * 17_000}),
        )
        remote = from_rpc_error(await rpc_error(p.invoices.CreateInvoice(bad)))
        assert remote.code == "invalid_argument"
        assert {d.field for d in remote.details} == {
            "title",
            "items[0].name",
            "items[0].quantity",
            "items[0].unit_price",
            "tax",
            "currency",
            "crypto_currency",
            "customer_email",
            "expires_in_seconds",
            "payment_tolerance.underpaid_percent",
            "metadata",
        }
        pool = p.pool(merchant.id)
        for table in ("events", "invoices", "audit_entries", "address_allocations"):
            assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 0, table
        good = await p.invoices.CreateInvoice(invoice_request(merchant.id))
        assert good.address_index == 0


async def test_same_idempotency_key_returns_the_first_invoice_and_another_body_is_aborted(
    config: Config,
) -> None:
    async with platform(config) as p:
        merchant = await new_merchant(p, "retry@shop.test", {"ethereum": ETH_XPUB})
        key = (*CALLER, ("x-idempotency-key", "order-42"), ("x-idempotency-hash", "body-1"))
        first = await p.invoices.CreateInvoice(invoice_request(merchant.id), metadata=key)
        again = await p.invoices.CreateInvoice(invoice_request(merchant.id), metadata=key)
        assert again == first
        pool = p.pool(merchant.id)
        assert await pool.fetchval("SELECT count(*) FROM events") == 1
        assert await pool.fetchval("SELECT count(*) FROM invoices") == 1
        other_body = (*CALLER, ("x-idempotency-key", "order-42"), ("x-idempotency-hash", "body-2"))
        error = await rpc_error(
            p.invoices.CreateInvoice(invoice_request(merchant.id, title="Else"), metadata=other_body)
        )
        assert error.code() == grpc.StatusCode.ABORTED
        assert await pool.fetchval("SELECT count(*) FROM events") == 1


async def test_another_merchants_invoice_is_not_found_and_checkout_shows_only_payer_fields(
    config: Config,
) -> None:
    async with platform(config) as p:
        owner = await new_merchant(p, "owner@shop.test", {"ethereum": ETH_XPUB})
        other = await new_merchant(p, "other@shop.test", {"ethereum": ETH_XPUB})
        invoice = await p.invoices.CreateInvoice(invoice_request(owner.id, metadata=struct({"order": "A-1"})))
        for merchant_id in (other.id, str(ids.new_merchant_id("owner@shop.test"))):
            error = await rpc_error(
                p.invoices.GetInvoice(pb.GetInvoiceRequest(merchant_id=merchant_id, invoice_id=invoice.id))
            )
            assert error.code() == grpc.StatusCode.NOT_FOUND
        listed = await p.invoices.ListInvoices(pb.ListInvoicesRequest(merchant_id=other.id))
        assert list(listed.invoices) == []

        view = await p.invoices.GetCheckout(pb.GetCheckoutRequest(invoice_id=invoice.id))
        assert {f.name for f in pb.CheckoutView.DESCRIPTOR.fields} == {
            "id",
            "title",
            "status",
            "total",
            "currency",
            "crypto_currency",
            "crypto_amount",
            "amount_paid",
            "payment_address",
            "payment_uri",
            "expires_at",
            # The payer's own payments and the flags about them: still nothing of the merchant's.
            "overpaid",
            "paid_late",
            "payments",
            # For the gateway's hosted page (the chain to name, the merchant's business name to
            # look up); the gateway renders neither the id nor anything else of the merchant's.
            "network",
            "merchant_id",
            # Refunds owed to the payer, without the merchant's id or its own reason for them.
            "refunds",
        }
        assert (view.network, view.merchant_id) == ("ethereum", owner.id)
        assert (view.id, view.total, view.crypto_amount, view.payment_uri) == (
            invoice.id,
            invoice.total,
            invoice.crypto_amount,
            invoice.payment_uri,
        )
        assert view.amount_paid == "0.000000000000000000" and view.status == "pending"
        unknown_id = str(ids.new_id(ids.slot_of(uuid.UUID(owner.id))))
        missing = await rpc_error(p.invoices.GetCheckout(pb.GetCheckoutRequest(invoice_id=unknown_id)))
        assert missing.code() == grpc.StatusCode.NOT_FOUND


async def test_rebuilding_the_read_model_from_the_event_store_gives_identical_rows(config: Config) -> None:
    async with platform(config) as p:
        merchant = await new_merchant(p, "rebuild@shop.test", {"ethereum": ETH_XPUB, "bitcoin": BTC_ZPUB})
        for n in range(4):
            await p.invoices.CreateInvoice(
                invoice_request(
                    merchant.id,
                    title=f"Order {n}",
                    crypto_currency=("ETH", "BTC")[n % 2],
                    customer_email=f"payer{n}@example.test" if n % 2 else "",
                    metadata=struct({"n": n, "tags": ["a", "b"]}),
                ),
                metadata=CALLER,
            )
        pool = p.pool(merchant.id)
        read = {
            "invoices": "SELECT * FROM invoices ORDER BY id",
            "audit_entries": "SELECT * FROM audit_entries ORDER BY id",
        }
        live = {name: [dict(r) for r in await pool.fetch(sql)] for name, sql in read.items()}
        async with pool.acquire() as conn, conn.transaction():
            assert await projections.rebuild(conn, p.runtime.store) == 4
        rebuilt = {name: [dict(r) for r in await pool.fetch(sql)] for name, sql in read.items()}
        assert len(live["invoices"]) == 4 and len(live["audit_entries"]) == 4
        assert rebuilt == live
