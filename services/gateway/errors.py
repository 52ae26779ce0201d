"""The HTTP error body of API.md and the one exception every handler raises to produce it."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import grpc
import orjson
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from starlette.responses import Response

from libs.common.errors import FieldViolation
from libs.common.grpc_errors import GRPC_TO_CODE, from_rpc_error

log = logging.getLogger("checkout.gateway")

HTTP_STATUS: dict[str, int] = {
    "invalid_argument": 422,
    "unauthenticated": 401,
    "permission_denied": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "unsupported_media_type": 415,
    "already_exists": 409,
    "conflict": 409,
    "failed_precondition": 409,
    "rate_limited": 429,
    "internal": 500,
    "unavailable": 503,
    "deadline_exceeded": 504,
}


class ApiError(Exception):
    """A failure the client is told about, in API.md's code vocabulary."""

    def __init__(
        self,
        code: str,
        message: str,
        details: Sequence[FieldViolation] = (),
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code if code in HTTP_STATUS else "internal"
        self.message = message
        self.details = list(details)
        self.headers = dict(headers or {})

    @property
    def status(self) -> int:
        return HTTP_STATUS[self.code]

    @classmethod
    def invalid(cls, field: str, reason: str) -> ApiError:
        return cls("invalid_argument", f"{field}: {reason}", [FieldViolation(field, reason)])

    @classmethod
    def not_found(cls, what: str) -> ApiError:
        return cls("not_found", f"{what} not found")


def error_body(
    code: str, message: str, details: Sequence[FieldViolation], request_id: str
) -> dict[str, object]:
    return {
        "error": {
            "code": code,
            "message": message,
            "details": [{"field": d.field, "reason": d.reason} for d in details],
            "request_id": request_id,
        }
    }


def error_response(error: ApiError, request_id: str) -> Response:
    return Response(
        orjson.dumps(error_body(error.code, error.message, error.details, request_id)),
        status_code=error.status,
        headers=error.headers,
        media_type="application/json",
    )


def from_grpc(error: grpc.RpcError) -> ApiError:
    """A failed RPC as the error the client sees.

    `libs.common.grpc_errors.from_rpc_error` only recognises `grpc.Call`, which
    `grpc.aio.AioRpcError` is not (every aio failure would read as `internal`), so aio errors
    are decoded here with the same vocabulary.
    """
    if isinstance(error, grpc.aio.AioRpcError):
        code = GRPC_TO_CODE.get(error.code(), "internal")
        message = error.details() or code
        details = _field_violations(error)
        if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
            code, message = "unavailable", "a backing service is unavailable"
    else:
        remote = from_rpc_error(error)
        code, message, details = remote.code, remote.message, remote.details
    if code == "internal":
        # The service's own words may name tables or hosts: log them, tell the client less.
        log.error("backing service failed: %s", message)
        message = "internal error"
    return ApiError(code, message, details)


def _field_violations(error: grpc.aio.AioRpcError) -> list[FieldViolation]:
    try:
        status = rpc_status.from_call(error)  # type: ignore[arg-type]  # duck-typed: reads code/details/trailers
    except ValueError:  # a status proto that contradicts the call's own code
        return []
    violations: list[FieldViolation] = []
    for detail in status.details if status else []:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            violations += [FieldViolation(v.field, v.description) for v in bad_request.field_violations]
    return violations
