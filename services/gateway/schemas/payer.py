"""The live part of the payer's hosted page (`GET /pay/{invoice_id}/status`, and each event of
`/pay/{invoice_id}/events`): every part of the page that can change, in the words the page shows
(pages/payer.py writes them)."""

from __future__ import annotations

from pydantic import Field

from services.gateway.schemas.base import MoneyOut, ResponseModel
from services.gateway.schemas.invoices import STATUSES


class PayerPayment(ResponseModel):
    tx_hash: str
    amount: MoneyOut
    status: str
    confirmations: str = Field(description="How far it has come, in words: `1 of 2`.")
    late: bool = Field(description="Arrived after the invoice closed: recorded, but it pays nothing.")


class PayerStatus(ResponseModel):
    status: str = Field(json_schema_extra={"enum": list(STATUSES)})
    label: str = Field(description="The status as the page's heading says it.")
    detail: str = Field(description="What the payer should do now, in a sentence.")
    notes: list[str] = Field(description="The flags (overpaid, paid late), in words.")
    amount_paid: MoneyOut
    owed: MoneyOut = Field(description="What is still to pay; `0` once paid in full.")
    payable: bool = Field(description="Whether the page shows where to pay: open, and not past its time.")
    seconds_left: int = Field(ge=0, description="Until the invoice expires; 0 once it has.")
    final: bool = Field(description="Nothing more will happen that the page should follow.")
    payments: list[PayerPayment]
