"""/v1/merchants: sign-up and profile (operator token, or the merchant's own key)."""

from __future__ import annotations

import asyncio
import uuid

from checkout.merchant.v1 import merchant_pb2
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from libs.common import ids
from libs.common.cache import merchant_key
from libs.common.errors import FieldViolation
from services.gateway import render
from services.gateway.auth import (
    Caller,
    authenticate,
    require_access,
    require_operator,
)
from services.gateway.errors import ApiError
from services.gateway.idempotency import call_context
from services.gateway.state import state_of
from services.gateway.validation import Fields, Problems, Query, json_body, path_id
from services.gateway.wire import to_struct

PLAN_TYPES = ("free", "pro", "enterprise")
# Changing wallets redirects where customers pay: a scope of its own, held by secret keys only.
PROFILE_WRITE_PERMISSION = "merchants:write"
# Failures that mean "this shard is down", as opposed to the request being wrong.
SHARD_DOWN = ("unavailable", "deadline_exceeded", "internal")


async def create_merchant(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    require_operator(caller)
    body = await json_body(request)
    problems = Problems()
    fields = Fields(
        body,
        problems,
        allowed=("business_name", "contact_email", "plan_type", "settings", "wallets"),
    )
    business_name = fields.string("business_name", required=True, max_length=200)
    contact_email = fields.string("contact_email", required=True, max_length=320)
    if contact_email is not None and "@" not in contact_email:
        problems.add("contact_email", "must be an email address")
    plan_type = fields.choice("plan_type", PLAN_TYPES)
    settings = fields.object("settings")
    wallets = fields.string_map("wallets")
    problems.raise_if_any()
    assert business_name is not None and contact_email is not None

    # Minted here so the id carries the slot of the email: duplicate sign-ups meet on one shard.
    merchant_id = ids.new_merchant_id(contact_email)
    message = merchant_pb2.CreateMerchantRequest(
        merchant_id=str(merchant_id),
        business_name=business_name,
        contact_email=contact_email,
        plan_type=plan_type or "",
        wallets=wallets or {},
    )
    if settings is not None:
        message.settings.CopyFrom(to_struct(settings))
    backends = state_of(request).backends
    merchant = await backends.call(
        backends.merchants(backends.shard_of(merchant_id)).CreateMerchant,
        message,
        call_context(request, caller.actor, body),
    )
    return JSONResponse(render.merchant(merchant), status_code=201)


async def list_merchants(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    require_operator(caller)
    problems = Problems()
    query = Query(request.query_params, problems)
    limit, cursor = query.limit(), query.cursor()
    problems.raise_if_any()

    backends = state_of(request).backends
    # ListMerchants lists every shard its instance serves, so ask each address once.
    served: dict[str, list[int]] = {}
    for shard in backends.shards():
        served.setdefault(backends.address("merchant", shard), []).append(shard)
    context = caller.context(request)
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
    return JSONResponse(render.page([render.merchant(m) for m in chosen], next_cursor))


def _id_order(raw: str) -> int:
    """Merchant ids are UUIDv7: their integer order is their creation order."""
    value = ids.parse_id(raw)
    return value.int if value is not None else -1


async def get_merchant(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    merchant_id = path_id(request, "merchant")
    require_access(caller, merchant_id, "merchants:read")
    state = state_of(request)
    backends = state.backends
    shard = backends.shard_of(merchant_id)
    context = caller.context(request)
    assert context.consistency is not None
    key = merchant_key(str(merchant_id))
    cached = await state.cache.get_at(key, context.consistency.sent.at(shard))
    if cached is not None:
        merchant = _decode_merchant(cached[0])
        if merchant is not None and merchant.id == str(merchant_id):
            return JSONResponse(render.merchant(merchant))
    merchant = await backends.call(
        backends.merchants(shard).GetMerchant,
        merchant_pb2.GetMerchantRequest(merchant_id=str(merchant_id)),
        context,
    )
    position = context.consistency.read_positions.get(shard)
    await state.cache.set_at(key, merchant.SerializeToString(), position, hot=False)
    return JSONResponse(render.merchant(merchant))


def _decode_merchant(raw: bytes) -> merchant_pb2.Merchant | None:
    try:
        return merchant_pb2.Merchant.FromString(raw)
    except Exception:  # DecodeError or worse: a bad entry is just a miss
        return None


def _require_profile_write(caller: Caller, merchant_id: uuid.UUID) -> None:
    require_access(caller, merchant_id, PROFILE_WRITE_PERMISSION)
    if not caller.is_operator and caller.key_type != "secret":
        raise ApiError("permission_denied", "only a secret key may change the merchant")


async def update_merchant(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    merchant_id = path_id(request, "merchant")
    _require_profile_write(caller, merchant_id)
    body = await json_body(request)
    problems = Problems()
    fields = Fields(body, problems, allowed=("business_name", "settings", "wallets"))
    business_name = fields.string("business_name", max_length=200)
    if business_name is not None and not business_name.strip():
        problems.add("business_name", "must not be empty")
    settings = fields.object("settings")
    wallets = fields.string_map("wallets")
    problems.raise_if_any()

    message = merchant_pb2.UpdateMerchantRequest(merchant_id=str(merchant_id))
    if business_name is not None:
        message.business_name = business_name
    if settings is not None:
        message.settings.CopyFrom(to_struct(settings))
        message.replace_settings = True
    if wallets is not None:
        message.wallets.update(wallets)
        message.replace_wallets = True
    state = state_of(request)
    backends = state.backends
    merchant = await backends.call(
        backends.merchants(backends.shard_of(merchant_id)).UpdateMerchant,
        message,
        caller.context(request),
    )
    # The merchant service drops the key too; doing it here as well means this caller's next
    # GET reads its own write even if that invalidation failed open.
    await state.cache.invalidate(merchant_key(str(merchant_id)))
    return JSONResponse(render.merchant(merchant))


routes = [
    Route("/v1/merchants", create_merchant, methods=["POST"]),
    Route("/v1/merchants", list_merchants, methods=["GET"]),
    Route("/v1/merchants/{id}", get_merchant, methods=["GET"]),
    Route("/v1/merchants/{id}", update_merchant, methods=["PATCH"]),
]
