from __future__ import annotations

import json

import grpc
import pytest
from grpc.aio import AioRpcError, Metadata

from libs.common.errors import FieldViolation, InvalidArgument
from libs.common.grpc_errors import CODE_TO_GRPC, to_status
from services.gateway.errors import HTTP_STATUS, ApiError, error_response, from_grpc

API_STATUS = {
    "invalid_argument": 422,
    "unauthenticated": 401,
    "permission_denied": 403,
    "not_found": 404,
    "unsupported_media_type": 415,
    "already_exists": 409,
    "conflict": 409,
    "failed_precondition": 409,
    "rate_limited": 429,
    "unavailable": 503,
    "deadline_exceeded": 504,
    "internal": 500,
}


def aio_error(code: grpc.StatusCode, details: str, trailers: Metadata | None = None) -> AioRpcError:
    return AioRpcError(code, Metadata(), trailers or Metadata(), details, None)


@pytest.mark.parametrize(("code", "status"), sorted(API_STATUS.items()))
def test_each_api_code_maps_to_its_http_status(code: str, status: int) -> None:
    assert HTTP_STATUS[code] == status
    assert ApiError(code, "x").status == status


def test_the_error_body_has_exactly_the_contract_shape() -> None:
    error = ApiError("invalid_argument", "bad", [FieldViolation("items[0].quantity", "no")])
    response = error_response(error, "req-1")
    assert response.status_code == 422
    assert json.loads(bytes(response.body)) == {
        "error": {
            "code": "invalid_argument",
            "message": "bad",
            "details": [{"field": "items[0].quantity", "reason": "no"}],
            "request_id": "req-1",
        }
    }


@pytest.mark.parametrize(("code", "grpc_code"), sorted(CODE_TO_GRPC.items()))
def test_each_grpc_status_from_a_service_becomes_its_api_code(code: str, grpc_code: grpc.StatusCode) -> None:
    error = from_grpc(aio_error(grpc_code, "nope"))
    assert error.code == code
    assert error.status == API_STATUS[code]


def test_field_violations_from_a_service_reach_the_client() -> None:
    status = to_status(InvalidArgument.field("items[0].unit_price", "must be positive"))
    error = from_grpc(aio_error(status.code, status.details, Metadata(*status.trailing_metadata)))
    assert error.code == "invalid_argument"
    assert error.details == [FieldViolation("items[0].unit_price", "must be positive")]


def test_an_internal_failure_does_not_leak_the_services_message() -> None:
    error = from_grpc(aio_error(grpc.StatusCode.INTERNAL, 'relation "invoices" does not exist'))
    assert error.code == "internal"
    assert "relation" not in error.message


def test_an_unknown_grpc_status_is_internal() -> None:
    assert from_grpc(aio_error(grpc.StatusCode.DATA_LOSS, "x")).status == 500


def test_cancelled_reads_as_unavailable() -> None:
    assert from_grpc(aio_error(grpc.StatusCode.CANCELLED, "x")).status == 503
