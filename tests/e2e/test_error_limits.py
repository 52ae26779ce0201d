"""An error too large for gRPC's trailers still reaches the caller as itself: the service's
status carries capped details that say how many were left out, never a transport error that
reads as 429 or 500; the HTTP edge names every problem in one 422."""

from __future__ import annotations

import uuid

import grpc
import httpx
import pytest
from checkout.invoice.v1 import invoice_pb2, invoice_pb2_grpc

from libs.common import ids
from libs.common.config import Config
from libs.common.grpc_errors import from_rpc_error
from services.invoice.service import SPEC as INVOICE_SPEC
from tests.e2e.test_checkout_flow import bearer, invoice_body, onboard
from tests.services import running

BAD_ITEM = {"name": "", "quantity": "0", "unit_price": "-1"}


async def test_a_service_error_with_hundreds_of_violations_fits_the_trailers_capped(config: Config) -> None:
    # Three problems per item, each named by the invoice domain: 300 field violations, about
    # 30 KiB of details, past gRPC's 16 KiB of trailers if sent whole.
    merchant_id = ids.new_merchant_id(f"many-{uuid.uuid4().hex[:6]}@shop.test")
    request = invoice_pb2.CreateInvoiceRequest(
        merchant_id=str(merchant_id),
        title="Many items",
        currency="USD",
        crypto_currency="ETH",
        items=[invoice_pb2.LineItem(**BAD_ITEM)] * 100,
    )
    async with running(INVOICE_SPEC, config) as (_, channel):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await invoice_pb2_grpc.InvoiceServiceStub(channel).CreateInvoice(request)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = from_rpc_error(raised.value)
    *named, more = error.details
    assert len(named) >= 10 and named[0].field.startswith("items[")
    assert more.field == "*" and more.reason == f"and {300 - len(named)} more problems"
    assert len(error.message) <= 1000


async def test_an_invoice_with_hundreds_of_bad_items_gets_one_422_naming_each(
    http: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    _, key = await onboard(http, operator, f"many-{uuid.uuid4().hex[:6]}@shop.test")
    bad = invoice_body()
    bad["items"] = [BAD_ITEM] * 100
    response = await http.post("/v1/invoices", json=bad, headers=bearer(key))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_argument"
    fields = {d["field"] for d in error["details"]}
    assert {f"items[{i}].{name}" for i in range(100) for name in ("quantity", "unit_price")} <= fields
    assert len(error["message"]) <= 1000
    assert "metadata" not in error["message"].lower() and "grpc" not in error["message"].lower()
