"""The platform maxima (libs/common/limits.py) hold end to end: what the invoice service accepts,
every projection downstream can hold, and what it cannot hold is refused up front, naming the
field, instead of becoming an event that some consumer retries forever (issue 9, item 2a)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal

import grpc
from checkout.analytics.v1 import analytics_pb2, analytics_pb2_grpc
from checkout.customer.v1 import customer_pb2, customer_pb2_grpc
from checkout.invoice.v1 import invoice_pb2 as pb

from libs.common import limits
from libs.common.config import Config
from libs.common.grpc_errors import from_rpc_error
from libs.common.protoconv import struct
from services.analytics.service import SPEC as ANALYTICS_SPEC
from services.customer.service import SPEC as CUSTOMER_SPEC
from tests.common.support import ethereum_account_xpub, poll_for
from tests.invoice.test_evm_payments import chain_config, invoice_in
from tests.invoice.test_evm_payments import watching as invoice_platform
from tests.invoice.test_invoice_service import (
    CALLER,
    ETH_XPUB,
    MNEMONIC,
    invoice_request,
    new_merchant,
    platform,
    rpc_error,
)
from tests.services import running
from tools.devchain.testing import EvmChain

# One ETH buys the largest invoice, so the dev chain's accounts can pay it.
RATE = f"ETH-USD={limits.TOTAL_MAX}.00,BTC-USD=48000.00,USDC-USD=1.00"


def biggest_invoice(merchant_id: str) -> pb.CreateInvoiceRequest:
    """Every field at its maximum: the most items, each at the largest quantity, the longest
    strings and metadata, and a total of exactly TOTAL_MAX (half items, half tax)."""
    half = limits.TOTAL_MAX / 2
    price = half / (limits.ITEMS_MAX * limits.QUANTITY_MAX)
    domain = "@shop-max.test"
    return invoice_request(
        merchant_id,
        title="T" * limits.TITLE_MAX_CHARS,
        description="D" * limits.DESCRIPTION_MAX_CHARS,
        items=[
            pb.LineItem(
                name=f"{i:03d}".ljust(limits.ITEM_NAME_MAX_CHARS, "n"),
                quantity=str(limits.QUANTITY_MAX),
                unit_price=f"{price:.2f}",
            )
            for i in range(limits.ITEMS_MAX)
        ],
        tax=f"{half:.2f}",
        customer_email="p" * (limits.EMAIL_MAX_CHARS - len(domain)) + domain,
        metadata=struct({"blob": "m" * (limits.METADATA_MAX_BYTES - len('{"blob":""}'))}),
        expires_in_seconds=limits.EXPIRY_MAX_SECONDS,
    )


@dataclasses.dataclass
class Readers:
    customers: customer_pb2_grpc.CustomerServiceAsyncStub
    analytics: analytics_pb2_grpc.AnalyticsServiceAsyncStub


@asynccontextmanager
async def readers(config: Config) -> AsyncIterator[Readers]:
    async with (
        running(CUSTOMER_SPEC, config) as (_, customer_channel),
        running(ANALYTICS_SPEC, config) as (_, analytics_channel),
    ):
        yield Readers(
            customer_pb2_grpc.CustomerServiceStub(customer_channel),
            analytics_pb2_grpc.AnalyticsServiceStub(analytics_channel),
        )


async def test_the_biggest_accepted_invoice_flows_through_every_projection(
    config: Config, evm_chain: EvmChain
) -> None:
    chain_cfg = await chain_config(config, evm_chain, fixed_rates=RATE)
    async with invoice_platform(chain_cfg) as p, readers(chain_cfg) as read:
        merchant = await new_merchant(p, "max@shop.test", {"ethereum": ethereum_account_xpub(MNEMONIC, 11)})
        invoice = await p.invoices.CreateInvoice(biggest_invoice(merchant.id), metadata=CALLER)
        assert invoice.total == f"{limits.TOTAL_MAX:.2f}" and invoice.crypto_amount == "1.000000000000000000"
        # A day of a hundred more at the maximum: its sums pass what NUMERIC(20, 8) holds (10^12).
        most = [pb.LineItem(name="Max", quantity="10000", unit_price=f"{limits.TOTAL_MAX / 10_000:.2f}")]
        for _ in range(10):
            await asyncio.gather(
                *(
                    p.invoices.CreateInvoice(
                        invoice_request(merchant.id, items=most, tax=""), metadata=CALLER
                    )
                    for _ in range(10)
                )
            )
        await evm_chain.wait_receipt(
            await evm_chain.send_eth(evm_chain.accounts[9], invoice.payment_address, 10**18)
        )
        await invoice_in(p, merchant.id, invoice.id, "paid", "confirmed")

        async def history() -> customer_pb2.CustomerPayment | None:
            listed = await read.customers.ListCustomerPayments(
                customer_pb2.ListCustomerPaymentsRequest(
                    merchant_id=merchant.id, customer_id=invoice.customer_id
                )
            )
            paid = [x for x in listed.payments if x.status in ("paid", "confirmed")]
            return paid[0] if paid else None

        row = await poll_for(history, timeout=30, what="the customer's payment history to show it paid")
        assert (row.invoice_id, row.amount, row.currency) == (invoice.id, invoice.total, "USD")

        today = dt.datetime.now(dt.UTC).date()

        async def day() -> tuple[int, Decimal, int, Decimal] | None:
            metrics = await read.analytics.GetDailyMetrics(
                analytics_pb2.GetDailyMetricsRequest(
                    merchant_id=merchant.id,
                    from_date=(today - dt.timedelta(days=1)).isoformat(),
                    to_date=(today + dt.timedelta(days=1)).isoformat(),
                )
            )
            sums = (
                sum(m.invoices_created for m in metrics.data),
                sum((Decimal(m.amount_created) for m in metrics.data), Decimal(0)),
                sum(m.invoices_paid for m in metrics.data),
                sum((Decimal(m.amount_paid) for m in metrics.data), Decimal(0)),
            )
            return sums if sums[0] == 101 and sums[2] == 1 else None

        _, amount_created, _, amount_paid = await poll_for(
            day, timeout=30, what="the day's analytics to count every invoice and the paid one"
        )
        assert amount_created == 101 * limits.TOTAL_MAX and amount_paid == limits.TOTAL_MAX


async def test_the_quantity_that_poisoned_analytics_is_refused_naming_the_field(config: Config) -> None:
    async with platform(config) as p:
        merchant = await new_merchant(p, "poison@shop.test", {"ethereum": ETH_XPUB})
        poison = invoice_request(
            merchant.id, items=[pb.LineItem(name="Beans", quantity="1000000000000000000", unit_price="1.00")]
        )
        error = await rpc_error(p.invoices.CreateInvoice(poison, metadata=CALLER))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        remote = from_rpc_error(error)
        assert [(d.field, d.reason) for d in remote.details] == [
            ("items[0].quantity", f"must be at most {limits.QUANTITY_MAX}")
        ]
        over = invoice_request(
            merchant.id,
            items=[pb.LineItem(name="Gold", quantity="10", unit_price=f"{limits.UNIT_PRICE_MAX}")],
            tax="0.01",
        )
        remote = from_rpc_error(await rpc_error(p.invoices.CreateInvoice(over, metadata=CALLER)))
        assert [d.field for d in remote.details] == ["total"]
        pool = p.pool(merchant.id)
        for table in ("events", "invoices", "address_allocations"):
            assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 0, table


async def test_the_longest_request_id_the_gateway_passes_on_is_audited(config: Config) -> None:
    async with platform(config) as p:
        merchant = await new_merchant(p, "request-id@shop.test", {"ethereum": ETH_XPUB})
        request_id = "r" * limits.REQUEST_ID_MAX_CHARS
        invoice = await p.invoices.CreateInvoice(
            invoice_request(merchant.id), metadata=(("x-actor", "api_key:test"), ("x-request-id", request_id))
        )
        trail = await p.invoices.ListAuditEntries(
            pb.ListAuditEntriesRequest(merchant_id=merchant.id, invoice_id=invoice.id)
        )
        assert [e.request_id for e in trail.entries] == [request_id]
