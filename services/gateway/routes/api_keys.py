"""API keys: issued for a merchant (operator or the merchant's key), listed and revoked with one.

The plaintext key appears once, in the 201 of its creation; the service keeps only a hash. A
revocation is dropped from this gateway's key cache before the answer goes out, and from every
other replica's when it hears the merchant service's event.
"""

from __future__ import annotations

from checkout.merchant.v1 import merchant_pb2

from services.gateway.auth import require_access
from services.gateway.operations import Args, Operation, Reply, Rule
from services.gateway.pagination import Listing
from services.gateway.schemas.merchants import ApiKey, ApiKeyCreate, CreatedApiKey
from services.gateway.state import state_of
from services.gateway.wire import to_timestamp

TAG = "API keys"


async def create_api_key(args: Args[ApiKeyCreate, None]) -> Reply:
    merchant_id = args.ids["id"]
    require_access(args.caller, merchant_id, "api_keys:write")
    body = args.body
    key_type = body.key_type or "secret"
    message = merchant_pb2.CreateApiKeyRequest(
        merchant_id=str(merchant_id),
        name=body.name,
        key_type=key_type,
        permissions=body.permissions or [],
        use_default_permissions=body.permissions is None,
    )
    # The merchant service decides what the key may hold: at most what the grantor holds.
    if args.caller.is_operator:
        message.operator = True
    else:
        message.granting_api_key_id = str(args.caller.api_key_id)
    if body.expires_at is not None:
        message.expires_at.CopyFrom(to_timestamp(body.expires_at))
    backends = state_of(args.request).backends
    created, replayed = await backends.command(
        backends.merchants(backends.shard_of(merchant_id)).CreateApiKey, message, args.command_context()
    )
    return Reply(CreatedApiKey.created(created.api_key, created.key), replayed=replayed)


async def list_api_keys(args: Args[None, None]) -> Listing[ApiKey]:
    backends = state_of(args.request).backends
    listed = await backends.call(
        backends.merchants(backends.shard_of(args.merchant_id)).ListApiKeys,
        merchant_pb2.ListApiKeysRequest(merchant_id=str(args.merchant_id)),
        args.context(),
    )
    # A merchant has a handful of keys: the RPC returns them all, so there is no next page.
    return Listing[ApiKey].of([ApiKey.of(k) for k in listed.api_keys])


async def revoke_api_key(args: Args[None, None]) -> ApiKey:
    key_id = args.ids["id"]
    state = state_of(args.request)
    backends = state.backends
    revoked = await backends.call(
        backends.merchants(backends.shard_of(args.merchant_id)).RevokeApiKey,
        merchant_pb2.RevokeApiKeyRequest(merchant_id=str(args.merchant_id), api_key_id=str(key_id)),
        args.context(),
    )
    state.keys.revoked(key_id)
    await state.listener.tell_peers(key_id)
    return ApiKey.of(revoked)


operations = [
    Operation(
        "POST", "/v1/merchants/{id}/api-keys", create_api_key, "Issue an API key", TAG, "either",
        response=CreatedApiKey, status=201, permission="api_keys:write", body=ApiKeyCreate,
        errors=(404,), idempotent=True,
        rules=(
            Rule(r"expires_at", r"must be in the future", "expires_at: must be in the future."),
            Rule(r"name", r"must not be blank", "name: must not be blank (only spaces)."),
            Rule(
                r"permissions",
                r"a publishable key may hold only .+",
                "permissions: a publishable key may hold invoices:write only.",
            ),
        ),
        example={"name": "web shop", "key_type": "secret", "permissions": ["invoices:read", "invoices:write"]},
        description="The operator, or the merchant's own key with `api_keys:write` (a key grants at most "
        "what it holds). `key` is shown in this response only; an idempotent replay has `key: null`.",
    ),
    Operation(
        "GET", "/v1/api-keys", list_api_keys, "List the merchant's API keys", TAG, "merchant",
        response=Listing[ApiKey], permission="api_keys:read",
    ),
    Operation(
        "DELETE", "/v1/api-keys/{id}", revoke_api_key, "Revoke an API key (at once)", TAG, "merchant",
        response=ApiKey, permission="api_keys:write", errors=(404,),
    ),
]  # fmt: skip
