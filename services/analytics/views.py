"""What the analytics service answers with: plain frozen values built from its read models, each
with the fields of the API message of the same name (analytics.proto), money as exact decimal
strings; grpc_api.py maps them mechanically (libs/common/views.py)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg

from libs.common.currencies import FIAT_MINOR_UNITS

CENT = Decimal("0.01")


@dataclass(frozen=True)
class CurrencyTotals:
    """What every metric row counts, in one currency (a summary's part per currency)."""

    currency: str
    invoices_created: int
    invoices_paid: int
    amount_created: str
    amount_paid: str
    conversion_rate: str


@dataclass(frozen=True)
class DailyMetric(CurrencyTotals):
    metric_date: str  # YYYY-MM-DD


@dataclass(frozen=True)
class PlatformDay(DailyMetric):
    merchants_active: int


@dataclass(frozen=True)
class Summary:
    period: str
    from_date: str  # empty: "all" of a merchant with no metric day yet
    to_date: str
    invoices_created: int
    invoices_paid: int
    conversion_rate: str
    by_currency: tuple[CurrencyTotals, ...]
    currency: str = ""  # the period's one currency; empty with none or several
    amount_created: str | None = None  # None (unset): several currencies, which stay apart
    amount_paid: str | None = None


@dataclass(frozen=True)
class CurrencyActivity:
    currency: str
    merchants_active: int


@dataclass(frozen=True)
class PlatformMetrics:
    shard: int
    data: tuple[PlatformDay, ...]
    merchants_active: int
    merchants_active_by_currency: tuple[CurrencyActivity, ...]


@dataclass(frozen=True)
class ShardView:
    shard: int
    merchants: int
    invoices: int


def money(value: Decimal, minor_units: int = 2) -> str:
    """Exact, without trailing zeros past the currency's minor unit: 12.60000000 -> "12.60",
    0.125 -> "0.125", and in yen (0 minor units) 1500.00000000 -> "1500"."""
    normal = value.normalize()
    exponent = normal.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= -minor_units:
        normal = value.quantize(Decimal(1).scaleb(-minor_units))
    return format(normal, "f")


def money_in(currency: str, value: Decimal) -> str:
    """An amount of invoices in `currency`, to its minor unit. The table is the invoice domain's
    (stdlib only, in the same image): these are that service's amounts, formatted its way."""
    return money(value, FIAT_MINOR_UNITS.get(currency, 2))


def rate_of(row: asyncpg.Record) -> str:
    rate: Decimal = row["conversion_rate"]
    return format(rate.quantize(CENT), "f")


def _totals(row: asyncpg.Record) -> dict[str, Any]:
    """The counts and amounts every metric row has (a day's, a currency's), in the API's units."""
    currency: str = row["currency"]
    return {
        "currency": currency,
        "invoices_created": row["invoices_created"],
        "invoices_paid": row["invoices_paid"],
        "amount_created": money_in(currency, row["amount_created"]),
        "amount_paid": money_in(currency, row["amount_paid"]),
        "conversion_rate": rate_of(row),
    }


def daily_metric(row: asyncpg.Record) -> DailyMetric:
    metric_date: dt.date = row["metric_date"]
    return DailyMetric(metric_date=metric_date.isoformat(), **_totals(row))


def platform_day(row: asyncpg.Record) -> PlatformDay:
    metric_date: dt.date = row["metric_date"]
    return PlatformDay(
        metric_date=metric_date.isoformat(), merchants_active=row["merchants_active"], **_totals(row)
    )


def currency_totals(row: asyncpg.Record) -> CurrencyTotals:
    return CurrencyTotals(**_totals(row))


def currency_activity(row: asyncpg.Record) -> CurrencyActivity:
    return CurrencyActivity(currency=row["currency"], merchants_active=row["merchants_active"])
