"""What the sync and the async client share, without I/O: how a request is built (auth, an
idempotency key on every POST), when and how long to wait before a retry, and how an error body
becomes an exception. Each client only sends."""

from __future__ import annotations

import email.utils
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from checkout_client.errors import CheckoutError, error_from_response

DEFAULT_TIMEOUT = 30.0
USER_AGENT = "checkout-client-python/0.1"
# 429 is a rate limit and 503 a backend that is down or starting: both say when to come back.
RETRY_STATUSES = frozenset({429, 503})

Params = Mapping[str, str | int | None]


@dataclass(frozen=True)
class RetryPolicy:
    """Retries on 429 and 503 (and on a connection that failed before an answer), waiting what
    `Retry-After` says or, without it, an exponential backoff with jitter; never longer than
    `max_wait_seconds` at a time. POSTs are safe to retry: each carries one idempotency key."""

    max_retries: int = 3
    backoff_seconds: float = 0.5
    max_wait_seconds: float = 30.0

    def delay(self, attempt: int, response: httpx.Response | None) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None to give up."""
        if attempt >= self.max_retries:
            return None
        if response is not None:
            if response.status_code not in RETRY_STATUSES:
                return None
            after = retry_after_seconds(response.headers.get("Retry-After"))
            if after is not None:
                return min(after, self.max_wait_seconds)
        backoff = self.backoff_seconds * 2**attempt
        return float(min(backoff * (0.5 + random.random() / 2), self.max_wait_seconds))


NO_RETRIES = RetryPolicy(max_retries=0)


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(frozen=True)
class Call:
    """One API call as it will be sent (every attempt of it the same, idempotency key included)."""

    method: str
    path: str
    params: dict[str, str] | None = None
    json: Any = None
    headers: dict[str, str] | None = None
    # Longer than the client's own timeout, for a call that waits on purpose (a long poll).
    timeout: float | None = None

    def timeout_or(self, default: float) -> float:
        return max(default, self.timeout) if self.timeout else default


def call(
    method: str,
    path: str,
    *,
    params: Params | None = None,
    json: Any = None,
    idempotency_key: str | None = None,
    timeout: float | None = None,
) -> Call:
    headers: dict[str, str] = {}
    if method == "POST":
        # By default each POST gets its own key, so a retry after a lost answer (or a 503) can
        # never create a second invoice; pass one to make a retry across runs safe as well.
        headers["Idempotency-Key"] = idempotency_key or str(uuid.uuid4())
    query = {k: str(v) for k, v in (params or {}).items() if v is not None}
    return Call(method, path, query or None, json, headers, timeout)


def client_headers(token: str | None) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def result(response: httpx.Response) -> Any:
    """The parsed body of a 2xx answer (None for 204), or the error it describes, raised."""
    if response.is_success:
        return None if response.status_code == 204 or not response.content else response.json()
    raise error_from_response(response)


def transport_error(error: httpx.TransportError) -> CheckoutError:
    return CheckoutError(0, "unavailable", f"no answer from the gateway: {error}", [], None)
