from __future__ import annotations

import json

import grpc
import pytest
from grpc.aio import AioRpcError, Metadata

from libs.common.errors import CheckoutError, FieldViolation, InvalidArgument, Unavailable
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


class Raised(CheckoutError):
    def __init__(self, code: str) -> None:
        super().__init__("nope")
        self.code = code


def from_service(error: CheckoutError) -> AioRpcError:
    """The failed call a client sees when a service's interceptor aborts with `error`."""
    status = to_status(error)
    return aio_error(status.code, status.details, Metadata(*status.trailing_metadata))


@pytest.mark.parametrize(("code", "grpc_code"), sorted(CODE_TO_GRPC.items()))
def test_each_grpc_status_from_a_service_becomes_its_api_code(code: str, grpc_code: grpc.StatusCode) -> None:
    error = from_grpc(from_service(Raised(code)))
    assert error.code == code
    assert error.status == API_STATUS[code]


def test_resource_exhausted_from_the_transport_is_an_internal_error_not_rate_limiting() -> None:
    transport = aio_error(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "received trailing metadata size exceeds limit (17000 vs. 16384)"
    )
    error = from_grpc(transport)
    assert (error.code, error.status) == ("internal", 500)
    assert "metadata" not in error.message and "16384" not in error.message


def test_a_deadline_from_the_transport_says_so_in_the_apis_words() -> None:
    error = from_grpc(aio_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
    assert (error.status, error.message) == (504, "a backing service did not answer in time")


def test_unavailable_is_503_with_retry_after() -> None:
    response = error_response(from_grpc(aio_error(grpc.StatusCode.UNAVAILABLE, "connect failed")), "r")
    assert response.status_code == 503
    assert int(response.headers["retry-after"]) > 0
    assert "connect failed" not in bytes(response.body).decode()


def test_a_services_own_unavailable_message_reaches_the_client() -> None:
    error = from_grpc(from_service(Unavailable("the database is unavailable; retry later")))
    assert (error.status, error.message) == (503, "the database is unavailable; retry later")


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
