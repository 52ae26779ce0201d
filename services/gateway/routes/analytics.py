"""/v1/analytics: a merchant's daily metrics and summary (merchant key), warm-cached per
generation."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TypeVar

from checkout.analytics.v1 import analytics_pb2
from google.protobuf.message import Message

from libs.common.cache import PREFIX, generation_fence
from libs.common.errors import FieldViolation
from services.gateway.operations import Args, Operation, Rule
from services.gateway.schemas.analytics import (
    MAX_DAYS,
    DailyMetric,
    DailyMetrics,
    DateRangeQuery,
    Summary,
    SummaryQuery,
)
from services.gateway.state import state_of
from services.gateway.violations import invalid

TAG = "Analytics"
M = TypeVar("M", bound=Message)
RANGE_RULE = Rule(
    r"to",
    r"must not be before from|the range may cover at most \d+ days",
    f"to: not before from, at most {MAX_DAYS} days on.",
)


def date_range(query: DateRangeQuery) -> tuple[date, date]:
    """`from` and `to`, inclusive, at most MAX_DAYS days apart, or a 422 on `to`."""
    return checked_range(query.start, query.end, MAX_DAYS)


def checked_range(start: date, end: date, max_days: int) -> tuple[date, date]:
    """`from` and `to`, inclusive, at most `max_days` days apart, or a 422 on `to` (the words
    RANGE_RULE documents)."""
    if end < start:
        raise invalid([FieldViolation("to", "must not be before from")])
    if (end - start).days + 1 > max_days:
        raise invalid([FieldViolation("to", f"the range may cover at most {max_days} days")])
    return start, end


async def daily_metrics(args: Args[None, DateRangeQuery]) -> DailyMetrics:
    start, end = date_range(args.query)
    merchant_id = args.merchant_id
    state = state_of(args.request)
    # The analytics projection bumps the merchant's generation on every change, which retires
    # every cached range of that merchant at once; "none" means Redis is down, so skip it.
    generation = await state.cache.generation("analytics", str(merchant_id))
    key = f"{PREFIX}analytics:daily:{merchant_id}:{generation}:{start}:{end}"
    response: analytics_pb2.GetDailyMetricsResponse | None = None
    backends = state.backends
    shard = backends.shard_of(merchant_id)
    if generation != "none":
        cached = await args.consistency.cached(state.cache, key, shard)
        if cached is not None:
            response = _decode(analytics_pb2.GetDailyMetricsResponse, cached)
    if response is None:
        response = await backends.call(
            backends.analytics(shard).GetDailyMetrics,
            analytics_pb2.GetDailyMetricsRequest(
                merchant_id=str(merchant_id), from_date=start.isoformat(), to_date=end.isoformat()
            ),
            args.context(),
        )
        if generation != "none":
            # Not kept if older than the change that made this generation (the bump's fence).
            fence = generation_fence("analytics", str(merchant_id))
            await args.consistency.keep(
                state.cache, key, shard, response.SerializeToString(), hot=False, fence=fence
            )
    return DailyMetrics(data=[DailyMetric.of(d) for d in response.data])


def _decode(kind: type[M], raw: bytes) -> M | None:
    try:
        return kind.FromString(raw)
    except Exception:  # DecodeError or worse: a bad entry is just a miss
        return None


async def summary(args: Args[None, SummaryQuery]) -> Summary:
    merchant_id = args.merchant_id
    period = args.query.period
    state = state_of(args.request)
    # The period ends today (UTC): the day is in the key, and pinned in the request, so an entry
    # never answers for another day than the one it was computed for.
    today = datetime.now(UTC).date().isoformat()
    generation = await state.cache.generation("analytics", str(merchant_id))
    key = f"{PREFIX}analytics:summary:{merchant_id}:{generation}:{period}:{today}"
    response: analytics_pb2.Summary | None = None
    backends = state.backends
    shard = backends.shard_of(merchant_id)
    if generation != "none":
        cached = await args.consistency.cached(state.cache, key, shard)
        if cached is not None:
            response = _decode(analytics_pb2.Summary, cached)
    if response is None:
        response = await backends.call(
            backends.analytics(shard).GetSummary,
            analytics_pb2.GetSummaryRequest(merchant_id=str(merchant_id), period=period, as_of=today),
            args.context(),
        )
        if generation != "none":
            # Not kept if older than the change that made this generation (the bump's fence).
            fence = generation_fence("analytics", str(merchant_id))
            await args.consistency.keep(
                state.cache, key, shard, response.SerializeToString(), hot=False, fence=fence
            )
    return Summary.of(response)


operations = [
    Operation(
        "GET", "/v1/analytics/daily", daily_metrics, "Daily metrics per currency", TAG, "merchant",
        response=DailyMetrics, permission="analytics:read", query=DateRangeQuery, rules=(RANGE_RULE,),
    ),
    Operation(
        "GET", "/v1/analytics/summary", summary, "Totals over a period ending today", TAG, "merchant",
        response=Summary, permission="analytics:read", query=SummaryQuery,
    ),
]  # fmt: skip
