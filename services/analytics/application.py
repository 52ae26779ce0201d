"""Analytics use cases: a merchant's daily metrics and summary, and the counts and metrics of one
shard. They take strings and numbers and answer with the views of views.py; grpc_api.py maps
those to protobuf."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace
from decimal import Decimal

from libs.common import ids
from libs.common.errors import FieldViolation, InvalidArgument
from libs.common.limits import ANALYTICS_RANGE_MAX_DAYS
from libs.common.replica_config import ANALYTICS
from libs.common.service import Runtime
from services.analytics import repository, views

# A summary period: its length in UTC days ending today (inclusive); None is all time.
PERIODS: dict[str, int | None] = {"7d": 7, "30d": 30, "90d": 90, "all": None}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


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

    async def get_daily_metrics(
        self, raw_merchant_id: str, from_date: str, to_date: str
    ) -> tuple[views.DailyMetric, ...]:
        merchant_id = ids.parse_id(raw_merchant_id)
        if merchant_id is None:
            raise InvalidArgument.field("merchant_id", "must be a UUID")
        start, end = date_range(from_date, to_date)
        rows = await self.rt.read(
            ANALYTICS, merchant_id, lambda db: repository.daily_metrics(db, merchant_id, start, end)
        )
        return tuple(views.daily_metric(r) for r in rows)

    async def get_summary(self, raw_merchant_id: str, period: str, as_of: str) -> views.Summary:
        merchant_id = ids.parse_id(raw_merchant_id)
        if merchant_id is None:
            raise InvalidArgument.field("merchant_id", "must be a UUID")
        start, end = period_range(period, as_of)
        row, currencies = await self.rt.read(
            ANALYTICS, merchant_id, lambda db: repository.merchant_totals(db, merchant_id, start, end)
        )
        # "all" starts on the merchant's first metric day; with none, there is no start.
        first: dt.date | None = start if start is not None else row["first_day"]
        # A currency whose rows a reorg took back to zeros was not traded in the period.
        by_currency = tuple(
            views.currency_totals(r) for r in currencies if r["invoices_created"] or r["invoices_paid"]
        )
        summary = views.Summary(
            period=period,
            from_date=first.isoformat() if first is not None else "",
            to_date=end.isoformat(),
            invoices_created=row["invoices_created"],
            invoices_paid=row["invoices_paid"],
            conversion_rate=views.rate_of(row),
            by_currency=by_currency,
        )
        # One sum only when there is one currency to sum in; several stay apart (unset).
        if len(by_currency) == 1:
            [only] = by_currency
            return replace(
                summary,
                currency=only.currency,
                amount_created=only.amount_created,
                amount_paid=only.amount_paid,
            )
        if not by_currency:
            zero = views.money(Decimal(0))
            return replace(summary, amount_created=zero, amount_paid=zero)
        return summary

    async def get_platform_metrics(self, shard: int, from_date: str, to_date: str) -> views.PlatformMetrics:
        start, end = date_range(from_date, to_date)
        days, active, by_currency = await self.rt.read_shard(
            ANALYTICS, shard, lambda db: repository.platform_metrics(db, start, end)
        )
        return views.PlatformMetrics(
            shard=shard,
            data=tuple(views.platform_day(d) for d in days),
            merchants_active=active,
            merchants_active_by_currency=tuple(views.currency_activity(c) for c in by_currency),
        )

    async def get_shard_view(self, shard: int) -> views.ShardView:
        merchants, invoices = await self.rt.read_shard(ANALYTICS, shard, repository.shard_counts)
        return views.ShardView(shard=shard, merchants=merchants, invoices=invoices)
