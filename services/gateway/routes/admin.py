"""/v1/admin: the operator's view across shards."""

from __future__ import annotations

import asyncio
import logging

from checkout.analytics.v1 import analytics_pb2
from checkout.invoice.v1 import invoice_pb2
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.gateway.auth import authenticate, require_operator
from services.gateway.clients import Backends
from services.gateway.context import CallContext
from services.gateway.errors import ApiError
from services.gateway.state import state_of

log = logging.getLogger("checkout.gateway")
SHARD_DEADLINE_SECONDS = 5.0


async def _shard(backends: Backends, shard: int, context: CallContext) -> dict[str, object]:
    view_call = backends.call(
        backends.analytics(shard).GetShardView,
        analytics_pb2.GetShardViewRequest(shard=shard),
        context,
        deadline=SHARD_DEADLINE_SECONDS,
    )
    stats_call = backends.call(
        backends.invoices(shard).GetShardStats,
        invoice_pb2.GetShardStatsRequest(shard=shard),
        context,
        deadline=SHARD_DEADLINE_SECONDS,
    )
    view, stats = await asyncio.gather(view_call, stats_call, return_exceptions=True)
    for rpc, result in (("AnalyticsService.GetShardView", view), ("InvoiceService.GetShardStats", stats)):
        if isinstance(result, ApiError):
            log.warning("shard %d: %s failed: %s", shard, rpc, result.message)
        elif isinstance(result, BaseException):
            raise result
    ranges = backends.shard_map.slots_of(shard)
    return {
        "id": shard,
        "slots": backends.shard_map.slot_count_of(shard),
        # Half-open [start, end), as the shard map keeps them.
        "slot_ranges": [[r.start, r.end] for r in ranges],
        "merchants": None if isinstance(view, BaseException) else view.merchants,
        "invoices": None if isinstance(stats, BaseException) else stats.invoices,
        "healthy": not isinstance(view, BaseException) and not isinstance(stats, BaseException),
    }


async def shards(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    require_operator(caller)
    backends = state_of(request).backends
    context = caller.context(request)
    # A failing shard is reported unhealthy with null counts, never dropped from the list.
    views = await asyncio.gather(*(_shard(backends, s, context) for s in backends.shards()))
    return JSONResponse({"shards": views, "shard_map_version": backends.shard_map.version})


routes = [Route("/v1/admin/shards", shards, methods=["GET"])]
