"""What a caller may ask of the customer service, as plain values (checked by the application)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CustomerQuery:
    """A page of a merchant's customers, newest first; `email` (when not blank) narrows it."""

    merchant_id: str
    email: str
    limit: int  # 0: the default page
    cursor: str


@dataclass(frozen=True)
class PaymentQuery:
    """A page of one customer's payments, newest first."""

    merchant_id: str
    customer_id: str
    limit: int  # 0: the default page
    cursor: str
