"""What a caller may ask of the merchant service, as plain values (grpc_api.py builds them)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NewMerchant:
    merchant_id: str  # minted by the caller for the contact email's slot
    business_name: str
    contact_email: str
    plan_type: str
    settings: dict[str, Any]
    wallets: dict[str, str]


@dataclass(frozen=True)
class MerchantChange:
    """What to change of a merchant; None leaves that part as it is."""

    merchant_id: str
    business_name: str | None
    settings: dict[str, Any] | None
    wallets: dict[str, str] | None


@dataclass(frozen=True)
class NewApiKey:
    merchant_id: str
    name: str
    key_type: str
    permissions: list[str] | None  # None: the key type's defaults
    grantor: str | None  # "operator" or "granting_api_key_id": which of the two was sent
    operator: bool
    granting_api_key_id: str
    expires_at: dt.datetime | None


@dataclass(frozen=True)
class KeyUse:
    api_key_id: str
    used_at: dt.datetime | None
