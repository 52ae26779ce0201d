"""What an invoice takes from its merchant's settings (a JSON object the merchant service owns).

A merchant's settings were checked when they were written, but an invoice must not fail because
of one the merchant service later stopped accepting: each value that is unset or unusable here
reads as its default, 0.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from libs.common.limits import RATE_SPREAD_PERCENT_MAX, UNDERPAID_PERCENT_MAX
from services.invoice import pricing


def parse_percent(raw: str) -> Decimal | None:
    """A decimal string in 0..UNDERPAID_PERCENT_MAX, or None."""
    try:
        value = pricing.parse_decimal(raw, "underpaid_percent")
    except (pricing.PricingError, TypeError, InvalidOperation):
        return None
    return value if 0 <= value <= UNDERPAID_PERCENT_MAX else None


def merchant_default_underpaid(settings: dict[str, Any]) -> Decimal:
    """The merchant's `payment_tolerance.underpaid_percent`, or 0 when unset or unusable."""
    tolerance = settings.get("payment_tolerance")
    raw = tolerance.get("underpaid_percent") if isinstance(tolerance, dict) else None
    value = parse_percent(raw) if isinstance(raw, str) else None
    return value if value is not None else Decimal(0)


def merchant_spread(settings: dict[str, Any]) -> Decimal:
    """The merchant's `rate_spread_percent` (what it keeps over the market rate), 0 when unset."""
    raw = settings.get("rate_spread_percent")
    try:
        value = Decimal(raw) if isinstance(raw, str) else Decimal(0)
    except InvalidOperation:
        return Decimal(0)
    return value if value.is_finite() and 0 <= value <= RATE_SPREAD_PERCENT_MAX else Decimal(0)
