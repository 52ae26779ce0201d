"""The merchant servicer in process (grpc_testing, tests/inprocess.py): statuses, field
violations and the metadata a caller sends (request id, actor, idempotency key), over a real
PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from checkout.merchant.v1 import merchant_pb2 as pb

from libs.common import consistency, ids
from libs.common.config import Config
from libs.common.context import REPLAYED_METADATA
from libs.common.errors import FieldViolation
from libs.common.service import Runtime
from services.merchant.service import SPEC
from tests.inprocess import InProcess, assert_unavailable_while_database_down, migrated, servicers


@pytest.fixture
async def runtime(config: Config) -> AsyncIterator[Runtime]:
    async with migrated(SPEC, config) as started:
        yield started


@pytest.fixture
def merchants(runtime: Runtime) -> InProcess:
    return servicers(SPEC, runtime)


def signup(email: str, business_name: str = "Corner Shop", plan_type: str = "") -> pb.CreateMerchantRequest:
    return pb.CreateMerchantRequest(
        merchant_id=str(ids.new_merchant_id(email)),
        business_name=business_name,
        contact_email=email,
        plan_type=plan_type,
    )


async def test_every_bad_field_of_a_signup_is_named_at_once(merchants: InProcess) -> None:
    answer = await merchants.call(
        "CreateMerchant", signup("not-an-email", business_name=" ", plan_type="gold")
    )
    assert answer.code == grpc.StatusCode.INVALID_ARGUMENT
    assert answer.violations() == [
        FieldViolation("business_name", "must not be blank"),
        FieldViolation("contact_email", "must be an email address"),
        FieldViolation("plan_type", "must be one of free, pro, enterprise"),
    ]


async def test_an_unknown_merchant_is_not_found(merchants: InProcess) -> None:
    answer = await merchants.call("GetMerchant", pb.GetMerchantRequest(merchant_id=str(uuid.uuid4())))
    assert (answer.code, answer.details) == (grpc.StatusCode.NOT_FOUND, "merchant not found")


async def test_the_request_id_and_actor_are_recorded_on_the_event_and_a_retry_is_answered_as_a_replay(
    merchants: InProcess, runtime: Runtime
) -> None:
    request = signup("owner@corner.test")
    metadata = [
        ("x-request-id", "req-signup-1"),
        ("x-actor", "admin"),
        ("x-idempotency-key", "signup-1"),
        ("x-idempotency-hash", "hash-1"),
    ]
    first = await merchants.call("CreateMerchant", request, metadata)
    assert first.code == grpc.StatusCode.OK
    assert REPLAYED_METADATA not in first.trailing
    # A write's consistency token names the shard it wrote to (the gateway's read-your-writes).
    written = consistency.Token.parse(str(first.trailing[consistency.METADATA_KEY]))
    assert list(written.positions) == [runtime.shard_of(uuid.UUID(first.response.id))]
    merchant_id = uuid.UUID(first.response.id)
    [stored] = await runtime.pool_for(merchant_id).fetch(
        "SELECT metadata FROM events WHERE aggregate_id = $1", merchant_id
    )
    assert (stored["metadata"]["request_id"], stored["metadata"]["actor"]) == ("req-signup-1", "admin")

    retry = await merchants.call("CreateMerchant", request, metadata)
    assert (retry.code, retry.response) == (grpc.StatusCode.OK, first.response)
    assert retry.trailing[REPLAYED_METADATA] == "true"

    reused = [*metadata[:3], ("x-idempotency-hash", "hash-2")]
    conflict = await merchants.call("CreateMerchant", request, reused)
    assert (conflict.code, conflict.details) == (
        grpc.StatusCode.ABORTED,
        "Idempotency-Key was already used with a different request",
    )


async def test_a_database_that_is_down_is_unavailable_and_logged_with_the_request_id(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    await assert_unavailable_while_database_down(
        SPEC, config, "GetMerchant", pb.GetMerchantRequest(merchant_id=str(uuid.uuid4())), caplog
    )


async def test_a_retried_key_create_is_its_record_without_the_plaintext_kept_as_the_message_it_was(
    merchants: InProcess, runtime: Runtime
) -> None:
    created = await merchants.call("CreateMerchant", signup("keys@corner.test"))
    merchant_id = created.response.id
    request = pb.CreateApiKeyRequest(merchant_id=merchant_id, name="ci", key_type="secret", operator=True)
    metadata = [("x-actor", "admin"), ("x-idempotency-key", "key-1"), ("x-idempotency-hash", "h-1")]
    first = await merchants.call("CreateApiKey", request, metadata)
    assert first.code == grpc.StatusCode.OK
    assert first.response.key.startswith(first.response.api_key.prefix)
    retry = await merchants.call("CreateApiKey", request, metadata)
    assert retry.trailing[REPLAYED_METADATA] == "true"
    assert (retry.response.api_key, retry.response.key) == (first.response.api_key, "")
    # The record is the response message's bytes, as before answers were views: a record written
    # by an older release replays, and this one reads back in it.
    kept = await runtime.pool_for(uuid.UUID(merchant_id)).fetchval(
        "SELECT response FROM command_log WHERE scope = 'admin:CreateApiKey' AND idempotency_key = 'key-1'"
    )
    assert pb.CreateApiKeyResponse.FromString(kept) == pb.CreateApiKeyResponse(api_key=first.response.api_key)
