"""Base classes for request and response models, and the error body of API.md."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any

from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.message import Message
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from services.gateway.schemas.types import DATE_PATTERN
from services.gateway.wire import from_struct


class RequestModel(BaseModel):
    """A JSON body or query string: unknown fields are violations, and types are strict (a
    string is no number, `"5"` is no integer) so the schema's types are the whole truth."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class QueryModel(BaseModel):
    """A query string: every value arrives as text, so numbers are read from it; parameters the
    operation does not know are ignored, as HTTP clients add their own (cache busters)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class ResponseModel(BaseModel):
    """A resource as the API renders it. Built from the service's protobuf by `of`, so the model
    that documents a response is the one that produced it."""

    model_config = ConfigDict(extra="forbid", json_schema_mode_override="serialization")


def optional(value: str) -> str | None:
    """proto3 says "absent" as an empty string; the API says null."""
    return value or None


def timestamp_of(message: Message, name: str) -> str | None:
    """A Timestamp field as RFC 3339 in UTC with microseconds and `Z`; unset is null."""
    if not message.HasField(name):
        return None
    value = getattr(message, name)
    assert isinstance(value, timestamp_pb2.Timestamp)
    return format_timestamp(value.ToDatetime(tzinfo=UTC))


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def struct_of(message: Message, name: str) -> dict[str, Any]:
    """A Struct field; unset reads as `{}`, since these are free-form maps."""
    if not message.HasField(name):
        return {}
    value = getattr(message, name)
    assert isinstance(value, struct_pb2.Struct)
    return from_struct(value)


def _date(value: object) -> object:
    if isinstance(value, str):
        if not re.match(DATE_PATTERN, value):
            raise PydanticCustomError("date", "must be a date as YYYY-MM-DD")
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise PydanticCustomError("date", "must be a date as YYYY-MM-DD") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    raise PydanticCustomError("date", "must be a date as YYYY-MM-DD")


Day = Annotated[
    date,
    BeforeValidator(_date),
    WithJsonSchema({"type": "string", "format": "date", "pattern": DATE_PATTERN, "examples": ["2026-11-01"]}),
]

# Rendered timestamps: RFC 3339, UTC, `Z`.
TimestampOut = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
MoneyOut = Annotated[
    str, Field(description="A decimal string, exact.", json_schema_extra={"examples": ["12.50"]})
]


class ErrorDetail(BaseModel):
    field: str = Field(description="Path of the offending field, e.g. `items[0].unit_price`.")
    reason: str


class ErrorInfo(BaseModel):
    code: str = Field(
        description="One of invalid_argument, unauthenticated, permission_denied, not_found, "
        "method_not_allowed, unsupported_media_type, already_exists, conflict, failed_precondition, "
        "rate_limited, internal, unavailable, deadline_exceeded."
    )
    message: str
    details: list[ErrorDetail]
    request_id: str


class ErrorBody(BaseModel):
    """API.md's error body: every violation of a request at once, each with its field."""

    error: ErrorInfo
