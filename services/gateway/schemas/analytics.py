"""A merchant's analytics, and the operator's views across shards."""

from __future__ import annotations

from typing import Annotated

from checkout.analytics.v1 import analytics_pb2
from pydantic import Field

from libs.common import limits
from services.gateway.schemas.base import Day, MoneyOut, QueryModel, ResponseModel, optional
from services.gateway.schemas.types import Choice

PERIODS = ("7d", "30d", "90d", "all")
MAX_DAYS = limits.ANALYTICS_RANGE_MAX_DAYS


class DateRangeQuery(QueryModel):
    start: Day = Field(alias="from", description="First day, inclusive.")
    end: Day = Field(alias="to", description=f"Last day, inclusive; at most {MAX_DAYS} days after `from`.")


class SummaryQuery(QueryModel):
    period: Annotated[str, Choice(PERIODS)] = Field(description="Ending today (UTC).")


class DailyMetric(ResponseModel):
    metric_date: str
    currency: str
    invoices_created: int
    invoices_paid: int
    amount_created: MoneyOut
    amount_paid: MoneyOut
    conversion_rate: str = Field(description="Percent paid of created, 2 decimals.")

    @classmethod
    def of(cls, d: analytics_pb2.DailyMetric) -> DailyMetric:
        return cls(
            metric_date=d.metric_date,
            currency=d.currency,
            invoices_created=d.invoices_created,
            invoices_paid=d.invoices_paid,
            amount_created=d.amount_created,
            amount_paid=d.amount_paid,
            conversion_rate=d.conversion_rate,
        )


class DailyMetrics(ResponseModel):
    data: list[DailyMetric]


class CurrencyTotals(ResponseModel):
    currency: str
    invoices_created: int
    invoices_paid: int
    amount_created: MoneyOut
    amount_paid: MoneyOut
    conversion_rate: str

    @classmethod
    def of(cls, c: analytics_pb2.CurrencyTotals) -> CurrencyTotals:
        return cls(
            currency=c.currency,
            invoices_created=c.invoices_created,
            invoices_paid=c.invoices_paid,
            amount_created=c.amount_created,
            amount_paid=c.amount_paid,
            conversion_rate=c.conversion_rate,
        )


class Summary(ResponseModel):
    period: str
    start: str | None = Field(alias="from", description="null for `all` with no metrics yet.")
    end: str = Field(alias="to")
    invoices_created: int
    invoices_paid: int
    amount_created: str | None = Field(description="null when the period has several currencies.")
    amount_paid: str | None
    currency: str | None
    conversion_rate: str
    by_currency: list[CurrencyTotals]

    @classmethod
    def of(cls, s: analytics_pb2.Summary) -> Summary:
        return cls.model_validate(
            {
                "period": s.period,
                "from": optional(s.from_date),
                "to": s.to_date,
                "invoices_created": s.invoices_created,
                "invoices_paid": s.invoices_paid,
                "amount_created": s.amount_created if s.HasField("amount_created") else None,
                "amount_paid": s.amount_paid if s.HasField("amount_paid") else None,
                "currency": optional(s.currency),
                "conversion_rate": s.conversion_rate,
                "by_currency": [CurrencyTotals.of(c) for c in s.by_currency],
            }
        )


class PlatformSums(ResponseModel):
    invoices_created: int
    invoices_paid: int
    amount_created: str | None
    amount_paid: str | None
    conversion_rate: str
    merchants_active: int


class PlatformDay(PlatformSums):
    metric_date: str
    currency: str


class PlatformTotals(PlatformSums):
    currency: str | None = Field(description="The one currency traded, or null with several (amounts null).")


class CurrencyPlatformTotals(PlatformSums):
    currency: str


class ShardErrorInfo(ResponseModel):
    code: str
    message: str


class ShardReport(ResponseModel):
    id: int
    ok: bool
    error: ShardErrorInfo | None = None


class PlatformMetrics(ResponseModel):
    start: str = Field(alias="from")
    end: str = Field(alias="to")
    data: list[PlatformDay]
    totals: PlatformTotals
    totals_by_currency: list[CurrencyPlatformTotals]
    complete: bool = Field(description="false when a shard did not answer; see `shards`.")
    shards: list[ShardReport]
