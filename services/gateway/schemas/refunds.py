"""Refunds: what a merchant asks for, the refund it gets back, and what the payer sees of it.

Non-custodial: the platform records the refund, the payer names an address through the claim
link, the merchant pays it from its own wallet and the watcher marks it completed."""

from __future__ import annotations

from typing import Annotated

from checkout.invoice.v1 import invoice_pb2
from pydantic import Field

from libs.common import limits
from libs.common.currencies import MAX_MINOR_UNITS
from services.gateway.schemas.base import (
    MoneyOut,
    QueryModel,
    RequestModel,
    ResponseModel,
    TimestampOut,
    optional,
    timestamp_of,
)
from services.gateway.schemas.types import Choice, DecimalString, text
from services.invoice.refunds import CLAIM_TOKEN_LENGTH, RATE_BASES, REFUND_REASON_MAX_CHARS, REFUND_STATUSES

ClaimToken = Annotated[
    str,
    Field(
        min_length=CLAIM_TOKEN_LENGTH,
        max_length=CLAIM_TOKEN_LENGTH,
        pattern=f"^[0-9a-f]{{{CLAIM_TOKEN_LENGTH}}}$",
        description="The `token` of the refund's claim link.",
    ),
]


class RefundCreate(RequestModel):
    amount: (
        Annotated[
            str,
            DecimalString(
                limits.TOTAL_MAX,
                positive=True,
                fraction_digits=MAX_MINOR_UNITS,
                example="10.00",
                description="In the invoice's currency, converted at `rate`. Give this or "
                "`crypto_amount`, not both; neither refunds all that is left.",
            ),
        ]
        | None
    ) = None
    crypto_amount: (
        Annotated[
            str,
            DecimalString(
                limits.TOTAL_MAX,
                positive=True,
                example="0.0025",
                description="Exactly this much of the invoice's crypto currency, at most its decimals.",
            ),
        ]
        | None
    ) = None
    rate: Annotated[str, Choice(RATE_BASES)] = Field(
        description="`invoice`: the rate locked on the invoice; `current`: today's market rate."
    )
    reason: Annotated[str, text(REFUND_REASON_MAX_CHARS)] | None = None


class RefundClaimQuery(QueryModel):
    token: ClaimToken


class RefundClaim(RequestModel):
    token: ClaimToken
    address: Annotated[
        str,
        text(200, min_length=1, description="Where to be paid, on the invoice's network: EVM 0x + 40 hex "
             "(a mixed-case address must match its EIP-55 checksum); Bitcoin bech32 or base58."),
    ]  # fmt: skip


def claim_url(public_url: str, refund_id: str, token: str) -> str:
    """The payer's claim page of a refund (services/gateway/pages/refund.py)."""
    return f"{public_url}/refund/{refund_id}?token={token}"


class Refund(ResponseModel):
    id: str
    invoice_id: str
    status: str = Field(json_schema_extra={"enum": list(REFUND_STATUSES)})
    amount: MoneyOut = Field(description="In the invoice's currency, at `rate`.")
    currency: str
    crypto_amount: MoneyOut = Field(
        description="What the merchant sends: the watcher looks for at least this."
    )
    crypto_currency: str
    amount_units: str = Field(description="`crypto_amount` in base units (wei, sats) as integer text.")
    network: str
    rate: str
    rate_basis: str = Field(json_schema_extra={"enum": list(RATE_BASES)})
    reason: str | None
    address: str | None = Field(description="The payer's address, once claimed: pay `crypto_amount` to it.")
    tx_hash: str | None = Field(description="The transaction that paid it, once completed.")
    claim_url: str | None = Field(
        json_schema_extra={"format": "uri"},
        description="Send this link to the payer. Only in the answer that created the refund: "
        "just its hash is kept (a retried create answers with null).",
    )
    created_at: TimestampOut | None
    claimed_at: TimestampOut | None
    completed_at: TimestampOut | None
    cancelled_at: TimestampOut | None

    @classmethod
    def of(cls, r: invoice_pb2.Refund, public_url: str) -> Refund:
        return cls(
            id=r.id,
            invoice_id=r.invoice_id,
            status=r.status,
            amount=r.amount,
            currency=r.currency,
            crypto_amount=r.crypto_amount,
            crypto_currency=r.crypto_currency,
            amount_units=r.amount_units,
            network=r.network,
            rate=r.rate,
            rate_basis=r.rate_basis,
            reason=optional(r.reason),
            address=optional(r.address),
            tx_hash=optional(r.tx_hash),
            claim_url=claim_url(public_url, r.id, r.claim_token) if r.claim_token else None,
            created_at=timestamp_of(r, "created_at"),
            claimed_at=timestamp_of(r, "claimed_at"),
            completed_at=timestamp_of(r, "completed_at"),
            cancelled_at=timestamp_of(r, "cancelled_at"),
        )


class PayerRefund(ResponseModel):
    """What the payer sees through the claim link: nothing else of the merchant's."""

    id: str
    status: str = Field(json_schema_extra={"enum": list(REFUND_STATUSES)})
    amount: MoneyOut
    currency: str
    crypto_amount: MoneyOut
    crypto_currency: str
    network: str
    address: str | None
    tx_hash: str | None

    @classmethod
    def of(cls, r: invoice_pb2.Refund) -> PayerRefund:
        return cls(
            id=r.id,
            status=r.status,
            amount=r.amount,
            currency=r.currency,
            crypto_amount=r.crypto_amount,
            crypto_currency=r.crypto_currency,
            network=r.network,
            address=optional(r.address),
            tx_hash=optional(r.tx_hash),
        )
