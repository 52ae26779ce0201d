"""/v1/admin/shards: the shard map with each shard's counts, tier, usage and health, the
balance with the planner's proposed slot moves, and the registration of a new shard."""

from __future__ import annotations

import asyncio
import logging

from checkout.analytics.v1 import analytics_pb2
from checkout.invoice.v1 import invoice_pb2
from checkout.ops.v1 import ops_pb2

from libs.common import balance
from libs.common.config import SERVICES
from services.gateway.clients import Backends
from services.gateway.context import CallContext
from services.gateway.errors import ApiError
from services.gateway.operations import Args, Operation, Reply, Rule
from services.gateway.schemas.shards import Balance, RegisteredShard, Replica, ShardRegistration, Shards
from services.gateway.shard_registry import add_shard
from services.gateway.state import state_of

log = logging.getLogger("checkout.gateway")
SHARD_DEADLINE_SECONDS = 5.0
TAG = "Operator"


async def _usage(
    backends: Backends, shard: int, context: CallContext
) -> list[ops_pb2.GetShardUsageResponse] | None:
    """Every service's share of the shard; None when one of them did not answer."""
    calls = [
        backends.call(
            backends.ops(service, shard).GetShardUsage,
            ops_pb2.GetShardUsageRequest(shard=shard),
            context,
            deadline=SHARD_DEADLINE_SECONDS,
        )
        for service in SERVICES
    ]
    answers = await asyncio.gather(*calls, return_exceptions=True)
    usage: list[ops_pb2.GetShardUsageResponse] = []
    for service, answer in zip(SERVICES, answers, strict=True):
        if isinstance(answer, ApiError):
            log.warning("shard %d: %s OpsService.GetShardUsage failed: %s", shard, service, answer.message)
            return None
        if isinstance(answer, BaseException):
            raise answer
        usage.append(answer)
    return usage


async def _shard(
    backends: Backends, shard: int, context: CallContext
) -> tuple[dict[str, object], dict[int, int] | None]:
    """The shard's view, and the rows of each of its slots (None: not every service answered)."""
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
    view, stats, usage = await asyncio.gather(
        view_call, stats_call, _usage(backends, shard, context), return_exceptions=True
    )
    for rpc, result in (("AnalyticsService.GetShardView", view), ("InvoiceService.GetShardStats", stats)):
        if isinstance(result, ApiError):
            log.warning("shard %d: %s failed: %s", shard, rpc, result.message)
        elif isinstance(result, BaseException):
            raise result
    if isinstance(usage, BaseException):
        raise usage
    shard_map = backends.shard_map
    slot_rows: dict[int, int] | None = None
    if usage is not None:
        slot_rows = {}
        for part in usage:
            for slot in part.slots:
                slot_rows[slot.slot] = slot_rows.get(slot.slot, 0) + slot.rows
    info = backends.directory.shards.get(shard)
    return {
        "id": shard,
        "tier": info.tier if info else "shared",
        "slots": shard_map.slot_count_of(shard),
        # Half-open [start, end), as the shard map keeps them.
        "slot_ranges": [[r.start, r.end] for r in shard_map.slots_of(shard)],
        "merchants": None if isinstance(view, BaseException) else view.merchants,
        "invoices": None if isinstance(stats, BaseException) else stats.invoices,
        "rows": None if usage is None else sum(u.rows for u in usage),
        "bytes": None if usage is None else sum(u.bytes for u in usage),
        "healthy": not isinstance(view, BaseException) and not isinstance(stats, BaseException),
        "replicas": None if isinstance(stats, BaseException) else [Replica.of(r) for r in stats.replicas],
    }, slot_rows


def _balance(
    backends: Backends, views: list[dict[str, object]], slot_rows: dict[int, int], complete: bool
) -> Balance:
    tiers = {int(str(v["id"])): str(v["tier"]) for v in views}
    shard_map = backends.shard_map
    by_tier: dict[str, list[int]] = {}
    for shard, tier in tiers.items():
        by_tier.setdefault(tier, []).append(balance.rows_of(shard_map, slot_rows, shard))
    ratio = max((balance.imbalance_ratio(rows) for rows in by_tier.values()), default=0.0)
    moves = balance.plan_moves(shard_map, slot_rows, tiers) if complete else []
    return Balance.model_validate(
        {
            "tolerance": balance.TOLERANCE,
            "imbalance_ratio": round(ratio, 4),
            "balanced": ratio <= balance.TOLERANCE,
            "complete": complete,
            "proposed_moves": [
                {"slots": m.slots, "from_shard": m.from_shard, "to_shard": m.to_shard, "rows": m.rows}
                for m in moves
            ],
        }
    )


async def shards(args: Args[None, None]) -> Shards:
    backends = state_of(args.request).backends
    context = args.context()
    version = backends.shard_map.version
    # A failing shard is reported unhealthy with null counts, never dropped from the list.
    shard_ids = backends.shards()
    answers = await asyncio.gather(*(_shard(backends, s, context) for s in shard_ids))
    views = [view for view, _ in answers]
    # A slot's rows as its owner holds them (a move's copy on its target is not counted twice).
    slot_rows: dict[int, int] = {}
    for shard, (_, rows) in zip(shard_ids, answers, strict=True):
        owned = {
            slot: n for slot, n in (rows or {}).items() if backends.shard_map.shard_for_slot(slot) == shard
        }
        slot_rows.update(owned)
    complete = all(rows is not None for _, rows in answers)
    return Shards.model_validate(
        {
            "shards": views,
            "shard_map_version": version,
            "balance": _balance(backends, views, slot_rows, complete),
        }
    )


async def register(args: Args[ShardRegistration, None]) -> Reply:
    state = state_of(args.request)
    info = await add_shard(state.config, state.backends.directory.shards, args.body.dsn, args.body.tier)
    await state.backends.directory.refresh()  # this gateway routes to it from its answer on
    registered = RegisteredShard(id=info.id, tier=info.tier, dsn=info.public_dsn, slots=0)
    return Reply(registered, status=201)


operations = [
    Operation(
        "GET", "/v1/admin/shards", shards,
        "The shard map, with each shard's counts, usage and health, and the balance", TAG,
        "operator", response=Shards,
        description="A shard that does not answer is listed with `healthy: false` and null counts. "
        "`balance.proposed_moves` are the slot moves that would bring every shard within 30 % of its "
        "tier group's mean rows.",
    ),
    Operation(
        "POST", "/v1/admin/shards", register, "Register a new shard", TAG, "operator",
        response=RegisteredShard, status=201, body=ShardRegistration, errors=(409, 503),
        rules=(
            Rule(r"dsn", r"cannot connect to .+", "dsn: a PostgreSQL database this gateway can reach."),
            Rule(r"dsn", r"is not a PostgreSQL DSN.*", "dsn: a URL that parses (host, port)."),
        ),
        example={"dsn": "postgresql://checkout@db-3:5432/checkout_shard_2", "tier": "shared"},
        description="Connects to the database (creating it when its server has none of that name), applies "
        "every service's migrations, and registers it under the next id. Every service instance that "
        "serves all shards begins serving it; it owns no slots until a slot move gives it some.",
    ),
]  # fmt: skip
