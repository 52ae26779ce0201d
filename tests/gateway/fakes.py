"""In-memory stand-ins for the four services, served by a real grpc.aio server on port 0.

They do just enough of each RPC's contract (ownership, NOT_FOUND, UNAUTHENTICATED, field
violations) to exercise the gateway end to end, and record the metadata of every call.
"""

from __future__ import annotations

import asyncio
import datetime as dt
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
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from libs.common.grpc_errors import to_status
from services.merchant.domain import ApiKey

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
        self.endpoints: dict[str, merchant_pb2.WebhookEndpoint] = {}
        self.deliveries: dict[str, merchant_pb2.WebhookDelivery] = {}  # seeded by tests
        self.updates: list[merchant_pb2.UpdateWebhookEndpointRequest] = []
        self.delivery_queries: list[merchant_pb2.ListWebhookDeliveriesRequest] = []

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
        # What the key may hold is the real aggregate's decision, not this stand-in's.
        held: frozenset[str] | None = None
        if request.WhichOneof("grantor") == "granting_api_key_id":
            grantor = next((k for k in self.keys.values() if k.id == request.granting_api_key_id), None)
            if grantor is None or grantor.merchant_id != request.merchant_id:
                await fail(
                    context, PermissionDenied("the granting API key is not an active key of this merchant")
                )
            own = set(grantor.permissions)
            held = frozenset(p for p in own if apikeys.allows(grantor.key_type, own, p))
        elif request.WhichOneof("grantor") is None:
            await fail(context, InvalidArgument.field("grantor", "is required"))
        try:
            issued, plaintext = ApiKey.issue(
                key_id,
                merchant_id=uuid.UUID(request.merchant_id),
                name=request.name,
                key_type=request.key_type,
                permissions=None if request.use_default_permissions else list(request.permissions),
                held=held,
                expires_at=None,
                now=dt.datetime.now(dt.UTC),
            )
        except CheckoutError as error:
            await fail(context, error)
        key = merchant_pb2.ApiKey(
            id=str(key_id),
            merchant_id=request.merchant_id,
            name=request.name,
            key_type=issued.pending[0].key_type,
            permissions=issued.pending[0].permissions,
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

    # -- webhooks (tests/gateway/test_webhooks.py): ownership and the shapes, no delivery ------
    async def _owned_endpoint(
        self, merchant_id: str, endpoint_id: str, context: Context
    ) -> merchant_pb2.WebhookEndpoint:
        endpoint = self.endpoints.get(endpoint_id)
        if endpoint is None or endpoint.merchant_id != merchant_id:
            await fail(context, NotFound("webhook endpoint not found"))
        return endpoint

    async def CreateWebhookEndpoint(
        self, request: merchant_pb2.CreateWebhookEndpointRequest, context: Context
    ) -> merchant_pb2.WebhookEndpointWithSecret:
        self.recorder.record("CreateWebhookEndpoint", context)
        if request.url.startswith("http://10."):
            await fail(context, InvalidArgument.field("url", "address 10.0.0.1 is private"))
        endpoint = merchant_pb2.WebhookEndpoint(
            id=str(ids.new_id(ids.slot_of(uuid.UUID(request.merchant_id)))),
            merchant_id=request.merchant_id,
            url=request.url,
            events=request.events,
            status="active",
            max_retries=request.max_retries if request.HasField("max_retries") else 8,
            retry_backoff=request.retry_backoff or "exponential",
            timeout_seconds=request.timeout_seconds or 10,
            allowed_ips=request.allowed_ips,
            created_at=now(),
            updated_at=now(),
        )
        self.endpoints[endpoint.id] = endpoint
        return merchant_pb2.WebhookEndpointWithSecret(endpoint=endpoint, secret="whsec_fake")

    async def GetWebhookEndpoint(
        self, request: merchant_pb2.GetWebhookEndpointRequest, context: Context
    ) -> merchant_pb2.WebhookEndpoint:
        self.recorder.record("GetWebhookEndpoint", context)
        return await self._owned_endpoint(request.merchant_id, request.endpoint_id, context)

    async def ListWebhookEndpoints(
        self, request: merchant_pb2.ListWebhookEndpointsRequest, context: Context
    ) -> merchant_pb2.ListWebhookEndpointsResponse:
        self.recorder.record("ListWebhookEndpoints", context)
        mine = [e for e in self.endpoints.values() if e.merchant_id == request.merchant_id]
        return merchant_pb2.ListWebhookEndpointsResponse(endpoints=mine)

    async def UpdateWebhookEndpoint(
        self, request: merchant_pb2.UpdateWebhookEndpointRequest, context: Context
    ) -> merchant_pb2.WebhookEndpoint:
        self.recorder.record("UpdateWebhookEndpoint", context)
        self.updates.append(request)
        endpoint = await self._owned_endpoint(request.merchant_id, request.endpoint_id, context)
        if request.HasField("status"):
            endpoint.status = request.status
        return endpoint

    async def ListWebhookDeliveries(
        self, request: merchant_pb2.ListWebhookDeliveriesRequest, context: Context
    ) -> merchant_pb2.ListWebhookDeliveriesResponse:
        self.recorder.record("ListWebhookDeliveries", context)
        await self._owned_endpoint(request.merchant_id, request.endpoint_id, context)
        self.delivery_queries.append(request)
        found = [d for d in self.deliveries.values() if d.endpoint_id == request.endpoint_id]
        return merchant_pb2.ListWebhookDeliveriesResponse(deliveries=found, next_cursor="")

    async def RedeliverWebhook(
        self, request: merchant_pb2.RedeliverWebhookRequest, context: Context
    ) -> merchant_pb2.WebhookDelivery:
        self.recorder.record("RedeliverWebhook", context)
        delivery = self.deliveries.get(request.delivery_id)
        if delivery is None or delivery.merchant_id != request.merchant_id:
            await fail(context, NotFound("webhook delivery not found"))
        delivery.status = "pending"
        return delivery

    async def DeleteWebhookEndpoint(
        self, request: merchant_pb2.DeleteWebhookEndpointRequest, context: Context
    ) -> merchant_pb2.WebhookEndpoint:
        self.recorder.record("DeleteWebhookEndpoint", context)
        endpoint = await self._owned_endpoint(request.merchant_id, request.endpoint_id, context)
        del self.endpoints[endpoint.id]
        endpoint.status = "deleted"
        return endpoint

    async def RotateWebhookSecret(
        self, request: merchant_pb2.RotateWebhookSecretRequest, context: Context
    ) -> merchant_pb2.WebhookEndpointWithSecret:
        self.recorder.record("RotateWebhookSecret", context)
        endpoint = await self._owned_endpoint(request.merchant_id, request.endpoint_id, context)
        return merchant_pb2.WebhookEndpointWithSecret(endpoint=endpoint, secret="whsec_rotated")

    async def GetWebhookDelivery(
        self, request: merchant_pb2.GetWebhookDeliveryRequest, context: Context
    ) -> merchant_pb2.WebhookDelivery:
        self.recorder.record("GetWebhookDelivery", context)
        delivery = self.deliveries.get(request.delivery_id)
        if delivery is None or delivery.merchant_id != request.merchant_id:
            await fail(context, NotFound("webhook delivery not found"))
        return delivery

    # Templates beyond create: not found or empty is all the gateway tests need.
    async def GetNotificationTemplate(
        self, request: merchant_pb2.GetNotificationTemplateRequest, context: Context
    ) -> merchant_pb2.NotificationTemplate:
        self.recorder.record("GetNotificationTemplate", context)
        await fail(context, NotFound("notification template not found"))

    async def UpdateNotificationTemplate(
        self, request: merchant_pb2.UpdateNotificationTemplateRequest, context: Context
    ) -> merchant_pb2.NotificationTemplate:
        self.recorder.record("UpdateNotificationTemplate", context)
        await fail(context, NotFound("notification template not found"))

    async def DeleteNotificationTemplate(
        self, request: merchant_pb2.DeleteNotificationTemplateRequest, context: Context
    ) -> merchant_pb2.NotificationTemplate:
        self.recorder.record("DeleteNotificationTemplate", context)
        await fail(context, NotFound("notification template not found"))

    async def ListNotificationTemplates(
        self, request: merchant_pb2.ListNotificationTemplatesRequest, context: Context
    ) -> merchant_pb2.ListNotificationTemplatesResponse:
        self.recorder.record("ListNotificationTemplates", context)
        return merchant_pb2.ListNotificationTemplatesResponse()

    async def ListNotificationDeliveries(
        self, request: merchant_pb2.ListNotificationDeliveriesRequest, context: Context
    ) -> merchant_pb2.ListNotificationDeliveriesResponse:
        self.recorder.record("ListNotificationDeliveries", context)
        return merchant_pb2.ListNotificationDeliveriesResponse()

    async def CreateNotificationTemplate(
        self, request: merchant_pb2.CreateNotificationTemplateRequest, context: Context
    ) -> merchant_pb2.NotificationTemplate:
        self.recorder.record("CreateNotificationTemplate", context)
        if "${oops}" in request.body_template:
            await fail(context, InvalidArgument.field("body_template", "unknown field ${oops}"))
        return merchant_pb2.NotificationTemplate(
            id=str(ids.new_id(ids.slot_of(uuid.UUID(request.merchant_id)))),
            merchant_id=request.merchant_id,
            event_type=request.event_type,
            subject=request.subject,
            body_template=request.body_template,
            recipient=request.recipient or "customer",
            is_active=request.is_active if request.HasField("is_active") else True,
            created_at=now(),
            updated_at=now(),
        )


class FakeInvoices(invoice_pb2_grpc.InvoiceServiceServicer):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.invoices: dict[str, invoice_pb2.Invoice] = {}
        self.delay = 0.0
        # Seeded by tests: invoice id -> its payments / audit entries.
        self.payments: dict[str, list[invoice_pb2.Payment]] = {}
        self.audit: dict[str, list[invoice_pb2.AuditEntry]] = {}
        self.cancels: dict[str, invoice_pb2.Invoice] = {}  # idempotency key -> first result

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
            overpaid=invoice.overpaid,
            paid_late=invoice.paid_late,
            payments=[
                invoice_pb2.CheckoutPayment(
                    tx_hash=p.tx_hash,
                    amount=p.amount,
                    status=p.status,
                    confirmations=p.confirmations,
                    required_confirmations=p.required_confirmations,
                )
                for p in self.payments.get(invoice.id, [])
            ],
        )

    async def GetShardStats(
        self, request: invoice_pb2.GetShardStatsRequest, context: Context
    ) -> invoice_pb2.ShardStats:
        self.recorder.record("GetShardStats", context)
        return invoice_pb2.ShardStats(shard=request.shard, invoices=len(self.invoices))

    async def _own(self, merchant_id: str, invoice_id: str, context: Context) -> invoice_pb2.Invoice:
        invoice = self.invoices.get(invoice_id)
        if invoice is None or invoice.merchant_id != merchant_id:
            await fail(context, NotFound("no such invoice"))
        return invoice

    async def CancelInvoice(
        self, request: invoice_pb2.CancelInvoiceRequest, context: Context
    ) -> invoice_pb2.Invoice:
        metadata = self.recorder.record("CancelInvoice", context)
        replay = self.cancels.get(metadata.get("x-idempotency-key", ""))
        if replay is not None:
            return replay
        invoice = await self._own(request.merchant_id, request.invoice_id, context)
        if invoice.status != "pending":
            await fail(context, FailedPrecondition(f"a {invoice.status} invoice cannot be cancelled"))
        invoice.status = "cancelled"
        invoice.status_reason = request.reason or "cancelled by the merchant"
        result = invoice_pb2.Invoice()
        result.CopyFrom(invoice)
        if "x-idempotency-key" in metadata:
            self.cancels[metadata["x-idempotency-key"]] = result
        return result

    async def ListPayments(
        self, request: invoice_pb2.ListPaymentsRequest, context: Context
    ) -> invoice_pb2.ListPaymentsResponse:
        self.recorder.record("ListPayments", context)
        await self._own(request.merchant_id, request.invoice_id, context)
        return invoice_pb2.ListPaymentsResponse(payments=self.payments.get(request.invoice_id, []))

    async def ListAuditEntries(
        self, request: invoice_pb2.ListAuditEntriesRequest, context: Context
    ) -> invoice_pb2.ListAuditEntriesResponse:
        self.recorder.record("ListAuditEntries", context)
        await self._own(request.merchant_id, request.invoice_id, context)
        entries = self.audit.get(request.invoice_id, [])
        start = int(request.cursor or 0)
        page = entries[start : start + request.limit]
        more = start + request.limit < len(entries)
        return invoice_pb2.ListAuditEntriesResponse(
            entries=page, next_cursor=str(start + request.limit) if more else ""
        )


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
        # Platform metrics per shard, seeded by tests; a shard in `failing` answers UNAVAILABLE,
        # one in `stalled` never answers (the caller's deadline ends the call).
        self.platform: dict[int, analytics_pb2.PlatformMetrics] = {}
        self.failing: set[int] = set()
        self.stalled: set[int] = set()
        # A summary seeded by a test, answered for any period instead of the one-currency default.
        self.summary: analytics_pb2.Summary | None = None

    async def GetDailyMetrics(
        self, request: analytics_pb2.GetDailyMetricsRequest, context: Context
    ) -> analytics_pb2.GetDailyMetricsResponse:
        self.recorder.record("GetDailyMetrics", context)
        row = analytics_pb2.DailyMetric(
            metric_date=request.from_date,
            currency="USD",
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

    async def GetSummary(
        self, request: analytics_pb2.GetSummaryRequest, context: Context
    ) -> analytics_pb2.Summary:
        self.recorder.record("GetSummary", context)
        if request.period not in ("7d", "30d", "90d", "all"):
            await fail(context, InvalidArgument.field("period", "must be one of 7d, 30d, 90d, all"))
        if self.summary is not None:
            return self.summary
        return analytics_pb2.Summary(
            period=request.period,
            from_date="" if request.period == "all" else "2026-01-01",
            to_date=request.as_of,
            invoices_created=3,
            invoices_paid=1,
            amount_created="37.50",
            amount_paid="12.50",
            currency="USD",
            conversion_rate="33.33",
            by_currency=[
                analytics_pb2.CurrencyTotals(
                    currency="USD",
                    invoices_created=3,
                    invoices_paid=1,
                    amount_created="37.50",
                    amount_paid="12.50",
                    conversion_rate="33.33",
                )
            ],
        )

    async def GetPlatformMetrics(
        self, request: analytics_pb2.GetPlatformMetricsRequest, context: Context
    ) -> analytics_pb2.PlatformMetrics:
        self.recorder.record("GetPlatformMetrics", context)
        if request.shard in self.stalled:
            await asyncio.Event().wait()  # cancelled when the caller's deadline passes
        if request.shard in self.failing:
            await fail(context, Unavailable(f"shard {request.shard} database is down"))
        return self.platform.get(request.shard, analytics_pb2.PlatformMetrics(shard=request.shard))


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
        self.analytics = FakeAnalytics(self.recorder)
        analytics_pb2_grpc.add_AnalyticsServiceServicer_to_server(self.analytics, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.address = ""

    async def start(self) -> None:
        port = self.server.add_insecure_port("127.0.0.1:0")
        await self.server.start()
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        self.address = f"127.0.0.1:{port}"

    async def stop(self) -> None:
        await self.server.stop(None)
