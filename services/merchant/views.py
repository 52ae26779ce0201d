"""What the merchant service answers with about merchants and their API keys: plain frozen values
built from its read models.

Each view has the fields of the API message of the same name (merchant.proto), so grpc_api.py
maps it mechanically (libs/common/views.py) and the application never touches protobuf.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import asyncpg


@dataclass(frozen=True)
class Merchant:
    id: str
    business_name: str
    contact_email: str
    status: str
    plan_type: str
    settings: dict[str, Any]
    wallets: dict[str, str]
    shard: int
    created_at: dt.datetime | None
    updated_at: dt.datetime | None


@dataclass(frozen=True)
class ApiKey:
    id: str
    merchant_id: str
    name: str
    key_type: str
    permissions: tuple[str, ...]
    status: str
    prefix: str
    expires_at: dt.datetime | None
    created_at: dt.datetime | None
    last_used_at: dt.datetime | None


@dataclass(frozen=True)
class CreateApiKeyResponse:
    """A new key's record and its plaintext, which only the first answer carries."""

    api_key: ApiKey
    key: str


@dataclass(frozen=True)
class VerifyApiKeyResponse:
    api_key: ApiKey
    plan_type: str


def merchant(row: asyncpg.Record, shard: int) -> Merchant:
    return Merchant(
        id=str(row["id"]),
        business_name=row["business_name"],
        contact_email=row["contact_email"],
        status=row["status"],
        plan_type=row["plan_type"],
        settings=row["settings"],
        wallets=row["wallets"],
        shard=shard,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def api_key(row: asyncpg.Record) -> ApiKey:
    return ApiKey(
        id=str(row["id"]),
        merchant_id=str(row["merchant_id"]),
        name=row["name"],
        key_type=row["key_type"],
        permissions=tuple(row["permissions"]),
        status=row["status"],
        prefix=row["prefix"],
        expires_at=row["expires_at"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
    )
