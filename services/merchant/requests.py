"""What a caller may ask of the merchant service about merchants and API keys, as plain values.

A field the caller left out is None (where leaving it out means something: keep the current
value, take the default); the checks are the aggregates' (domain.py) and the application's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NewMerchant:
    merchant_id: str
    business_name: str
    contact_email: str
    plan_type: str
    settings: dict[str, Any]
    wallets: dict[str, str]


@dataclass(frozen=True)
class MerchantChange:
    """An update: each field None is left as it is; settings and wallets replace the whole."""

    merchant_id: str
    business_name: str | None
    settings: dict[str, Any] | None
    wallets: dict[str, str] | None


@dataclass(frozen=True)
class NewApiKey:
    """A key to issue. Its grantor is the operator (`operator`) or one of the merchant's keys
    (`granting_api_key_id`); None for both: the caller named none."""

    merchant_id: str
    name: str
    key_type: str
    permissions: Sequence[str] | None  # None: the key type's default
    expires_at: dt.datetime | None
    operator: bool | None
    granting_api_key_id: str | None


@dataclass(frozen=True)
class KeyUse:
    """A report that a key was used (advice: a use without a time is skipped)."""

    api_key_id: str
    used_at: dt.datetime | None
