"""/v1/analytics: a merchant's daily metrics and summary (merchant key), warm-cached per
generation."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from checkout.analytics.v1 import analytics_pb2
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from libs.common.cache import PREFIX, Cache, generation_fence
from services.gateway import render
from services.gateway.auth import authenticate, require_merchant
from services.gateway.context import Consistency
from services.gateway.state import state_of
from services.gateway.validation import Problems, Query

MAX_DAYS = 366
PERIODS = ("7d", "30d", "90d", "all")


def date_range(query: Query) -> tuple[date, date]:
    """`from` and `to`, inclusive, at most MAX_DAYS days; violations go to `query.problems`."""
    start = query.date("from", required=True)
    end = query.date("to", required=True)
    if start is not None and end is not None:
        if end < start:
            query.problems.add("to", "must not be before from")
        elif (end - start).days + 1 > MAX_DAYS:
            query.problems.add("to", f"the range may cover at most {MAX_DAYS} days")
    query.problems.raise_if_any()
    assert start is not None and end is not None
    return start, end


async def daily_metrics(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    merchant_id = require_merchant(caller, "analytics:read")
    start, end = date_range(Query(request.query_params, Problems()))

    state = state_of(request)
    # The analytics projection bumps the merchant's generation on every change, which retires
    # every cached range of that merchant at once; "none" means Redis is down, so skip it.
    generation = await state.cache.generation("analytics", str(merchant_id))
    key = f"{PREFIX}analytics:daily:{merchant_id}:{generation}:{start}:{end}"
    backends = state.backends
    shard = backends.shard_of(merchant_id)
    context = caller.context(request)
    assert context.consistency is not None
    response: analytics_pb2.GetDailyMetricsResponse | None = None
    if generation != "none":
        cached = await state.cache.get_at(key, context.consistency.sent.at(shard))
        if cached is not None:
            response = _decode(cached[0])
    if response is None:
        response = await backends.call(
            backends.analytics(shard).GetDailyMetrics,
            analytics_pb2.GetDailyMetricsRequest(
                merchant_id=str(merchant_id), from_date=start.isoformat(), to_date=end.isoformat()
            ),
            context,
        )
        if generation != "none":
            await _keep(
                state.cache, key, response.SerializeToString(), context.consistency, shard, merchant_id
            )
    return JSONResponse({"data": [render.daily_metric(d) for d in response.data]})


async def _keep(
    cache: Cache, key: str, payload: bytes, consistency: Consistency, shard: int, merchant_id: uuid.UUID
) -> None:
    """Caches a merchant's analytics with the position its data is at least as new as; a replica
    read older than the change that made this generation is not kept (the bump's fence)."""
    fence = generation_fence("analytics", str(merchant_id))
    await cache.set_at(key, payload, consistency.read_positions.get(shard), hot=False, fence=fence)


def _decode(raw: bytes) -> analytics_pb2.GetDailyMetricsResponse | None:
    try:
        return analytics_pb2.GetDailyMetricsResponse.FromString(raw)
    except Exception:  # DecodeError or worse: a bad entry is just a miss
        return None


async def summary(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    merchant_id = require_merchant(caller, "analytics:read")
    query = Query(request.query_params, Problems())
    period = query.choice("period", PERIODS, required=True)
    query.problems.raise_if_any()
    assert period is not None

    state = state_of(request)
    # The period ends today (UTC): the day is in the key, and pinned in the request, so an entry
    # never answers for another day than the one it was computed for.
    today = datetime.now(UTC).date().isoformat()
    generation = await state.cache.generation("analytics", str(merchant_id))
    key = f"{PREFIX}analytics:summary:{merchant_id}:{generation}:{period}:{today}"
    backends = state.backends
    shard = backends.shard_of(merchant_id)
    context = caller.context(request)
    assert context.consistency is not None
    response: analytics_pb2.Summary | None = None
    if generation != "none":
        cached = await state.cache.get_at(key, context.consistency.sent.at(shard))
        if cached is not None:
            response = _decode_summary(cached[0])
    if response is None:
        response = await backends.call(
            backends.analytics(shard).GetSummary,
            analytics_pb2.GetSummaryRequest(merchant_id=str(merchant_id), period=period, as_of=today),
            context,
        )
        if generation != "none":
            await _keep(
                state.cache, key, response.SerializeToString(), context.consistency, shard, merchant_id
            )
    return JSONResponse(render.summary(response))


def _decode_summary(raw: bytes) -> analytics_pb2.Summary | None:
    try:
        return analytics_pb2.Summary.FromString(raw)
    except Exception:  # DecodeError or worse: a bad entry is just a miss
        return None


routes = [
    Route("/v1/analytics/daily", daily_metrics, methods=["GET"]),
    Route("/v1/analytics/summary", summary, methods=["GET"]),
]
