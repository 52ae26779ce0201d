"""InvoiceService over gRPC: the one place that knows the service's protobuf.

Each method maps its request to the application's plain values (requests.py), calls the use
case and maps the answer (views.py) to its message (libs/common/views.py; an idempotent
command's answer takes the message its record was encoded from, `Reply.message_of`). Errors are typed in
libs/common/errors.py and mapped to gRPC statuses, with field violations, by the shared
interceptor (libs/common/grpc_server.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

import grpc
from checkout.invoice.v1 import invoice_pb2 as pb
from checkout.invoice.v1 import invoice_pb2_grpc
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from libs.common.protoconv import plain
from libs.common.replicas import ReplicaStatus
from libs.common.views import to_message
from services.invoice import views
from services.invoice.application import InvoiceApp
from services.invoice.messages import INVOICE_REPLY, REFUND_REPLY
from services.invoice.requests import InvoiceQuery, NewInvoice, NewRefund

Context = grpc.aio.ServicerContext[Any, Any]


def fingerprint(request: Message) -> str:
    """What an idempotency key is held to: a retry must send the same request."""
    return hashlib.sha256(request.SerializeToString(deterministic=True)).hexdigest()


def new_invoice(request: pb.CreateInvoiceRequest) -> NewInvoice:
    tolerance = request.payment_tolerance if request.HasField("payment_tolerance") else None
    return NewInvoice(
        title=request.title,
        description=request.description,
        items=[views.LineItem(i.name, i.quantity, i.unit_price) for i in request.items],
        tax=request.tax,
        currency=request.currency,
        crypto_currency=request.crypto_currency,
        customer_email=request.customer_email,
        customer_id=request.customer_id,
        expires_in_seconds=request.expires_in_seconds,
        underpaid_percent=tolerance.underpaid_percent if tolerance and tolerance.underpaid_percent else None,
        metadata=plain(request.metadata),
    )


def moment(request: Message, name: str) -> dt.datetime | None:
    """A Timestamp field as a datetime, or None when it was not sent."""
    return getattr(request, name).ToDatetime(tzinfo=dt.UTC) if request.HasField(name) else None


def bound(ts: Timestamp) -> dt.datetime | None:
    """An export window's end: None when unset (or the epoch, which no export starts at)."""
    return ts.ToDatetime(tzinfo=dt.UTC) if ts.seconds or ts.nanos else None


def invoices_page(page: views.Page[views.Invoice]) -> pb.ListInvoicesResponse:
    return pb.ListInvoicesResponse(
        invoices=[to_message(v, pb.Invoice) for v in page.items], next_cursor=page.next_cursor
    )


def replica_message(status: ReplicaStatus) -> pb.ReplicaStatus:
    message = pb.ReplicaStatus(
        name=status.name, roles=status.roles, up=status.up, lagging=status.lagging, error=status.error
    )
    if status.lag_seconds is not None:
        message.lag_seconds = status.lag_seconds
    if status.lag_bytes is not None:
        message.lag_bytes = status.lag_bytes
    return message


