"""The dashboard's way to the backends: the gateway's own HTTP API, called in process.

Each dashboard page is one or more API requests made on the signed-in merchant's behalf and
rendered as HTML. They run through the whole application (middleware, routing, validation,
permissions, the key's plan rate limit, shard routing, caching, error mapping) exactly as a
request with the merchant's key would, so the dashboard can neither do more than the API allows
nor drift from it. The session's verified key rides in the ASGI scope
(auth.VERIFIED_KEY_SCOPE), which nothing outside the process can set; the session cookie never
reaches the API.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from opentelemetry import propagate
from starlette.requests import Request
from starlette.types import Message

from services.gateway.auth import VERIFIED_KEY_SCOPE
from services.gateway.context import request_id_of
from services.gateway.keycache import VerifiedKey


@dataclass(frozen=True)
class ApiResult:
    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def error(self) -> dict[str, Any]:
        """API.md's error object (code, message, details), or {} for a success."""
        if self.ok or not isinstance(self.body, dict):
            return {}
        found = self.body.get("error")
        return found if isinstance(found, dict) else {}

    @property
    def message(self) -> str:
        return str(self.error.get("message", f"HTTP {self.status}"))

    def field_errors(self) -> dict[str, str]:
        return {str(d.get("field")): str(d.get("reason")) for d in self.error.get("details", [])}


async def call(
    request: Request,
    key: VerifiedKey,
    method: str,
    path: str,
    *,
    query: Mapping[str, str | None] | None = None,
    body: object = None,
    idempotency_key: str | None = None,
) -> ApiResult:
    params = {k: v for k, v in (query or {}).items() if v not in (None, "")}
    payload = b"" if body is None else json.dumps(body).encode()
    headers: dict[str, str] = {
        "host": request.headers.get("host", "gateway"),
        "x-request-id": request_id_of(request),  # one id across the page and its API calls
        "content-type": "application/json",
        "content-length": str(len(payload)),
    }
    if idempotency_key:
        headers["idempotency-key"] = idempotency_key
    propagate.inject(headers)  # the API call's span hangs under the page's
    scope = {
        "type": "http",
        "asgi": request.scope.get("asgi", {"version": "3.0"}),
        "http_version": "1.1",
        "method": method,
        "scheme": request.url.scheme,
        "server": request.scope.get("server"),
        "client": request.scope.get("client"),
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": urlencode(params).encode(),
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
        "state": {},
        VERIFIED_KEY_SCOPE: key,
    }
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": payload, "more_body": False}

    status = 500
    response_headers: dict[str, str] = {}
    chunks: list[bytes] = []

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            response_headers.update({k.decode("latin-1"): v.decode("latin-1") for k, v in message["headers"]})
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await request.app(scope, receive, send)
    raw = b"".join(chunks)
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return ApiResult(status, parsed, response_headers)
