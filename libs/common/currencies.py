"""Fiat currencies the platform prices in, and their ISO 4217 minor units: how many decimals an
amount in each may carry. Shared by the invoice service (pricing) and analytics (reporting)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

FIAT_MINOR_UNITS: Mapping[str, int] = MappingProxyType(
    {"USD": 2, "EUR": 2, "GBP": 2, "JPY": 0, "CAD": 2, "AUD": 2, "CHF": 2}
)
# The most decimals any of them takes (fewer for some: JPY none), for checks made before the
# currency of the amount is known (the gateway's schemas).
MAX_MINOR_UNITS = max(FIAT_MINOR_UNITS.values())
