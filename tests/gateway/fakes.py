"""In-memory stand-ins for the four services, served by a real grpc.aio server on port 0.

They do just enough of each RPC's contract (ownership, NOT_FOUND, UNAUTHENTICATED, field
violations) to exercise the gateway end to end, and record the metadata of every call.
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any, NoReturn

import grpc
from checkout.analytics.v1 import analytics_pb2, analytics_pb2_grpc
from checkout.customer.v1 import customer_pb2, customer_pb2_grpc
from checkout.invoice.v1 import invoice_pb2, invoice_pb2_grpc
from checkout.merchant.v1 import merchant_pb2, merchant_pb2_grpc
from google.protobuf import timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

# The public alias `health.aio` is missing from the stubs; this is the module it names.
from grpc_health.v1._async import HealthServicer

from libs.common import apikeys, ids
from libs.common.errors import (
    AlreadyExists,
    CheckoutError,
    InvalidArgument,
    NotFound,
    Unauthenticated,
)
from libs.common.grpc_errors import to_status

Context = grpc.aio.ServicerContext[Any, Any]


async def fail(context: Context, error: CheckoutError) -> NoReturn:
    status = to_status(error)
    await context.abort(status.code, status.details, status.trailing_metadata)


def now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []

    def record(self, method: str, context: Context) -> dict[str, str]:
        metadata = {key: str(value) for key, value in context.invocation_metadata() or ()}
        self.calls.append((method, metadata))
        return metadata

    def last(self, method: str) -> dict[str, str]:
        return [m for name, m in self.calls if name == method][-1]


class FakeMerchants(merchant_pb2_grpc.MerchantServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.merchants: dict[str, merchant_pb2.Merchant] = {}
        self.keys: dict[str, merchant_pb2.ApiKey] = {}  # plaintext -> key
        self.replies: dict[str, merchant_pb2.Merchant] = {}  # idempotency key -> first result

    async def CreateMerchant(
        self, request: merchant_pb2.CreateMerchantRequest, context: Context
    ) -> merchant_pb2.Merchant:
        metadata = self.recorder.record("CreateMerchant", context)
        replay = self.replies.get(metadata.get("x-idempotency-key", ""))
        if replay is not None:
            return replay
        if any(m.contact_email == request.contact_email for m in self.merchants.values()):
            await fail(context, AlreadyExists("contact_email is taken"))
        merchant = merchant_pb2.Merchant(
            id=request.merchant_id,
            business_name=request.business_name,
            contact_email=request.contact_email,
            status="active",
            plan_type=request.plan_type or "free",
            settings=request.settings,
            wallets=request.wallets,
            shard=ids.slot_of(uuid.UUID(request.merchant_id)) * 2 // 4096,
            created_at=now(),
            updated_at=now(),
        )
        self.merchants[merchant.id] = merchant
        if "x-idempotency-key" in metadata:
            self.replies[metadata["x-idempotency-key"]] = merchant
        return merchant

    async def GetMerchant(
        self, request: merchant_pb2.GetMerchantRequest, context: Context
    ) -> merchant_pb2.Merchant:
        self.recorder.record("GetMerchant", context)
        if request.merchant_id not in self.merchants:
            await fail(context, NotFound("no such merchant"))
        return self.merchants[request.merchant_id]

    async def UpdateMerchant(
        self, request: merchant_pb2.UpdateMerchantRequest, context: Context
    ) -> merchant_pb2.Merchant:
        self.recorder.record("UpdateMerchant", context)
        merchant = self.merchants.get(request.merchant_id)
        if merchant is None:
            await fail(context, NotFound("no such merchant"))
        if request.HasField("business_name"):
            merchant.business_name = request.business_name
        if request.replace_settings:
            merchant.settings.CopyFrom(request.settings)
        if request.replace_wallets:
            merchant.wallets.clear()
            merchant.wallets.update(request.wallets)
        return merchant

    async def ListMerchants(
        self, request: merchant_pb2.ListMerchantsRequest, context: Context
    ) -> merchant_pb2.ListMerchantsResponse:
        self.recorder.record("ListMerchants", context)
        ordered = sorted(self.merchants.values(), key=lambda m: uuid.UUID(m.id).int, reverse=True)
        if request.cursor:
            ordered = [m for m in ordered if uuid.UUID(m.id).int < uuid.UUID(request.cursor).int]
        page = ordered[: request.limit]
        more = len(ordered) > request.limit
        return merchant_pb2.ListMerchantsResponse(merchants=page, next_cursor=page[-1].id if more else "")

    async def CreateApiKey(
        self, request: merchant_pb2.CreateApiKeyRequest, context: Context
    ) -> merchant_pb2.CreateApiKeyResponse:
        self.recorder.record("CreateApiKey", context)
        if request.merchant_id not in self.merchants:
            await fail(context, NotFound("no such merchant"))
        key_id = ids.new_id(ids.slot_of(uuid.UUID(request.merchant_id)))
        plaintext = apikeys.mint(key_id, request.key_type)
        key = merchant_pb2.ApiKey(
            id=str(key_id),
            merchant_id=request.merchant_id,
            name=request.name,
            key_type=request.key_type,
            permissions=request.permissions,
            status="active",
            created_at=now(),
            prefix=apikeys.prefix_of(plaintext),
        )
        if request.HasField("expires_at"):
            key.expires_at.CopyFrom(request.expires_at)
        self.keys[plaintext] = key
        return merchant_pb2.CreateApiKeyResponse(api_key=key, key=plaintext)

    async def ListApiKeys(
        self, request: merchant_pb2.ListApiKeysRequest, context: Context
    ) -> merchant_pb2.ListApiKeysResponse:
        self.recorder.record("ListApiKeys", context)
        mine = [k for k in self.keys.values() if k.merchant_id == request.merchant_id]
        return merchant_pb2.ListApiKeysResponse(api_keys=mine)

    async def RevokeApiKey(
        self, request: merchant_pb2.RevokeApiKeyRequest, context: Context
    ) -> merchant_pb2.ApiKey:
        self.recorder.record("RevokeApiKey", context)
        for key in self.keys.values():
            if key.id == request.api_key_id and key.merchant_id == request.merchant_id:
                key.status = "revoked"
                return key
        await fail(context, NotFound("no such API key"))

    async def VerifyApiKey(
        self, request: merchant_pb2.VerifyApiKeyRequest, context: Context
    ) -> merchant_pb2.VerifyApiKeyResponse:
        self.recorder.record("VerifyApiKey", context)
        key = self.keys.get(request.key)
        if key is None or key.status != "active":
            await fail(context, Unauthenticated("invalid API key"))
        return merchant_pb2.VerifyApiKeyResponse(api_key=key)


class FakeInvoices(invoice_pb2_grpc.InvoiceServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.invoices: dict[str, invoice_pb2.Invoice] = {}
        self.delay = 0.0

    async def CreateInvoice(
        self, request: invoice_pb2.CreateInvoiceRequest, context: Context
    ) -> invoice_pb2.Invoice:
        self.recorder.record("CreateInvoice", context)
        await asyncio.sleep(self.delay)
        if request.currency != "USD":
            await fail(context, InvalidArgument.field("currency", "only USD is priced"))
        subtotal = sum((Decimal(i.quantity) * Decimal(i.unit_price) for i in request.items), Decimal(0))
        total = subtotal + Decimal(request.tax or "0")
        invoice_id = str(ids.new_id(ids.slot_of(uuid.UUID(request.merchant_id))))
        invoice = invoice_pb2.Invoice(
            id=invoice_id,
            merchant_id=request.merchant_id,
            title=request.title,
            description=request.description,
            items=request.items,
            subtotal=f"{subtotal:.2f}",
            tax=request.tax or "0.00",
            total=f"{total:.2f}",
            currency=request.currency,
            crypto_currency=request.crypto_currency,
            crypto_amount="0.004166666666666667",
            amount_paid="0",
            payment_address="0x0000000000000000000000000000000000000001",
            payment_uri="ethereum:0x0000000000000000000000000000000000000001?value=4166666666666667",
            status="pending",
            exchange_rate=invoice_pb2.ExchangeRate(rate="3000.00", source="fixed", fetched_at=now()),
            payment_tolerance=request.payment_tolerance,
            metadata=request.metadata,
            created_at=now(),
            updated_at=now(),
            expires_at=now(),
        )
        self.invoices[invoice_id] = invoice
        return invoice

    async def GetInvoice(
        self, request: invoice_pb2.GetInvoiceRequest, context: Context
    ) -> invoice_pb2.Invoice:
        self.recorder.record("GetInvoice", context)
        invoice = self.invoices.get(request.invoice_id)
        if invoice is None or invoice.merchant_id != request.merchant_id:
            await fail(context, NotFound("no such invoice"))
        return invoice

    async def ListInvoices(
        self, request: invoice_pb2.ListInvoicesRequest, context: Context
    ) -> invoice_pb2.ListInvoicesResponse:
        self.recorder.record("ListInvoices", context)
        mine = [i for i in self.invoices.values() if i.merchant_id == request.merchant_id]
        return invoice_pb2.ListInvoicesResponse(invoices=mine[: request.limit])

    async def SearchInvoices(
        self, request: invoice_pb2.SearchInvoicesRequest, context: Context
    ) -> invoice_pb2.ListInvoicesResponse:
        self.recorder.record("SearchInvoices", context)
        found = [
            i
            for i in self.invoices.values()
            if i.merchant_id == request.merchant_id and request.query.lower() in i.title.lower()
        ]
        return invoice_pb2.ListInvoicesResponse(invoices=found, next_cursor="")

    async def GetCheckout(
        self, request: invoice_pb2.GetCheckoutRequest, context: Context
    ) -> invoice_pb2.CheckoutView:
        self.recorder.record("GetCheckout", context)
        invoice = self.invoices.get(request.invoice_id)
        if invoice is None:
            await fail(context, NotFound("no such invoice"))
        return invoice_pb2.CheckoutView(
            id=invoice.id,
            title=invoice.title,
            status=invoice.status,
            total=invoice.total,
            currency=invoice.currency,
            crypto_currency=invoice.crypto_currency,
            crypto_amount=invoice.crypto_amount,
            amount_paid=invoice.amount_paid,
            payment_address=invoice.payment_address,
            payment_uri=invoice.payment_uri,
            expires_at=invoice.expires_at,
        )

    async def GetShardStats(
        self, request: invoice_pb2.GetShardStatsRequest, context: Context
    ) -> invoice_pb2.ShardStats:
        self.recorder.record("GetShardStats", context)
        return invoice_pb2.ShardStats(shard=request.shard, invoices=len(self.invoices))


class FakeCustomers(customer_pb2_grpc.CustomerServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def GetCustomer(
        self, request: customer_pb2.GetCustomerRequest, context: Context
    ) -> customer_pb2.Customer:
        self.recorder.record("GetCustomer", context)
        await fail(context, NotFound("no such customer"))

    async def ListCustomers(
        self, request: customer_pb2.ListCustomersRequest, context: Context
    ) -> customer_pb2.ListCustomersResponse:
        self.recorder.record("ListCustomers", context)
        customer = customer_pb2.Customer(
            id=str(ids.new_id(0)),
            merchant_id=request.merchant_id,
            email=request.email or "payer@example.com",
            status="active",
            created_at=now(),
        )
        return customer_pb2.ListCustomersResponse(customers=[customer], next_cursor="next")

    async def ListCustomerPayments(
        self, request: customer_pb2.ListCustomerPaymentsRequest, context: Context
    ) -> customer_pb2.ListCustomerPaymentsResponse:
        self.recorder.record("ListCustomerPayments", context)
        return customer_pb2.ListCustomerPaymentsResponse()


class FakeAnalytics(analytics_pb2_grpc.AnalyticsServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    async def GetDailyMetrics(
        self, request: analytics_pb2.GetDailyMetricsRequest, context: Context
    ) -> analytics_pb2.GetDailyMetricsResponse:
        self.recorder.record("GetDailyMetrics", context)
        row = analytics_pb2.DailyMetric(
            metric_date=request.from_date,
            invoices_created=3,
            invoices_paid=1,
            amount_created="37.50",
            amount_paid="12.50",
            conversion_rate="0.3333",
        )
        return analytics_pb2.GetDailyMetricsResponse(data=[row])

    async def GetShardView(
        self, request: analytics_pb2.GetShardViewRequest, context: Context
    ) -> analytics_pb2.ShardView:
        self.recorder.record("GetShardView", context)
        return analytics_pb2.ShardView(shard=request.shard, merchants=7, invoices=0)


class FakeServices:
    """All four services and a health servicer on one server, like a local `make up`."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.merchants = FakeMerchants(self.recorder)
        self.invoices = FakeInvoices(self.recorder)
        self.health = HealthServicer()
        self.server = grpc.aio.server()
        merchant_pb2_grpc.add_MerchantServiceServicer_to_server(self.merchants, self.server)
        invoice_pb2_grpc.add_InvoiceServiceServicer_to_server(self.invoices, self.server)
        customer_pb2_grpc.add_CustomerServiceServicer_to_server(FakeCustomers(self.recorder), self.server)
        analytics_pb2_grpc.add_AnalyticsServiceServicer_to_server(FakeAnalytics(self.recorder), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.address = ""

    async def start(self) -> None:
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        self.address = f"127.0.0.1:{port}"

    async def stop(self) -> None:
        await self.server.stop(None)
