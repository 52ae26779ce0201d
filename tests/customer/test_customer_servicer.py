"""The customer servicer in process (grpc_testing, tests/inprocess.py): how its failures reach a
caller as statuses, field violations and log lines, over a real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from checkout.customer.v1 import customer_pb2 as pb

from libs.common.config import Config
from libs.common.errors import FieldViolation
from libs.common.limits import PAGE_LIMIT_MAX
from services.customer.service import SPEC
from tests.common.eventsource import merchant_on_shard
from tests.inprocess import InProcess, assert_unavailable_while_database_down, migrated, servicers


@pytest.fixture
async def customers(config: Config) -> AsyncIterator[InProcess]:
    async with migrated(SPEC, config) as runtime:
        yield servicers(SPEC, runtime)


async def test_a_merchant_without_customers_lists_none(customers: InProcess, config: Config) -> None:
    merchant, _ = merchant_on_shard(config, 1, "quiet-shop")
    answer = await customers.call("ListCustomers", pb.ListCustomersRequest(merchant_id=str(merchant)))
    assert answer.code == grpc.StatusCode.OK
    assert answer.response == pb.ListCustomersResponse()


async def test_a_bad_page_size_is_invalid_argument_naming_the_field(
    customers: InProcess, config: Config
) -> None:
    merchant, _ = merchant_on_shard(config, 0, "shop")
    request = pb.ListCustomersRequest(merchant_id=str(merchant), limit=PAGE_LIMIT_MAX + 1)
    answer = await customers.call("ListCustomers", request)
    reason = f"must be between 1 and {PAGE_LIMIT_MAX}"
    assert (answer.code, answer.details) == (grpc.StatusCode.INVALID_ARGUMENT, f"limit: {reason}")
    assert answer.violations() == [FieldViolation("limit", reason)]


async def test_a_merchant_id_that_is_no_uuid_is_named_in_the_violations(customers: InProcess) -> None:
    answer = await customers.call("GetCustomer", pb.GetCustomerRequest(merchant_id="shop-1", customer_id="x"))
    assert answer.code == grpc.StatusCode.INVALID_ARGUMENT
    assert answer.violations() == [FieldViolation("merchant_id", "must be a UUID")]


async def test_an_unknown_customer_is_not_found(customers: InProcess, config: Config) -> None:
    merchant, _ = merchant_on_shard(config, 0, "shop")
    request = pb.GetCustomerRequest(merchant_id=str(merchant), customer_id=str(uuid.uuid4()))
    answer = await customers.call("GetCustomer", request)
    assert (answer.code, answer.details) == (grpc.StatusCode.NOT_FOUND, "customer not found")
    assert answer.violations() == []


async def test_a_database_that_is_down_is_unavailable_and_logged_with_the_request_id(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    merchant, _ = merchant_on_shard(config, 0, "shop")
    await assert_unavailable_while_database_down(
        SPEC, config, "ListCustomers", pb.ListCustomersRequest(merchant_id=str(merchant)), caplog
    )
