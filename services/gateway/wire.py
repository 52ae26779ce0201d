"""JSON values <-> protobuf well-known types (Struct, Timestamp)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

from google.protobuf import json_format, struct_pb2, timestamp_pb2

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
