"""Domain errors <-> gRPC status with `google.rpc.BadRequest` field details (grpcio-status)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from libs.common.errors import CheckoutError, FieldViolation

CODE_TO_GRPC: dict[str, grpc.StatusCode] = {
    "invalid_argument": grpc.StatusCode.INVALID_ARGUMENT,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "already_exists": grpc.StatusCode.ALREADY_EXISTS,
    "conflict": grpc.StatusCode.ABORTED,
    "failed_precondition": grpc.StatusCode.FAILED_PRECONDITION,
    "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
    "permission_denied": grpc.StatusCode.PERMISSION_DENIED,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "rate_limited": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "deadline_exceeded": grpc.StatusCode.DEADLINE_EXCEEDED,
    "internal": grpc.StatusCode.INTERNAL,
}
GRPC_TO_CODE = {v: k for k, v in CODE_TO_GRPC.items()}


def to_status(error: CheckoutError) -> grpc.Status:
    grpc_code = CODE_TO_GRPC.get(error.code, grpc.StatusCode.INTERNAL)
    status = status_pb2.Status(code=getattr(code_pb2, grpc_code.name), message=error.message)
    if error.details:
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.reason)
                    for v in error.details
                ]
            )
        )
        status.details.append(detail)
    return rpc_status.to_status(status)


@dataclass(frozen=True)
class RemoteError:
    """What a caller learns from a failed RPC, in API.md's vocabulary."""

    code: str
    message: str
    details: list[FieldViolation]


def from_rpc_error(error: grpc.RpcError) -> RemoteError:
    # grpc.aio.AioRpcError is not a grpc.Call, but offers the same accessors.
    is_call = isinstance(error, (grpc.Call, grpc.aio.AioRpcError))
    code = error.code() if is_call else grpc.StatusCode.UNKNOWN
    message = (error.details() if is_call else None) or str(error)
    details: list[FieldViolation] = []
    status = None
    if is_call:
        metadata: Any = error.trailing_metadata() or ()
        for key, value in metadata:
            if key == "grpc-status-details-bin" and isinstance(value, bytes):
                status = status_pb2.Status.FromString(value)
    for detail in status.details if status else []:
        bad_request = error_details_pb2.BadRequest()
        if detail.Unpack(bad_request):
            details += [FieldViolation(v.field, v.description) for v in bad_request.field_violations]
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        return RemoteError("unavailable", "a backing service is unavailable", details)
    return RemoteError(GRPC_TO_CODE.get(code, "internal"), message, details)