class InvoiceServicer(invoice_pb2_grpc.InvoiceServiceServicer):
    def __init__(self, app: InvoiceApp) -> None:
        self.app = app
        self.reads = app.reads

    async def CreateInvoice(self, request: pb.CreateInvoiceRequest, context: Context) -> pb.Invoice:
        created = await self.app.create_invoice(
            request.merchant_id, new_invoice(request), fingerprint(request)
        )
        return INVOICE_REPLY.message_of(created)  # built once, for the record and for the wire

    async def GetInvoice(self, request: pb.GetInvoiceRequest, context: Context) -> pb.Invoice:
        found = await self.reads.get_invoice(request.merchant_id, request.invoice_id)
        return to_message(found, pb.Invoice)

    async def ListInvoices(
        self, request: pb.ListInvoicesRequest, context: Context
    ) -> pb.ListInvoicesResponse:
        query = InvoiceQuery(
            merchant_id=request.merchant_id,
            limit=request.limit,
            status=request.status,
            customer_id=request.customer_id,
            created_after=moment(request, "created_after"),
            created_before=moment(request, "created_before"),
            cursor=request.cursor,
        )
        return invoices_page(await self.reads.list_invoices(query))

    async def SearchInvoices(
        self, request: pb.SearchInvoicesRequest, context: Context
    ) -> pb.ListInvoicesResponse:
        found = await self.reads.search_invoices(
            request.merchant_id, request.query, request.limit, request.cursor
        )
        return invoices_page(found)

    async def GetCheckout(self, request: pb.GetCheckoutRequest, context: Context) -> pb.CheckoutView:
        return to_message(await self.reads.get_checkout(request.invoice_id), pb.CheckoutView)

    async def GetShardStats(self, request: pb.GetShardStatsRequest, context: Context) -> pb.ShardStats:
        invoices, replicas = await self.reads.get_shard_stats(request.shard)
        return pb.ShardStats(
            shard=request.shard, invoices=invoices, replicas=[replica_message(r) for r in replicas]
        )

    async def CancelInvoice(self, request: pb.CancelInvoiceRequest, context: Context) -> pb.Invoice:
        cancelled = await self.app.cancel_invoice(
            request.merchant_id, request.invoice_id, request.reason, fingerprint(request)
        )
        return INVOICE_REPLY.message_of(cancelled)

    async def ListPayments(
        self, request: pb.ListPaymentsRequest, context: Context
    ) -> pb.ListPaymentsResponse:
        payments = await self.reads.list_payments(request.merchant_id, request.invoice_id)
        return pb.ListPaymentsResponse(payments=[to_message(p, pb.Payment) for p in payments])

    async def ListAuditEntries(
        self, request: pb.ListAuditEntriesRequest, context: Context
    ) -> pb.ListAuditEntriesResponse:
        page = await self.reads.list_audit_entries(
            request.merchant_id, request.invoice_id, request.limit, request.cursor
        )
        return pb.ListAuditEntriesResponse(
            entries=[to_message(e, pb.AuditEntry) for e in page.items], next_cursor=page.next_cursor
        )

    async def ListMetadataKeys(
        self, request: pb.ListMetadataKeysRequest, context: Context
    ) -> pb.ListMetadataKeysResponse:
        keys, truncated = await self.reads.list_metadata_keys(
            request.merchant_id, bound(request.created_after), bound(request.created_before)
        )
        return pb.ListMetadataKeysResponse(keys=keys, truncated=truncated)

    async def ListMerchantPayments(
        self, request: pb.ListMerchantPaymentsRequest, context: Context
    ) -> pb.ListPaymentsResponse:
        page = await self.reads.list_merchant_payments(
            request.merchant_id,
            request.limit,
            bound(request.detected_after),
            bound(request.detected_before),
            request.cursor,
        )
        return pb.ListPaymentsResponse(
            payments=[to_message(p, pb.Payment) for p in page.items], next_cursor=page.next_cursor
        )

    async def CreateRefund(self, request: pb.CreateRefundRequest, context: Context) -> pb.Refund:
        ask = NewRefund(
            merchant_id=request.merchant_id,
            invoice_id=request.invoice_id,
            amount=request.amount,
            crypto_amount=request.crypto_amount,
            rate=request.rate,
            reason=request.reason,
        )
        return to_message(await self.app.create_refund(ask, fingerprint(request)), pb.Refund)

    async def CancelRefund(self, request: pb.CancelRefundRequest, context: Context) -> pb.Refund:
        cancelled = await self.app.cancel_refund(
            request.merchant_id, request.invoice_id, request.refund_id, fingerprint(request)
        )
        return REFUND_REPLY.message_of(cancelled)

    async def GetRefundClaim(self, request: pb.GetRefundClaimRequest, context: Context) -> pb.Refund:
        return to_message(await self.app.get_refund_claim(request.claim_token), pb.Refund)

    async def ClaimRefund(self, request: pb.ClaimRefundRequest, context: Context) -> pb.Refund:
        return to_message(await self.app.claim_refund(request.claim_token, request.address), pb.Refund)


def register(server: grpc.aio.Server, app: InvoiceApp) -> Sequence[str]:
    invoice_pb2_grpc.add_InvoiceServiceServicer_to_server(InvoiceServicer(app), server)
    return [pb.DESCRIPTOR.services_by_name["InvoiceService"].full_name]
