"""A NUL character anywhere in a request (PostgreSQL cannot store one) is INVALID_ARGUMENT naming
the field, for every RPC of every service, before any handler runs (issue 9, item 6)."""

from __future__ import annotations

import dataclasses

import grpc
import pytest
from checkout.customer.v1 import customer_pb2, customer_pb2_grpc
from checkout.invoice.v1 import invoice_pb2 as pb
from checkout.merchant.v1 import merchant_pb2, merchant_pb2_grpc

from libs.common import ids, protocheck
from libs.common.config import Config
from libs.common.grpc_errors import from_rpc_error
from libs.common.protoconv import struct
from services.customer.service import SPEC as CUSTOMER_SPEC
from services.merchant.service import SPEC as MERCHANT_SPEC
from tests.invoice.test_invoice_service import CALLER, ETH_XPUB, invoice_request, new_merchant, platform
from tests.services import running

NUL = "\x00"


def fields(message: object) -> list[str]:
    assert isinstance(message, pb.CreateInvoiceRequest | merchant_pb2.CreateMerchantRequest)
    return [v.field for v in protocheck.violations(message)]


def test_strings_are_walked_through_nested_repeated_map_and_struct_fields() -> None:
    request = invoice_request(
        "m",
        title=f"bad{NUL}",
        items=[
            pb.LineItem(name="ok", quantity="1", unit_price="1"),
            pb.LineItem(name=NUL, quantity="1", unit_price="1"),
        ],
        payment_tolerance=pb.PaymentTolerance(underpaid_percent=f"1{NUL}"),
        metadata=struct({"note": f"a{NUL}b", "list": ["fine", {"deep": NUL}], f"key{NUL}": "v", "n": 1}),
    )
    # A Struct's keys come in no particular order.
    assert set(fields(request)) == {
        "title",
        "items[1].name",
        "payment_tolerance.underpaid_percent",
        "metadata.note",
        "metadata.list[1].deep",
        "metadata.key\\u0000",
    }
    merchant = merchant_pb2.CreateMerchantRequest(business_name="Shop", contact_email="a@b.test")
    merchant.wallets["ethereum"] = f"xpub{NUL}"
    merchant.wallets[f"bit{NUL}coin"] = "zpub"
    assert set(fields(merchant)) == {"wallets.ethereum", "wallets.bit\\u0000coin"}
    assert fields(invoice_request("m", metadata=struct({"é": "ünïcode ✓"}))) == []


def test_a_flood_of_bad_strings_is_reported_only_up_to_a_cap() -> None:
    request = invoice_request("m", items=[pb.LineItem(name=NUL, quantity="1", unit_price="1")] * 100)
    assert len(protocheck.violations(request)) == protocheck.MAX_VIOLATIONS


async def test_every_service_refuses_a_nul_with_invalid_argument_naming_the_field(config: Config) -> None:
    async with platform(config) as p:
        merchant = await new_merchant(p, "nul@shop.test", {"ethereum": ETH_XPUB})
        bad = invoice_request(
            merchant.id, items=[pb.LineItem(name=f"Beans{NUL}", quantity="1", unit_price="1.00")]
        )
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await p.invoices.CreateInvoice(bad, metadata=CALLER)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [d.field for d in from_rpc_error(error.value).details] == ["items[0].name"]
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await p.invoices.SearchInvoices(pb.SearchInvoicesRequest(merchant_id=merchant.id, query=NUL))
        assert [d.field for d in from_rpc_error(error.value).details] == ["query"]
        pool = p.pool(merchant.id)
        assert await pool.fetchval("SELECT count(*) FROM invoices") == 0

        update = merchant_pb2.UpdateMerchantRequest(merchant_id=merchant.id, replace_settings=True)
        update.settings.update({"theme": f"dark{NUL}"})
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await p.merchants.UpdateMerchant(update)
        assert [d.field for d in from_rpc_error(error.value).details] == ["settings.theme"]

    async with running(CUSTOMER_SPEC, dataclasses.replace(config)) as (_, channel):
        customers = customer_pb2_grpc.CustomerServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await customers.ListCustomers(
                customer_pb2.ListCustomersRequest(merchant_id=str(ids.new_id(1)), email=f"a{NUL}@b.test")
            )
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [d.field for d in from_rpc_error(error.value).details] == ["email"]


async def test_a_merchant_whose_name_holds_a_nul_is_refused_and_not_created(config: Config) -> None:
    async with running(MERCHANT_SPEC, config) as (runtime, channel):
        stub = merchant_pb2_grpc.MerchantServiceStub(channel)
        email = "wallet-nul@shop.test"
        request = merchant_pb2.CreateMerchantRequest(
            merchant_id=str(ids.new_merchant_id(email)), business_name=f"Shop{NUL}", contact_email=email
        )
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.CreateMerchant(request)
        assert [d.field for d in from_rpc_error(error.value).details] == ["business_name"]
        assert (
            await runtime.pool_for(ids.new_merchant_id(email)).fetchval("SELECT count(*) FROM merchants") == 0
        )
