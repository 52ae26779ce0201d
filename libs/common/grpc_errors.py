"""Domain errors <-> gRPC status with `google.rpc.BadRequest` field details (grpcio-status).

A status travels in the trailers, which gRPC caps (8 KiB soft, 16 KiB hard, for all of them
together); a call whose trailers do not fit fails on the client as RESOURCE_EXHAUSTED with
transport words instead of the error. So the message and the details are capped here: long texts
are cut, and past a byte budget the remaining violations are summed up in one last entry.
"""

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

# Budgets in bytes/characters, well inside gRPC's 8 KiB soft limit for all trailers together (the
# message is percent-encoded on the wire, so non-ASCII costs up to three times its UTF-8 size).
MESSAGE_MAX_CHARS = 1000
FIELD_MAX_CHARS = 200
REASON_MAX_CHARS = 300
DETAILS_MAX_BYTES = 4096
MORE_FIELD = "*"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def capped_violations(violations: list[FieldViolation]) -> list[FieldViolation]:
    """The violations that fit the budget, each cut to size, then one `*` entry saying how many
    more there were."""
    kept: list[FieldViolation] = []
    # Room for the summary entry is kept back from the start.
    used = len(_violation(FieldViolation(MORE_FIELD, f"and {len(violations)} more problems")))
    for n, violation in enumerate(violations):
        cut = FieldViolation(_cut(violation.field, FIELD_MAX_CHARS), _cut(violation.reason, REASON_MAX_CHARS))
        size = len(_violation(cut))
        if used + size > DETAILS_MAX_BYTES:
            more = len(violations) - n
            return [*kept, FieldViolation(MORE_FIELD, f"and {more} more problem{'s' * (more != 1)}")]
        kept.append(cut)
        used += size
    return kept


def _violation(v: FieldViolation) -> bytes:
    encoded: bytes = error_details_pb2.BadRequest.FieldViolation(
        field=v.field, description=v.reason
    ).SerializeToString()
    return encoded


def to_status(error: CheckoutError) -> grpc.Status:
    grpc_code = CODE_TO_GRPC.get(error.code, grpc.StatusCode.INTERNAL)
    status = status_pb2.Status(
        code=getattr(code_pb2, grpc_code.name), message=_cut(error.message, MESSAGE_MAX_CHARS)
    )
    if error.details:
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.reason)
                    for v in capped_violations(error.details)
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
