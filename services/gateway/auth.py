"""Who is calling: the operator token or a merchant API key, and what it may do.

Keys are verified by the merchant service on every request, never cached here: a revoked key
must stop working at once, and a cache would keep it alive for its TTL.
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass, field

from checkout.merchant.v1 import merchant_pb2
from starlette.requests import Request

from libs.common import apikeys, ids
from services.gateway.context import CallContext, consistency_of, request_id_of
from services.gateway.errors import ApiError
from services.gateway.state import state_of

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="checkout"'}


@dataclass(frozen=True)
class Caller:
    actor: str
    merchant_id: uuid.UUID | None = None  # None: the operator
    api_key_id: uuid.UUID | None = None
    key_type: str = ""
    permissions: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_operator(self) -> bool:
        return self.merchant_id is None

    def context(self, request: Request) -> CallContext:
        return CallContext(request_id_of(request), self.actor, consistency=consistency_of(request))


OPERATOR = Caller(actor="operator")


def _unauthenticated(message: str) -> ApiError:
    return ApiError("unauthenticated", message, headers=_CHALLENGE)


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise _unauthenticated("missing Authorization: Bearer <token>")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthenticated("the Authorization header must be: Bearer <token>")
    return token


def is_operator_token(token: str, admin_token: str) -> bool:
    # Constant time, so response timing does not spell out the token; an unset admin token must
    # not let an empty or any other bearer in.
    return bool(admin_token) and hmac.compare_digest(token.encode(), admin_token.encode())


async def authenticate(request: Request) -> Caller:
    state = state_of(request)
    token = bearer_token(request)
    if is_operator_token(token, state.config.admin_token):
        return OPERATOR
    key_id = apikeys.key_id_of(token)
    if key_id is None:
        raise _unauthenticated("invalid API key")
    backends = state.backends
    # The key id carries the merchant's slot, so the key is checked on its own shard.
    stub = backends.merchants(backends.shard_of(key_id))
    try:
        response = await backends.call(
            stub.VerifyApiKey,
            merchant_pb2.VerifyApiKeyRequest(key=token),
            CallContext(request_id_of(request), "anonymous"),
        )
    except ApiError as error:
        # An outage is the platform's fault and must say so (503/504); any other refusal is
        # about the key, and the caller learns no more than "invalid".
        if error.code in ("unavailable", "deadline_exceeded", "internal", "rate_limited"):
            raise
        raise _unauthenticated("invalid API key") from error
    key = response.api_key
    merchant_id = ids.parse_id(key.merchant_id)
    if merchant_id is None or ids.parse_id(key.id) != key_id or key.status in ("revoked", "expired"):
        raise _unauthenticated("invalid API key")
    return Caller(
        actor=f"merchant:{key_id}",
        merchant_id=merchant_id,
        api_key_id=key_id,
        key_type=key.key_type,
        permissions=frozenset(key.permissions),
    )


def require_operator(caller: Caller) -> None:
    if not caller.is_operator:
        raise ApiError("permission_denied", "this endpoint needs the operator token")


def require_merchant(caller: Caller, permission: str) -> uuid.UUID:
    """The caller's merchant id, if it is a merchant key holding `permission`."""
    if caller.merchant_id is None:
        raise ApiError("permission_denied", "this endpoint needs a merchant API key")
    require_permission(caller, permission)
    return caller.merchant_id


def require_permission(caller: Caller, permission: str) -> None:
    if caller.is_operator or apikeys.allows(caller.key_type, caller.permissions, permission):
        return
    if permission in caller.permissions:
        # Held, but not by a key of this type (a publishable key issued before the allow list).
        raise ApiError(
            "permission_denied", f"a {caller.key_type} key may not use the {permission} permission"
        )
    raise ApiError("permission_denied", f"the API key lacks the {permission} permission")


def require_access(caller: Caller, merchant_id: uuid.UUID, permission: str) -> None:
    """The operator, or the merchant itself with `permission`.

    Another merchant's resource is not found rather than forbidden, so a key cannot probe
    which merchant ids exist.
    """
    if caller.is_operator:
        return
    if caller.merchant_id != merchant_id:
        raise ApiError.not_found("merchant")
    require_permission(caller, permission)
