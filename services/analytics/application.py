"""Analytics use cases: a merchant's daily metrics and summary, and the counts and metrics of one
shard."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import asyncpg
from checkout.analytics.v1 import analytics_pb2 as pb

from libs.common import ids
from libs.common.currencies import FIAT_MINOR_UNITS
from libs.common.errors import FieldViolation, InvalidArgument
from libs.common.limits import ANALYTICS_RANGE_MAX_DAYS
from libs.common.replica_config import ANALYTICS
from libs.common.service import Runtime
from services.analytics import repository

# A summary period: its length in UTC days ending today (inclusive); None is all time.
PERIODS: dict[str, int | None] = {"7d": 7, "30d": 30, "90d": 90, "all": None}
CENT = Decimal("0.01")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


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


def metric_message(row: asyncpg.Record) -> pb.DailyMetric:
    metric_date: dt.date = row["metric_date"]
    currency: str = row["currency"]
    return pb.DailyMetric(
        metric_date=metric_date.isoformat(),
        currency=currency,
        invoices_created=row["invoices_created"],
        invoices_paid=row["invoices_paid"],
        amount_created=money_in(currency, row["amount_created"]),
        amount_paid=money_in(currency, row["amount_paid"]),
        conversion_rate=rate_of(row),
    )


def platform_day(row: asyncpg.Record) -> pb.PlatformDay:
    metric = metric_message(row)
    return pb.PlatformDay(
        metric_date=metric.metric_date,
        currency=metric.currency,
        invoices_created=metric.invoices_created,
        invoices_paid=metric.invoices_paid,
        amount_created=metric.amount_created,
        amount_paid=metric.amount_paid,
        conversion_rate=metric.conversion_rate,
        merchants_active=row["merchants_active"],
    )


def currency_totals(row: asyncpg.Record) -> pb.CurrencyTotals:
    currency: str = row["currency"]
    return pb.CurrencyTotals(
        currency=currency,
        invoices_created=row["invoices_created"],
        invoices_paid=row["invoices_paid"],
        amount_created=money_in(currency, row["amount_created"]),
        amount_paid=money_in(currency, row["amount_paid"]),
        conversion_rate=rate_of(row),
    )


def period_range(period: str, as_of: str) -> tuple[dt.date | None, dt.date]:
    """The inclusive days a summary covers: the last N UTC days up to `as_of` (today when
    empty), or everything up to it (start None) for "all"."""
    problems: list[FieldViolation] = []
    if period not in PERIODS:
        problems.append(FieldViolation("period", f"must be one of {', '.join(PERIODS)}"))
    end = _date(as_of, "as_of", problems) if as_of else dt.datetime.now(dt.UTC).date()
    if problems:
        raise InvalidArgument("; ".join(f"{p.field}: {p.reason}" for p in problems), problems)
    assert end is not None
    days = PERIODS[period]
    return (None if days is None else end - dt.timedelta(days=days - 1)), end


def _date(raw: str, field: str, problems: list[FieldViolation]) -> dt.date | None:
    if not raw:
        problems.append(FieldViolation(field, "is required (YYYY-MM-DD)"))
        return None
    try:
        if not _DATE.fullmatch(raw):
            raise ValueError(raw)
        return dt.date.fromisoformat(raw)
    except ValueError:
        problems.append(FieldViolation(field, "must be a date as YYYY-MM-DD"))
        return None


def date_range(from_date: str, to_date: str) -> tuple[dt.date, dt.date]:
    """Both ends inclusive, at most ANALYTICS_RANGE_MAX_DAYS days; the fields are named as in the HTTP API."""
    problems: list[FieldViolation] = []
    start, end = _date(from_date, "from", problems), _date(to_date, "to", problems)
    if start is not None and end is not None:
        if end < start:
            problems.append(FieldViolation("to", "must not be before from"))
        elif (end - start).days + 1 > ANALYTICS_RANGE_MAX_DAYS:
            problems.append(
                FieldViolation("to", f"the range may cover at most {ANALYTICS_RANGE_MAX_DAYS} days")
            )
    if problems:
        raise InvalidArgument("; ".join(f"{p.field}: {p.reason}" for p in problems), problems)
    assert start is not None and end is not None
    return start, end


class AnalyticsApp:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def get_daily_metrics(self, request: pb.GetDailyMetricsRequest) -> pb.GetDailyMetricsResponse:
        merchant_id = ids.parse_id(request.merchant_id)
        if merchant_id is None:
            raise InvalidArgument.field("merchant_id", "must be a UUID")
        start, end = date_range(request.from_date, request.to_date)
        rows = await self.rt.read(
            ANALYTICS, merchant_id, lambda db: repository.daily_metrics(db, merchant_id, start, end)
        )
        return pb.GetDailyMetricsResponse(data=[metric_message(r) for r in rows])

    async def get_summary(self, request: pb.GetSummaryRequest) -> pb.Summary:
        merchant_id = ids.parse_id(request.merchant_id)
        if merchant_id is None:
            raise InvalidArgument.field("merchant_id", "must be a UUID")
        start, end = period_range(request.period, request.as_of)
        row, currencies = await self.rt.read(
            ANALYTICS, merchant_id, lambda db: repository.merchant_totals(db, merchant_id, start, end)
        )
        # "all" starts on the merchant's first metric day; with none, there is no start.
        first: dt.date | None = start if start is not None else row["first_day"]
        # A currency whose rows a reorg took back to zeros was not traded in the period.
        by_currency = [currency_totals(r) for r in currencies if r["invoices_created"] or r["invoices_paid"]]
        summary = pb.Summary(
            period=request.period,
            from_date=first.isoformat() if first is not None else "",
            to_date=end.isoformat(),
            invoices_created=row["invoices_created"],
            invoices_paid=row["invoices_paid"],
            conversion_rate=rate_of(row),
            by_currency=by_currency,
        )
        # One sum only when there is one currency to sum in; several stay apart (unset).
        if len(by_currency) == 1:
            [only] = by_currency
            summary.currency = only.currency
            summary.amount_created, summary.amount_paid = only.amount_created, only.amount_paid
        elif not by_currency:
            summary.amount_created = summary.amount_paid = money(Decimal(0))
        return summary

    async def get_platform_metrics(self, request: pb.GetPlatformMetricsRequest) -> pb.PlatformMetrics:
        start, end = date_range(request.from_date, request.to_date)
        days, active, by_currency = await self.rt.read_shard(
            ANALYTICS, request.shard, lambda db: repository.platform_metrics(db, start, end)
        )
        return pb.PlatformMetrics(
            shard=request.shard,
            data=[platform_day(d) for d in days],
            merchants_active=active,
            merchants_active_by_currency=[
                pb.CurrencyActivity(currency=c["currency"], merchants_active=c["merchants_active"])
                for c in by_currency
            ],
        )

    async def get_shard_view(self, request: pb.GetShardViewRequest) -> pb.ShardView:
        merchants, invoices = await self.rt.read_shard(ANALYTICS, request.shard, repository.shard_counts)
        return pb.ShardView(shard=request.shard, merchants=merchants, invoices=invoices)
