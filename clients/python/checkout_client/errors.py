"""The gateway's one error body, `{"error": {"code", "message", "details", "request_id"}}`, as
exceptions: one class per code a caller handles differently."""

from __future__ import annotations

from typing import Any, TypedDict

import httpx


class FieldProblem(TypedDict):
    field: str
    reason: str


class CheckoutError(Exception):
    """An answer that is not a success; `status` 0 when there was no answer at all."""

    def __init__(
        self, status: int, code: str, message: str, details: list[FieldProblem], request_id: str | None
    ) -> None:
        super().__init__(f"{status} {code}: {message}" if status else message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.request_id = request_id


class InvalidArgument(CheckoutError):
    """422: `details` names every field that is wrong and why."""


class Unauthenticated(CheckoutError):
    """401: no key, a wrong one, a revoked or expired one."""


class PermissionDenied(CheckoutError):
    """403: the key lacks the permission."""


class NotFound(CheckoutError):
    """404 (also what a resource of another merchant is)."""


class Conflict(CheckoutError):
    """409: already exists, a failed precondition, or an idempotency key reused with another body."""


class RateLimited(CheckoutError):
    """429 after the retries: over a limit."""


class Unavailable(CheckoutError):
    """503 after the retries, or no answer at all: something behind the gateway is down."""


_BY_STATUS: dict[int, type[CheckoutError]] = {
    401: Unauthenticated,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    422: InvalidArgument,
    429: RateLimited,
    503: Unavailable,
}


def error_from_response(response: httpx.Response) -> CheckoutError:
    body: Any
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {"code": "unknown", "message": response.text[:200] or response.reason_phrase}
    kind = _BY_STATUS.get(response.status_code, CheckoutError)
    return kind(
        response.status_code,
        str(error.get("code", "unknown")),
        str(error.get("message", "")),
        list(error.get("details") or []),
        error.get("request_id") or response.headers.get("X-Request-Id"),
    )
