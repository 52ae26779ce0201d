"""/v1/admin: the operator's view across shards."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from checkout.analytics.v1 import analytics_pb2

from libs.common.errors import FieldViolation
from services.gateway.clients import Backends
from services.gateway.context import CallContext
from services.gateway.errors import ApiError
from services.gateway.operations import Args, Operation
from services.gateway.routes import admin_metrics, admin_shards, dead_letters, slot_moves
from services.gateway.routes.admin_shards import SHARD_DEADLINE_SECONDS
from services.gateway.routes.analytics import RANGE_RULE, date_range
from services.gateway.schemas.analytics import DateRangeQuery, PlatformMetrics
from services.gateway.state import state_of

log = logging.getLogger("checkout.gateway")
CENT = Decimal("0.01")


@dataclass
class Sums:
    """Metrics of one currency added up across merchants and shards. Amounts stay exact
    Decimals, starting from an exact 0 so that the sum keeps the shards' decimals ("1500" yen,
    "12.50" dollars); the rate is computed once from the sums, never averaged from the shards'
    rates."""

    invoices_created: int = 0
    invoices_paid: int = 0
    amount_created: Decimal = Decimal(0)
    amount_paid: Decimal = Decimal(0)
    merchants_active: int = 0

    def add(self, m: analytics_pb2.PlatformDay, merchants_active: int) -> None:
        self.invoices_created += m.invoices_created
        self.invoices_paid += m.invoices_paid
        self.amount_created += Decimal(m.amount_created)
        self.amount_paid += Decimal(m.amount_paid)
        self.merchants_active += merchants_active

    def conversion_rate(self) -> str:
        # As the analytics service rounds (Postgres round(): half away from zero), 2 decimals.
        if self.invoices_created == 0:
            return "0.00"
        rate = Decimal(100 * self.invoices_paid) / Decimal(self.invoices_created)
        return format(rate.quantize(CENT, rounding=ROUND_HALF_UP), "f")

    def render(self) -> dict[str, object]:
        return {
            "invoices_created": self.invoices_created,
            "invoices_paid": self.invoices_paid,
            "amount_created": format(self.amount_created, "f"),
            "amount_paid": format(self.amount_paid, "f"),
            "conversion_rate": self.conversion_rate(),
            "merchants_active": self.merchants_active,
        }

    def traded(self) -> bool:
        # A currency whose rows a reorg took back to zeros was not traded in the range.
        return self.invoices_created > 0 or self.invoices_paid > 0


def _totals(by_currency: dict[str, Sums], merchants_active: int) -> dict[str, object]:
    """The range across currencies: counts add up, amounts only when there is one currency to
    add them in (null with several; zero with none)."""
    traded = [(c, sums) for c, sums in by_currency.items() if sums.traded()]
    totals = Sums(
        invoices_created=sum(s.invoices_created for s in by_currency.values()),
        invoices_paid=sum(s.invoices_paid for s in by_currency.values()),
        amount_created=Decimal("0.00"),
        amount_paid=Decimal("0.00"),
        merchants_active=merchants_active,
    )
    currency: str | None = None
    if len(traded) == 1:
        [(currency, only)] = traded
        totals.amount_created, totals.amount_paid = only.amount_created, only.amount_paid
    rendered = {**totals.render(), "currency": currency}
    if len(traded) > 1:
        rendered["amount_created"] = rendered["amount_paid"] = None
    return rendered


async def _platform_shard(
    backends: Backends, shard: int, start: date, end: date, context: CallContext
) -> analytics_pb2.PlatformMetrics | ApiError:
    try:
        return await backends.call(
            backends.analytics(shard).GetPlatformMetrics,
            analytics_pb2.GetPlatformMetricsRequest(
                shard=shard, from_date=start.isoformat(), to_date=end.isoformat()
            ),
            context,
            deadline=SHARD_DEADLINE_SECONDS,
        )
    except ApiError as error:
        log.warning("shard %d: AnalyticsService.GetPlatformMetrics failed: %s", shard, error.message)
        return error


async def platform_metrics(args: Args[None, DateRangeQuery]) -> PlatformMetrics:
    """Every merchant's daily metrics summed across all shards, per day and fiat currency.

    Each shard is asked at once with its own deadline. A shard that fails or times out is listed
    with ok false and its error, and the sums cover the shards that answered ("complete" false):
    still a 200, so one slow shard does not blind the operator. Only when no shard answers is
    it a 503 naming each.
    """
    start, end = date_range(args.query)
    backends = state_of(args.request).backends
    context = args.context()
    shard_ids = backends.shards()
    results = await asyncio.gather(*(_platform_shard(backends, s, start, end, context) for s in shard_ids))

    days: dict[tuple[str, str], Sums] = {}
    by_currency: dict[str, Sums] = {}
    active = 0
    reports: list[dict[str, object]] = []
    failed: list[FieldViolation] = []
    for shard, result in zip(shard_ids, results, strict=True):
        if isinstance(result, ApiError):
            reports.append(
                {"id": shard, "ok": False, "error": {"code": result.code, "message": result.message}}
            )
            failed.append(FieldViolation(f"shards[{shard}]", f"{result.code}: {result.message}"))
            continue
        reports.append({"id": shard, "ok": True})
        for day in result.data:
            days.setdefault((day.metric_date, day.currency), Sums()).add(day, day.merchants_active)
            by_currency.setdefault(day.currency, Sums()).add(day, 0)
        # Distinct over the range, not the sum of the days; a merchant lives on one shard only.
        active += result.merchants_active
        for activity in result.merchants_active_by_currency:
            by_currency.setdefault(activity.currency, Sums()).merchants_active += activity.merchants_active
    if failed and len(failed) == len(shard_ids):
        raise ApiError("unavailable", "no shard answered", failed)
    return PlatformMetrics.model_validate(
        {
            "from": start.isoformat(),
            "to": end.isoformat(),
            "data": [{"metric_date": d, "currency": c, **days[d, c].render()} for d, c in sorted(days)],
            "totals": _totals(by_currency, active),
            "totals_by_currency": [
                {"currency": c, **by_currency[c].render()}
                for c in sorted(by_currency)
                if by_currency[c].traded()
            ],
            "complete": not failed,
            "shards": reports,
        }
    )


TAG = "Operator"
operations = [
    Operation(
        "GET", "/v1/admin/platform-metrics", platform_metrics, "Every merchant's daily metrics, all shards",
        TAG, "operator", response=PlatformMetrics, query=DateRangeQuery, rules=(RANGE_RULE,),
        description="A shard that fails is listed with `ok: false` and left out of the sums "
        "(`complete: false`); 503 only when no shard answers.",
    ),
    *admin_shards.operations,
    *slot_moves.operations,
    *dead_letters.operations,
    *admin_metrics.operations,
]  # fmt: skip
