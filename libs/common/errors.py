"""Typed domain errors, stdlib only, so domain modules can raise them without gRPC.

`grpc_server` maps each to a gRPC status code with `google.rpc.BadRequest` field violations; the
gateway maps the status to the HTTP error body in API.md.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    field: str
    reason: str


class CheckoutError(Exception):
    code = "internal"

    def __init__(self, message: str, details: list[FieldViolation] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class InvalidArgument(CheckoutError):
    code = "invalid_argument"

    @classmethod
    def field(cls, field: str, reason: str) -> InvalidArgument:
        return cls(f"{field}: {reason}", [FieldViolation(field, reason)])


class NotFound(CheckoutError):
    code = "not_found"


class AlreadyExists(CheckoutError):
    code = "already_exists"


class Conflict(CheckoutError):
    """A lost optimistic-concurrency race, or an idempotency key reused with another body."""

    code = "conflict"


class FailedPrecondition(CheckoutError):
    code = "failed_precondition"


class Unauthenticated(CheckoutError):
    code = "unauthenticated"


class PermissionDenied(CheckoutError):
    code = "permission_denied"


class Unavailable(CheckoutError):
    code = "unavailable"
