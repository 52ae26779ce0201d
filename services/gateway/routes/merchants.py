"""/v1/merchants: sign-up and profile (operator token, or the merchant's own key)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from checkout.merchant.v1 import merchant_pb2

from libs.common import ids, placement
from libs.common.cache import merchant_key
from libs.common.errors import FieldViolation
from libs.common.shardmap import slot_for_email
from services.gateway.auth import Caller, require_access
from services.gateway.errors import ApiError
from services.gateway.operations import Args, Operation, Reply, Rule
from services.gateway.pagination import Page, PageQuery
from services.gateway.schemas.merchants import Merchant, MerchantCreate, MerchantUpdate
from services.gateway.state import state_of
from services.gateway.wire import to_struct

# Changing wallets redirects where customers pay: a scope of its own, held by secret keys only.
PROFILE_WRITE_PERMISSION = "merchants:write"
# Failures that mean "this shard is down", as opposed to the request being wrong.
SHARD_DOWN = ("unavailable", "deadline_exceeded", "internal")
TAG = "Merchants"

PROFILE_RULES = (
    Rule(r"business_name", r"must not be blank", "business_name: must not be blank (only spaces)."),
    Rule(r"wallets\.\w+", r".+", "wallets.<network>: must be a valid account key of that network."),
    Rule(
        r"settings(\..+)?",
        r".+",
        "settings: at most 16384 bytes; `rate_spread_percent` and `payment_tolerance.underpaid_percent` "
        "within their bounds.",
    ),
    Rule(r"contact_email", r"must be an email address", "contact_email: an email address, after trimming."),
)
EXAMPLE = {
    "business_name": "Coffee Roasters",
    "contact_email": "owner@coffee.example",
    "plan_type": "pro",
    "settings": {"rate_spread_percent": "0.5", "payment_tolerance": {"underpaid_percent": "1.0"}},
}


async def create_merchant(args: Args[MerchantCreate, None]) -> Reply:
    body = args.body
    backends = state_of(args.request).backends
    merchant_id = await _placed_id(args, body)
    message = merchant_pb2.CreateMerchantRequest(
        merchant_id=str(merchant_id),
        business_name=body.business_name,
        contact_email=body.contact_email,
        plan_type=body.plan_type or "",
        wallets=body.wallets.as_map() if body.wallets else {},
    )
    if body.settings is not None:
        message.settings.CopyFrom(to_struct(_settings(body)))
    merchant, replayed = await backends.command(
        backends.merchants(backends.shard_of(merchant_id)).CreateMerchant, message, args.command_context()
    )
    return Reply(Merchant.of(merchant), replayed=replayed)


async def _placed_id(args: Args[MerchantCreate, None], body: MerchantCreate) -> uuid.UUID:
    """The new merchant's id: minted in a slot of its plan's tier (libs/common/placement.py),
    then claimed with its contact email on the email slot's shard, which answers the id of an
    earlier sign-up with that email when there was one (the create then says it exists, or,
    when that sign-up never got as far as creating the merchant, completes it)."""
    state = state_of(args.request)
    backends = state.backends
    tiers = {shard: info.tier for shard, info in backends.directory.shards.items()}
    plan = body.plan_type or "free"
    slot = placement.merchant_slot(
        backends.shard_map, tiers, state.config.placement, plan, body.contact_email
    )
    claim = merchant_pb2.ClaimContactEmailRequest(
        contact_email=body.contact_email, merchant_id=str(ids.new_merchant_id_in(slot))
    )
    email_shard = backends.shard_map.shard_for_slot(slot_for_email(body.contact_email))
    claimed = await backends.call(backends.merchants(email_shard).ClaimContactEmail, claim, args.context())
    return uuid.UUID(claimed.merchant_id)


def _settings(body: MerchantCreate | MerchantUpdate) -> dict[str, Any]:
    assert body.settings is not None
    return body.settings.model_dump(exclude_none=True)


async def list_merchants(args: Args[None, PageQuery]) -> Page[Merchant]:
    limit, cursor = args.query.limit, args.query.cursor_or_empty
    backends = state_of(args.request).backends
    # ListMerchants lists every shard its instance serves, so ask each address once.
    served: dict[str, list[int]] = {}
    for shard in backends.shards():
        served.setdefault(backends.address("merchant", shard), []).append(shard)
    context = args.context()
    message = merchant_pb2.ListMerchantsRequest(limit=limit, cursor=cursor)
    results = await asyncio.gather(
        *(
            backends.call(backends.merchants_at(address).ListMerchants, message, context)
            for address in served
        ),
        return_exceptions=True,
    )
    pages: list[merchant_pb2.ListMerchantsResponse] = []
    down: list[FieldViolation] = []
    for (address, shards), result in zip(served.items(), results, strict=True):
        if isinstance(result, ApiError) and result.code in SHARD_DOWN:
            down += [FieldViolation(f"shards[{s}]", f"{address}: {result.message}") for s in shards]
        elif isinstance(result, BaseException):
            raise result  # the request itself is wrong (e.g. a bad cursor), or a bug
        else:
            pages.append(result)
    if down:
        # A partial list would look complete; say which shards are missing instead.
        names = ", ".join(d.field for d in down)
        raise ApiError("unavailable", f"cannot list merchants: {names} unavailable", down)

    merged = {m.id: m for page in pages for m in page.merchants}
    ordered = sorted(merged.values(), key=lambda m: _id_order(m.id), reverse=True)
    chosen = ordered[:limit]
    more = len(ordered) > limit or any(page.next_cursor for page in pages)
    next_cursor = chosen[-1].id if more and chosen else ""
    return Page[Merchant].of([Merchant.of(m) for m in chosen], next_cursor)


def _id_order(raw: str) -> int:
    """Merchant ids are UUIDv7: their integer order is their creation order."""
    value = ids.parse_id(raw)
    return value.int if value is not None else -1


async def get_merchant(args: Args[None, None]) -> Merchant:
    merchant_id = args.ids["id"]
    require_access(args.caller, merchant_id, "merchants:read")
    state = state_of(args.request)
    backends = state.backends
    shard = backends.shard_of(merchant_id)
    key = merchant_key(str(merchant_id))
    cached = await args.consistency.cached(state.cache, key, shard)
    if cached is not None:
        hit = _decode_merchant(cached)
        if hit is not None and hit.id == str(merchant_id):
            return Merchant.of(hit)
    merchant = await backends.call(
        backends.merchants(shard).GetMerchant,
        merchant_pb2.GetMerchantRequest(merchant_id=str(merchant_id)),
        args.context(),
    )
    await args.consistency.keep(state.cache, key, shard, merchant.SerializeToString(), hot=False)
    return Merchant.of(merchant)


def _decode_merchant(raw: bytes) -> merchant_pb2.Merchant | None:
    try:
        return merchant_pb2.Merchant.FromString(raw)
    except Exception:  # DecodeError or worse: a bad entry is just a miss
        return None


def _require_profile_write(caller: Caller, merchant_id: uuid.UUID) -> None:
    require_access(caller, merchant_id, PROFILE_WRITE_PERMISSION)
    if not caller.is_operator and caller.key_type != "secret":
        raise ApiError("permission_denied", "only a secret key may change the merchant")


async def update_merchant(args: Args[MerchantUpdate, None]) -> Merchant:
    merchant_id = args.ids["id"]
    _require_profile_write(args.caller, merchant_id)
    body = args.body
    message = merchant_pb2.UpdateMerchantRequest(merchant_id=str(merchant_id))
    if body.business_name is not None:
        message.business_name = body.business_name
    if body.settings is not None:
        message.settings.CopyFrom(to_struct(_settings(body)))
        message.replace_settings = True
    if body.wallets is not None:
        message.wallets.update(body.wallets.as_map())
        message.replace_wallets = True
    state = state_of(args.request)
    backends = state.backends
    merchant = await backends.call(
        backends.merchants(backends.shard_of(merchant_id)).UpdateMerchant, message, args.context()
    )
    # The merchant service drops the key too; doing it here as well means this caller's next
    # GET reads its own write even if that invalidation failed open.
    await state.cache.invalidate(merchant_key(str(merchant_id)))
    return Merchant.of(merchant)


operations = [
    Operation(
        "POST", "/v1/merchants", create_merchant, "Sign a merchant up", TAG, "operator",
        response=Merchant, status=201, body=MerchantCreate, errors=(409,), rules=PROFILE_RULES,
        idempotent=True, example=EXAMPLE,
        description="`contact_email` is unique platform-wide: a second sign-up with it is 409.",
    ),
    Operation(
        "GET", "/v1/merchants", list_merchants, "List merchants, newest first", TAG, "operator",
        response=Page[Merchant], query=PageQuery,
        rules=(Rule(r"cursor", r".+", "cursor: must be a `next_cursor` this API returned."),),
    ),
    Operation(
        "GET", "/v1/merchants/{id}", get_merchant, "Read a merchant", TAG, "either",
        response=Merchant, permission="merchants:read", errors=(404,),
        description="The operator, or the merchant's own key with `merchants:read`.",
    ),
    Operation(
        "PATCH", "/v1/merchants/{id}", update_merchant, "Change a merchant's name, settings or wallets", TAG,
        "either", response=Merchant, permission=PROFILE_WRITE_PERMISSION, body=MerchantUpdate,
        errors=(404, 409), rules=PROFILE_RULES[:3],
        example={"wallets": {"ethereum": "xpub6DCoCpSuQZB2jawqnGMEPS63ePKWkwWPH4TU45Q7LPXWuNd8TMtVxRrgjtEshuqpK3mdhaWHPFsBngh5GFZaM6si3yZdUsT8ddYM3PwnATt"}},
        description="The operator, or the merchant's own secret key with `merchants:write`.",
    ),
]  # fmt: skip
