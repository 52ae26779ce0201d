"""/v1/checkout/{invoice_id}: the payer's page, public and routed by the invoice id alone."""

from __future__ import annotations

from checkout.invoice.v1 import invoice_pb2
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.gateway import render
from services.gateway.context import CallContext, consistency_of, request_id_of
from services.gateway.state import state_of
from services.gateway.validation import path_id


async def get_checkout(request: Request) -> JSONResponse:
    invoice_id = path_id(request, "invoice", name="invoice_id")
    backends = state_of(request).backends
    # No key, no directory: the invoice id carries its merchant's slot.
    view = await backends.call(
        backends.invoices(backends.shard_of(invoice_id)).GetCheckout,
        invoice_pb2.GetCheckoutRequest(invoice_id=str(invoice_id)),
        CallContext(request_id_of(request), "anonymous", consistency=consistency_of(request)),
    )
    return JSONResponse(render.checkout(view))


routes = [Route("/v1/checkout/{invoice_id}", get_checkout, methods=["GET"])]
