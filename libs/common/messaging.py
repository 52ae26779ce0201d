"""NATS JetStream plumbing shared by the relay and the consumers: the stream, subjects and the
JSON envelope every published event travels in."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple

from google.protobuf.message import Message
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from libs.common import events
from libs.common.eventstore import StoredEvent

DEDUP_WINDOW_SECONDS = 120.0


def subject(prefix: str, shard: int, event_type: str) -> str:
    """`events.s0.invoice.created`: the shard is in the subject so each shard's consumers
    filter their own events."""
    return f"{prefix}.s{shard}.{event_type}"


async def ensure_stream(js: JetStreamContext, name: str, prefix: str) -> None:
    config = StreamConfig(
        name=name,
        subjects=[f"{prefix}.>"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        duplicate_window=DEDUP_WINDOW_SECONDS,
    )
    try:
        await js.stream_info(name)
    except NotFoundError:
        await js.add_stream(config)


@dataclass(frozen=True)
class Envelope:
    id: uuid.UUID
    type: str
    aggregate_id: uuid.UUID
    aggregate_type: str
    version: int
    shard: int
    occurred_at: dt.datetime
    data: dict[str, Any]
    metadata: dict[str, Any]

    def message(self) -> Message:
        return events.decode(self.type, self.data)

    @classmethod
    def of(cls, event: StoredEvent, shard: int) -> Envelope:
        return cls(
            id=event.id,
            type=event.event_type,
            aggregate_id=event.aggregate_id,
            aggregate_type=event.aggregate_type,
            version=event.version,
            shard=shard,
            occurred_at=event.created_at,
            data=event.data,
            metadata=event.metadata,
        )

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "id": str(self.id),
                "type": self.type,
                "aggregate_id": str(self.aggregate_id),
                "aggregate_type": self.aggregate_type,
                "version": self.version,
                "shard": self.shard,
                "occurred_at": self.occurred_at.isoformat(),
                "data": self.data,
                "metadata": self.metadata,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        body = json.loads(raw)
        return cls(
            id=uuid.UUID(body["id"]),
            type=body["type"],
            aggregate_id=uuid.UUID(body["aggregate_id"]),
            aggregate_type=body["aggregate_type"],
            version=int(body["version"]),
            shard=int(body["shard"]),
            occurred_at=dt.datetime.fromisoformat(body["occurred_at"]),
            data=body["data"],
            metadata=body.get("metadata") or {},
        )

    def headers(self) -> dict[str, str]:
        return _headers(self.id, self.type, self.metadata.get("trace"))


def _headers(event_id: uuid.UUID | str, event_type: str, trace: dict[str, Any] | None) -> dict[str, str]:
    # JetStream drops a second publish with the same Nats-Msg-Id inside the dedup window, which
    # makes a relay retry after a crash harmless.
    headers = {"Nats-Msg-Id": str(event_id), "Checkout-Event-Type": event_type}
    headers.update({k: str(v) for k, v in (trace or {}).items()})
    return headers


def wire_columns(shard_parameter: str) -> str:
    """What `Wire.from_row` reads: PostgreSQL writes the envelope itself (the same JSON object as
    `Envelope.to_bytes`), pasting the stored JSON in as it is: decoding every event only to encode
    it again was most of the relay's work. `shard_parameter` is the query's `$n` for the shard."""
    return (
        "id::text AS id, aggregate_id::text AS aggregate_id, event_type, sequence_number, "
        "metadata->'trace' AS trace, "
        'convert_to(format(\'{"id":"%s","type":%s,"aggregate_id":"%s","aggregate_type":%s,'
        '"version":%s,"shard":%s,"occurred_at":"%s","data":%s,"metadata":%s}\', '
        "id, to_json(event_type::text), aggregate_id, to_json(aggregate_type::text), event_version, "
        f"{shard_parameter}::int, "
        "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'), "
        "event_data, coalesce(metadata, '{}')), 'UTF8') AS payload"
    )


class Wire(NamedTuple):
    """An event as the relay publishes it (a tuple: the relay makes thousands a second)."""

    id: str
    aggregate_id: str
    type: str
    sequence_number: int
    payload: bytes
    headers: dict[str, str]

    @classmethod
    def from_row(cls, row: Any) -> Wire:
        event_type = row["event_type"]
        return cls(
            row["id"],
            row["aggregate_id"],
            event_type,
            row["sequence_number"],
            row["payload"],
            _headers(row["id"], event_type, row["trace"]),
        )
