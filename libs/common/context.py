"""Per-request context (request id, actor, idempotency, trace) carried in contextvars.

The gRPC interceptor fills it from metadata; the event store copies it into each event's
`metadata`, so every event says who asked for it and in which request.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RequestContext:
    request_id: str = ""
    actor: str = "system"
    idempotency_key: str = ""
    idempotency_hash: str = ""
    correlation_id: str = ""
    causation_id: str = ""
    trace: dict[str, str] = field(default_factory=dict)
    # The gRPC method being served (`/checkout.invoice.v1.InvoiceService/CreateInvoice`), for logs.
    rpc: str = ""

    def event_metadata(self) -> dict[str, object]:
        return {
            "request_id": self.request_id or None,
            "correlation_id": self.correlation_id or self.request_id or None,
            "causation_id": self.causation_id or None,
            "actor": self.actor,
            "trace": self.trace or None,
        }


_EMPTY = RequestContext()
_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "checkout_request_context", default=None
)


def current() -> RequestContext:
    return _current.get() or _EMPTY


def use(ctx: RequestContext) -> contextvars.Token[RequestContext | None]:
    return _current.set(ctx)


def reset(token: contextvars.Token[RequestContext | None]) -> None:
    _current.reset(token)


# Set by an idempotent command that answered with its stored first result (commandlog.Commands);
# the gRPC interceptor tells the caller in trailing metadata (`x-idempotent-replayed`), so the
# gateway can say `Idempotent-Replayed: true`.
command_replayed: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "checkout_command_replayed", default=False
)
REPLAYED_METADATA = "x-idempotent-replayed"
