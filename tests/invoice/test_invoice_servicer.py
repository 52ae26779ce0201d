"""The invoice servicer in process (grpc_testing, tests/inprocess.py): statuses, field
violations and metadata (the consistency token, the request id in logs), over a real
PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from checkout.invoice.v1 import invoice_pb2 as pb

from libs.common import consistency, ids
from libs.common.config import Config
from libs.common.errors import FieldViolation
from services.invoice.service import SPEC
from tests.inprocess import InProcess, assert_unavailable_while_database_down, migrated, servicers


@pytest.fixture
async def invoices(config: Config) -> AsyncIterator[InProcess]:
    async with migrated(SPEC, config) as runtime:
        yield servicers(SPEC, runtime)


def merchant() -> str:
    return str(ids.new_merchant_id("owner@widgets.test"))


async def test_every_bad_field_of_an_invoice_is_named_before_anything_is_looked_up(
    invoices: InProcess,
) -> None:
    request = pb.CreateInvoiceRequest(
        merchant_id=merchant(),
        title="Widgets",
        items=[pb.LineItem(name="Widget", quantity="two", unit_price="4.25")],
        currency="XYZ",
        crypto_currency="ETH",
    )
    answer = await invoices.call("CreateInvoice", request)
    assert answer.code == grpc.StatusCode.INVALID_ARGUMENT
    assert answer.violations() == [
        FieldViolation(
            "currency", "unsupported currency 'XYZ' (supported: AUD, CAD, CHF, EUR, GBP, JPY, USD)"
        ),
        FieldViolation("items[0].quantity", "must be a plain decimal number such as 12.50, got 'two'"),
    ]


async def test_an_unknown_invoice_is_not_found(invoices: InProcess) -> None:
    merchant_id = merchant()
    invoice_id = ids.new_id(ids.slot_of(uuid.UUID(merchant_id)))
    answer = await invoices.call(
        "GetInvoice", pb.GetInvoiceRequest(merchant_id=merchant_id, invoice_id=str(invoice_id))
    )
    assert (answer.code, answer.details) == (grpc.StatusCode.NOT_FOUND, "invoice not found")


async def test_a_malformed_consistency_token_in_metadata_is_invalid_argument_on_its_header(
    invoices: InProcess,
) -> None:
    request = pb.ListInvoicesRequest(merchant_id=merchant())
    answer = await invoices.call("ListInvoices", request, [(consistency.METADATA_KEY, "v1:nonsense")])
    assert answer.code == grpc.StatusCode.INVALID_ARGUMENT
    assert answer.violations() == [
        FieldViolation(consistency.HEADER, "is not a consistency token this platform issued")
    ]


async def test_a_database_that_is_down_is_unavailable_and_logged_with_the_request_id(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    await assert_unavailable_while_database_down(
        SPEC, config, "ListInvoices", pb.ListInvoicesRequest(merchant_id=merchant()), caplog
    )
