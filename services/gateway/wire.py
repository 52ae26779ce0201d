"""JSON values <-> protobuf well-known types (Struct, Timestamp)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

from google.protobuf import json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message

JsonObject = dict[str, object]


def to_struct(value: Mapping[str, object]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    # Validation has already limited `value` to JSON types, which is what Struct accepts.
    struct.update(cast(Any, value))
    return struct


def from_struct(struct: struct_pb2.Struct) -> JsonObject:
    """A Struct as JSON; integral doubles turn back into integers.

    A Struct keeps every number as a double, so `{"order": 42}` would otherwise come back as
    `42.0`. Requests never carry integers beyond 2^53 (validation refuses them), so this
    restores exactly what the client sent.
    """
    return {key: _restore_ints(item) for key, item in json_format.MessageToDict(struct).items()}


def _restore_ints(value: object) -> object:
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _restore_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore_ints(v) for v in value]
    return value


def to_timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    timestamp = timestamp_pb2.Timestamp()
    timestamp.FromDatetime(value.astimezone(UTC))
    return timestamp


def format_timestamp(timestamp: timestamp_pb2.Timestamp) -> str:
    """RFC 3339 in UTC with microseconds and `Z`, e.g. `2026-11-25T02:24:21.123456Z`."""
    moment = timestamp.ToDatetime(tzinfo=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def timestamp_field(message: Message, name: str) -> str | None:
    """A Timestamp field of `message`, or None when it was never set (proto3 has no null)."""
    if not message.HasField(name):
        return None
    value = getattr(message, name)
    assert isinstance(value, timestamp_pb2.Timestamp)
    return format_timestamp(value)


def struct_field(message: Message, name: str) -> JsonObject:
    """A Struct field of `message`; unset reads as `{}`, since these are free-form maps."""
    if not message.HasField(name):
        return {}
    value = getattr(message, name)
    assert isinstance(value, struct_pb2.Struct)
    return from_struct(value)
