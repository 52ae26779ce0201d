"""Opaque list cursors: the (created_at, id) of the last row of a page, as base64url JSON."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid

from libs.common.errors import InvalidArgument

Position = tuple[dt.datetime, uuid.UUID]


def encode(created_at: dt.datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps({"t": created_at.isoformat(), "id": str(row_id)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode(cursor: str) -> Position | None:
    """None for the first page; InvalidArgument for anything this service did not issue."""
    if not cursor:
        return None
    try:
        body = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        created_at = dt.datetime.fromisoformat(body["t"])
        row_id = uuid.UUID(body["id"])
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise InvalidArgument.field("cursor", "is not a cursor this service issued") from None
    if created_at.tzinfo is None:
        raise InvalidArgument.field("cursor", "is not a cursor this service issued")
    return created_at, row_id
