"""API keys: issued for a merchant (operator or the merchant's key), listed and revoked with one.

The plaintext key appears once, in the 201 of its creation; the service keeps only a hash.
"""

from __future__ import annotations

from checkout.merchant.v1 import merchant_pb2
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from libs.common import apikeys
from services.gateway import render
from services.gateway.auth import authenticate, require_access, require_merchant
from services.gateway.idempotency import call_context
from services.gateway.state import state_of
from services.gateway.validation import Fields, Problems, json_body, path_id
from services.gateway.wire import to_timestamp


async def create_api_key(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    merchant_id = path_id(request, "merchant")
    require_access(caller, merchant_id, "api_keys:write")
    body = await json_body(request)
    problems = Problems()
    fields = Fields(body, problems, allowed=("name", "key_type", "permissions", "expires_at"))
    name = fields.string("name", required=True, max_length=200)
    key_type = fields.choice("key_type", apikeys.KEY_TYPES) or "secret"
    permissions = fields.string_list("permissions", choices=apikeys.PERMISSIONS)
    expires_at = fields.timestamp("expires_at")
    problems.raise_if_any()
    assert name is not None

    # The merchant service decides what the key may hold: at most what the grantor holds.
    message = merchant_pb2.CreateApiKeyRequest(
        merchant_id=str(merchant_id),
        name=name,
        key_type=key_type,
        permissions=permissions or [],
        use_default_permissions=permissions is None,
    )
    if caller.is_operator:
        message.operator = True
    else:
        message.granting_api_key_id = str(caller.api_key_id)
    if expires_at is not None:
        message.expires_at.CopyFrom(to_timestamp(expires_at))
    backends = state_of(request).backends
    created = await backends.call(
        backends.merchants(backends.shard_of(merchant_id)).CreateApiKey,
        message,
        call_context(request, caller.actor, body),
    )
    return JSONResponse(render.api_key(created.api_key, plaintext=created.key), status_code=201)


async def list_api_keys(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    merchant_id = require_merchant(caller, "api_keys:read")
    backends = state_of(request).backends
    listed = await backends.call(
        backends.merchants(backends.shard_of(merchant_id)).ListApiKeys,
        merchant_pb2.ListApiKeysRequest(merchant_id=str(merchant_id)),
        caller.context(request),
    )
    # A merchant has a handful of keys: the RPC returns them all, so there is no next page.
    return JSONResponse(render.page([render.api_key(k) for k in listed.api_keys], ""))


async def revoke_api_key(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    merchant_id = require_merchant(caller, "api_keys:write")
    key_id = path_id(request, "API key")
    backends = state_of(request).backends
    revoked = await backends.call(
        backends.merchants(backends.shard_of(merchant_id)).RevokeApiKey,
        merchant_pb2.RevokeApiKeyRequest(merchant_id=str(merchant_id), api_key_id=str(key_id)),
        caller.context(request),
    )
    return JSONResponse(render.api_key(revoked))


routes = [
    Route("/v1/merchants/{id}/api-keys", create_api_key, methods=["POST"]),
    Route("/v1/api-keys", list_api_keys, methods=["GET"]),
    Route("/v1/api-keys/{id}", revoke_api_key, methods=["DELETE"]),
]
