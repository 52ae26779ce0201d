"""InvoiceService over gRPC: thin adapters onto the application (errors are mapped by the
shared interceptor)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
from checkout.invoice.v1 import invoice_pb2 as pb
from checkout.invoice.v1 import invoice_pb2_grpc

from libs.common.service import Runtime
from services.invoice.application import InvoiceApp, app_of

Context = grpc.aio.ServicerContext[Any, Any]


class InvoiceServicer(invoice_pb2_grpc.InvoiceServiceServicer):
    def __init__(self, app: InvoiceApp) -> None:
        self.app = app

    async def CreateInvoice(self, request: pb.CreateInvoiceRequest, context: Context) -> pb.Invoice:
        return await self.app.create_invoice(request)

    async def GetInvoice(self, request: pb.GetInvoiceRequest, context: Context) -> pb.Invoice:
        return await self.app.get_invoice(request)

    async def ListInvoices(
        self, request: pb.ListInvoicesRequest, context: Context
    ) -> pb.ListInvoicesResponse:
        return await self.app.list_invoices(request)

    async def SearchInvoices(
        self, request: pb.SearchInvoicesRequest, context: Context
    ) -> pb.ListInvoicesResponse:
        return await self.app.search_invoices(request)

    async def GetCheckout(self, request: pb.GetCheckoutRequest, context: Context) -> pb.CheckoutView:
        return await self.app.get_checkout(request)

    async def GetShardStats(self, request: pb.GetShardStatsRequest, context: Context) -> pb.ShardStats:
        return await self.app.get_shard_stats(request)

    async def CancelInvoice(self, request: pb.CancelInvoiceRequest, context: Context) -> pb.Invoice:
        return await self.app.cancel_invoice(request)

    async def ListPayments(
        self, request: pb.ListPaymentsRequest, context: Context
    ) -> pb.ListPaymentsResponse:
        return await self.app.list_payments(request)

    async def ListAuditEntries(
        self, request: pb.ListAuditEntriesRequest, context: Context
    ) -> pb.ListAuditEntriesResponse:
        return await self.app.list_audit_entries(request)

    async def ListMetadataKeys(
        self, request: pb.ListMetadataKeysRequest, context: Context
    ) -> pb.ListMetadataKeysResponse:
        return await self.app.list_metadata_keys(request)

    async def ListMerchantPayments(
        self, request: pb.ListMerchantPaymentsRequest, context: Context
    ) -> pb.ListPaymentsResponse:
        return await self.app.list_merchant_payments(request)

    async def CreateRefund(self, request: pb.CreateRefundRequest, context: Context) -> pb.Refund:
        return await self.app.create_refund(request)

    async def CancelRefund(self, request: pb.CancelRefundRequest, context: Context) -> pb.Refund:
        return await self.app.cancel_refund(request)

    async def GetRefundClaim(self, request: pb.GetRefundClaimRequest, context: Context) -> pb.Refund:
        return await self.app.get_refund_claim(request)

    async def ClaimRefund(self, request: pb.ClaimRefundRequest, context: Context) -> pb.Refund:
        return await self.app.claim_refund(request)


def register(server: grpc.aio.Server, runtime: Runtime) -> Sequence[str]:
    invoice_pb2_grpc.add_InvoiceServiceServicer_to_server(InvoiceServicer(app_of(runtime)), server)
    return [pb.DESCRIPTOR.services_by_name["InvoiceService"].full_name]
