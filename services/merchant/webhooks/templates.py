"""Notification templates: `${field}` placeholders (string.Template) over a fixed set of invoice
fields, checked when a template is saved so a typo is a field error then, not a blank at send time.

Stdlib only (used by the domain).
"""

from __future__ import annotations

import string
from collections.abc import Mapping

# What a template may mention. Values come from the merchant service's own projection of the
# invoice (services/merchant/webhooks/projections.py), all as strings; money stays the decimal
# string the invoice service computed.
FIELDS = (
    "invoice_id",
    "title",
    "status",
    "total",
    "currency",
    "crypto_amount",
    "crypto_currency",
    "amount_paid",
    "payment_address",
    "customer_email",
    "merchant_name",
    "event_type",
)


def problems(text: str) -> list[str]:
    """Why `text` is not a usable template (empty when it is)."""
    template = string.Template(text)
    if not template.is_valid():
        return ["has a `$` that starts no placeholder; write `$$` for a literal `$`, `${field}` for a field"]
    unknown = sorted(set(template.get_identifiers()) - set(FIELDS))
    if unknown:
        return [f"unknown field {', '.join('${' + u + '}' for u in unknown)}; use one of {', '.join(FIELDS)}"]
    return []


def render(text: str, values: Mapping[str, str]) -> str:
    """Fills a validated template; a field without a value renders empty."""
    return string.Template(text).substitute({field: values.get(field, "") for field in FIELDS})
