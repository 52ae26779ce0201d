"""What the gateway tells a service about the request it is serving, as gRPC metadata."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from opentelemetry import propagate
from starlette.requests import HTTPConnection

Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class CallContext:
    request_id: str
    actor: str
    idempotency_key: str | None = None
    idempotency_hash: str | None = None

    def metadata(self) -> Metadata:
        pairs = [("x-request-id", self.request_id), ("x-actor", self.actor)]
        if self.idempotency_key is not None and self.idempotency_hash is not None:
            pairs += [
                ("x-idempotency-key", self.idempotency_key),
                ("x-idempotency-hash", self.idempotency_hash),
            ]
        # Read at call time so the services' spans hang under the request's current span.
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        pairs += [(key.lower(), value) for key, value in carrier.items()]
        return tuple(pairs)


def request_id_of(conn: HTTPConnection) -> str:
    """The id the request middleware assigned (a fresh one outside it, e.g. in unit tests)."""
    state = conn.scope.setdefault("state", {})
    request_id = state.get("request_id")
    if not isinstance(request_id, str):
        request_id = str(uuid.uuid4())
        state["request_id"] = request_id
    return request_id
