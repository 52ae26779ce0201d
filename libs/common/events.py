"""The event catalogue: every event type name and its protobuf message, read from the messages'
`event_type` options (protos/checkout/events/v1/options.proto), where each name is declared once.

The store keeps `event_data` as the message's JSON form (field names as in the .proto), and the
relay publishes the same JSON, so a consumer decodes with `decode(event_type, data)`. Several
types may share one message (the seven invoice status events are all `StatusChange`): the
message then names a discriminator field, and the value of that field says which type it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

from checkout.events.v1 import options_pb2 as options
from checkout.invoice.v1 import events_pb2 as invoice_events
from checkout.merchant.v1 import events_pb2 as merchant_events
from google.protobuf import json_format
from google.protobuf.message import Message

from libs.common import protojson

# The generated modules whose messages are events; a message without an `event_type` is not one.
_EVENT_MODULES: tuple[ModuleType, ...] = (merchant_events, invoice_events)


def _declared() -> Iterator[tuple[str, type[Message], str, str]]:
    """(type name, message, discriminator field, its value for this type), as the protos say."""
    for module in _EVENT_MODULES:
        for descriptor in module.DESCRIPTOR.message_types_by_name.values():
            declared = descriptor.GetOptions()
            field = declared.Extensions[options.event_discriminator]
            for event_type in declared.Extensions[options.event_type]:
                yield event_type.name, getattr(module, descriptor.name), field, event_type.when


def _catalogue() -> tuple[dict[str, type[Message]], dict[tuple[str, str], str], dict[str, str]]:
    """The type -> message table; (message full name, discriminator value or "") -> type, which
    `type_of` looks up; and the discriminator field of each message several types share."""
    by_type: dict[str, type[Message]] = {}
    by_message: dict[tuple[str, str], str] = {}
    discriminators: dict[str, str] = {}
    for name, cls, field, when in _declared():
        key = (cls.DESCRIPTOR.full_name, when if field else "")
        if name in by_type or key in by_message:
            # A name twice, or two types a message could not tell apart: the protos are wrong.
            raise RuntimeError(f"event type {name} ({key}) is declared twice")
        by_type[name] = cls
        by_message[key] = name
        if field:
            discriminators[key[0]] = field
    return by_type, by_message, discriminators


EVENT_TYPES, _BY_MESSAGE, _DISCRIMINATORS = _catalogue()

# The prefixes of the Invoice aggregate's event types: what reaches merchants as webhooks.
INVOICE_EVENT_PREFIXES = ("invoice.", "refund.")
# What a merchant can subscribe a webhook endpoint or a notification template to.
WEBHOOK_EVENT_TYPES: tuple[str, ...] = tuple(
    sorted(t for t in EVENT_TYPES if t.startswith(INVOICE_EVENT_PREFIXES))
)


def variants(message: type[Message]) -> dict[str, str]:
    """The event types sharing `message`, each with its discriminator's value (in declared order)."""
    full_name = message.DESCRIPTOR.full_name
    return {name: when for (owner, when), name in _BY_MESSAGE.items() if owner == full_name}


# The invoice status events, each with the status it moves the invoice to (StatusChange.status).
STATUS_EVENTS: dict[str, str] = variants(invoice_events.StatusChange)
# The statuses at which an invoice counts as paid.
PAID_STATUSES = frozenset({"paid", "confirmed"})


def type_of(message: Message) -> str:
    full_name = message.DESCRIPTOR.full_name
    field = _DISCRIMINATORS.get(full_name)
    key = (full_name, str(getattr(message, field)) if field else "")
    try:
        return _BY_MESSAGE[key]
    except KeyError:
        raise KeyError(f"{full_name} {key[1]!r} is not in the event catalogue") from None


def encode(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def decode(event_type: str, data: dict[str, Any]) -> Message:
    return protojson.parse(data, EVENT_TYPES[event_type]())
