"""Dead letters: events a service's projection parked after failing on them (operator token)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from checkout.ops.v1 import ops_pb2
from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from libs.common.config import SERVICES
from services.gateway.pagination import PageQuery
from services.gateway.schemas.base import ResponseModel, TimestampOut, timestamp_of
from services.gateway.schemas.types import Choice, Id, text
from services.gateway.state import state_of

NAME_MAX_CHARS = 100


class DeadLetterQuery(PageQuery):
    service: Annotated[str, Choice(SERVICES)] | None = Field(default=None, description="Only this service's.")
    shard: int | None = Field(default=None, ge=0, description="Only this shard's.")
    projection: Annotated[str, text(NAME_MAX_CHARS)] | None = None
    event_type: Annotated[str, text(NAME_MAX_CHARS)] | None = None
    # Dead-letter ids are time-ordered and unique across services: one id is the cursor for all.
    cursor: Id | None = Field(default=None, description="`next_cursor` of the previous page.")

    @field_validator("shard")
    @classmethod
    def _a_configured_shard(cls, shard: int | None, info: ValidationInfo) -> int | None:
        request = (info.context or {}).get("request")
        if shard is None or request is None:
            return shard
        shards = state_of(request).backends.shards()
        if shard not in shards:
            raise PydanticCustomError(
                "shard", "must be one of {shards}", {"shards": ", ".join(map(str, shards))}
            )
        return shard


class DeadLetter(ResponseModel):
    id: str
    service: str
    shard: int
    consumer: str
    projection: str
    event_id: str
    event_type: str
    error: str
    attempts: int
    first_seen_at: TimestampOut | None
    last_seen_at: TimestampOut | None
    event: dict[str, Any] | None = Field(description="The parked event's envelope, as it was published.")

    @classmethod
    def of(cls, letter: ops_pb2.DeadLetter) -> DeadLetter:
        return cls(
            id=letter.id,
            service=letter.service,
            shard=letter.shard,
            consumer=letter.consumer,
            projection=letter.projection,
            event_id=letter.event_id,
            event_type=letter.event_type,
            error=letter.error,
            attempts=letter.attempts,
            first_seen_at=timestamp_of(letter, "first_seen_at"),
            last_seen_at=timestamp_of(letter, "last_seen_at"),
            event=json.loads(letter.envelope_json) if letter.envelope_json else None,
        )


class BackendError(ResponseModel):
    code: str
    message: str


class FailedBackend(ResponseModel):
    service: str
    shard: int
    error: BackendError


class DeadLetterPage(ResponseModel):
    data: list[DeadLetter]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last.")
    complete: bool = Field(description="false when a service instance did not answer; see `failed`.")
    failed: list[FailedBackend]


class RetriedDeadLetter(ResponseModel):
    applied: bool
    dead_letter: DeadLetter
