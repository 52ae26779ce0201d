"""Merchants and their API keys."""

from __future__ import annotations

from typing import Annotated, Any

from checkout.merchant.v1 import merchant_pb2
from pydantic import ConfigDict, Field, model_validator

from libs.common import apikeys, limits
from libs.common.placement import PLANS
from services.gateway.schemas.base import (
    RequestModel,
    ResponseModel,
    TimestampOut,
    optional,
    struct_of,
    timestamp_of,
)
from services.gateway.schemas.types import (
    FREE_FORM_VALUE_REF,
    NO_NUL,
    Choice,
    DecimalString,
    Timestamp,
    check_free_form,
    text,
)

PLAN_TYPES = PLANS
KEY_TYPES = tuple(apikeys.KEY_TYPES)
# As the services check it (one @, a dot in the domain, no spaces), without NUL.
EMAIL_PATTERN = r"^[^@\s\u0000]+@[^@\s\u0000]+\.[^@\s\u0000]+$"
# An extended public key is 111 characters; the bound leaves room, not a second format.
WALLET_KEY_MAX_CHARS = 200


def email(description: str) -> Any:
    """Field metadata for an email address: `Annotated[str, email("...")]`."""
    return Field(
        max_length=limits.EMAIL_MAX_CHARS,
        pattern=EMAIL_PATTERN,
        description=description,
        json_schema_extra={"examples": ["owner@shop.example"]},
    )


UnderpaidPercent = Annotated[
    str,
    DecimalString(
        limits.UNDERPAID_PERCENT_MAX,
        example="1.0",
        description=f"How far short of the amount still counts as paid, in percent (0 to {limits.UNDERPAID_PERCENT_MAX}).",
    ),
]


class PaymentTolerance(RequestModel):
    underpaid_percent: UnderpaidPercent


class SettingsTolerance(RequestModel):
    # Settings are stored as the merchant sent them and read by the invoice service as strings.
    underpaid_percent: (
        Annotated[str, DecimalString(limits.UNDERPAID_PERCENT_MAX, integers=False, example="1.0")] | None
    ) = None


class MerchantSettings(RequestModel):
    """Free-form, with two keys the platform reads itself."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "propertyNames": {"pattern": NO_NUL},
            "additionalProperties": dict(FREE_FORM_VALUE_REF),
        },
    )

    rate_spread_percent: (
        Annotated[
            str,
            DecimalString(
                limits.RATE_SPREAD_PERCENT_MAX,
                integers=False,
                example="0.5",
                description="What the merchant keeps over the market rate, in percent.",
            ),
        ]
        | None
    ) = None
    payment_tolerance: SettingsTolerance | None = Field(
        default=None, description="The default tolerance of the merchant's new invoices."
    )

    @model_validator(mode="after")
    def _storable(self) -> MerchantSettings:
        check_free_form(self.model_dump(exclude_none=True), limits.SETTINGS_MAX_BYTES)
        return self


class Wallets(RequestModel):
    ethereum: (
        Annotated[str, text(WALLET_KEY_MAX_CHARS, description="BIP44 account xpub at m/44'/60'/0'.")] | None
    ) = None
    bitcoin: (
        Annotated[str, text(WALLET_KEY_MAX_CHARS, description="BIP84 account zpub (or xpub) at m/84'/0'/0'.")]
        | None
    ) = None

    def as_map(self) -> dict[str, str]:
        return {name: key for name, key in self.model_dump().items() if key is not None}


class MerchantCreate(RequestModel):
    business_name: Annotated[str, text(limits.BUSINESS_NAME_MAX_CHARS, min_length=1)]
    contact_email: Annotated[str, email("Unique across the platform.")]
    plan_type: Annotated[str, Choice(PLAN_TYPES)] | None = Field(
        default=None, description="`free` unless said."
    )
    settings: MerchantSettings | None = None
    wallets: Wallets | None = None


class MerchantUpdate(RequestModel):
    business_name: Annotated[str, text(limits.BUSINESS_NAME_MAX_CHARS, min_length=1)] | None = None
    settings: MerchantSettings | None = Field(default=None, description="Replaces the settings whole.")
    wallets: Wallets | None = Field(default=None, description="Replaces the wallets whole.")


class Merchant(ResponseModel):
    id: str
    business_name: str
    contact_email: str
    status: str
    plan_type: str
    settings: dict[str, Any]
    wallets: dict[str, str]
    shard: int
    created_at: TimestampOut | None
    updated_at: TimestampOut | None

    @classmethod
    def of(cls, m: merchant_pb2.Merchant) -> Merchant:
        return cls(
            id=m.id,
            business_name=m.business_name,
            contact_email=m.contact_email,
            status=m.status,
            plan_type=m.plan_type,
            settings=struct_of(m, "settings"),
            wallets=dict(m.wallets),
            shard=m.shard,
            created_at=timestamp_of(m, "created_at"),
            updated_at=timestamp_of(m, "updated_at"),
        )


class ApiKeyCreate(RequestModel):
    name: Annotated[str, text(limits.API_KEY_NAME_MAX_CHARS, min_length=1)]
    key_type: Annotated[str, Choice(KEY_TYPES)] | None = Field(
        default=None, description="`secret` unless said."
    )
    permissions: list[Annotated[str, Choice(apikeys.PERMISSIONS)]] | None = Field(
        default=None,
        max_length=len(apikeys.PERMISSIONS),
        description="Defaults to every permission the key type may hold that the caller holds.",
    )
    expires_at: Timestamp | None = Field(default=None, description="In the future.")


class ApiKey(ResponseModel):
    id: str
    merchant_id: str
    name: str
    key_type: str
    permissions: list[str]
    status: str
    prefix: str
    expires_at: TimestampOut | None
    created_at: TimestampOut | None
    last_used_at: TimestampOut | None = Field(description="Written in batches: up to a minute behind.")

    @classmethod
    def of(cls, k: merchant_pb2.ApiKey) -> ApiKey:
        return cls(**_api_key_fields(k))


class CreatedApiKey(ApiKey):
    key: str | None = Field(
        description="The key itself, shown in this response only. `null` in an idempotent replay "
        "(`Idempotent-Replayed: true`): only its hash is kept, so it cannot be shown again."
    )

    @classmethod
    def created(cls, k: merchant_pb2.ApiKey, plaintext: str) -> CreatedApiKey:
        return cls(**_api_key_fields(k), key=optional(plaintext))


def _api_key_fields(k: merchant_pb2.ApiKey) -> dict[str, Any]:
    return {
        "id": k.id,
        "merchant_id": k.merchant_id,
        "name": k.name,
        "key_type": k.key_type,
        "permissions": list(k.permissions),
        "status": k.status,
        "prefix": k.prefix,
        "expires_at": timestamp_of(k, "expires_at"),
        "created_at": timestamp_of(k, "created_at"),
        "last_used_at": timestamp_of(k, "last_used_at"),
    }
