"""Who is calling: the operator token or a merchant API key, what it may do, and whether it is
within its rate limit.

Keys are verified once by the merchant service and then served from memory (keycache.py), which
drops a key at once on revocation. Every merchant-key request counts against the key's plan limit;
failed authentication counts against the client IP, and an IP over that limit is refused before
any key it sends is looked up.
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass, field

from starlette.requests import HTTPConnection, Request

from libs.common import apikeys
from services.gateway.context import CallContext, request_id_of
from services.gateway.errors import ApiError
from services.gateway.keycache import VerifiedKey
from services.gateway.ratelimit import Quota
from services.gateway.state import state_of

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="checkout"'}
RESPONSE_HEADERS = "response_headers"


@dataclass(frozen=True)
class Caller:
    actor: str
    merchant_id: uuid.UUID | None = None  # None: the operator
    api_key_id: uuid.UUID | None = None
    key_type: str = ""
    permissions: frozenset[str] = field(default_factory=frozenset)
    plan: str = ""

    @property
    def is_operator(self) -> bool:
        return self.merchant_id is None

    def context(self, request: Request) -> CallContext:
        return CallContext(request_id_of(request), self.actor)


OPERATOR = Caller(actor="operator")


def _unauthenticated(message: str, quota: Quota | None = None) -> ApiError:
    headers = {**_CHALLENGE, **(quota.headers() if quota else {})}
    return ApiError("unauthenticated", message, headers=headers)


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


def client_ip(conn: HTTPConnection) -> str:
    # Uvicorn has already applied X-Forwarded-For from trusted proxies (--forwarded-allow-ips).
    client = conn.scope.get("client")
    return str(client[0]) if client else "unknown"


def report_quota(conn: HTTPConnection, quota: Quota | None) -> None:
    """Puts the caller's standing on whatever response this request ends with, errors included."""
    if quota is not None:
        conn.scope.setdefault("state", {})[RESPONSE_HEADERS] = quota.headers()


# The dashboard (pages/) calls this API in process for a signed-in merchant and leaves the
# session's verified key here; nothing outside the process can set an ASGI scope key.
VERIFIED_KEY_SCOPE = "checkout.verified_key"


async def authenticate(request: Request) -> Caller:
    entry = request.scope.get(VERIFIED_KEY_SCOPE)
    if isinstance(entry, VerifiedKey):
        return await admit(request, entry)
    return await authenticate_token(request, bearer_token(request))


async def authenticate_token(request: Request, token: str) -> Caller:
    """The caller a bearer token stands for (the operator or a merchant key), or 401; the API's
    header and the dashboard's sign-in form both come here."""
    state = state_of(request)
    if is_operator_token(token, state.config.admin_token):
        return OPERATOR
    entry = state.keys.cached(token)
    if entry is None:
        await refuse_if_failing(request)
        entry = await state.keys.verify(token, request_id_of(request))
        if entry is None:
            quota = await count_failure(request)
            raise _unauthenticated("invalid API key", quota)
    return await admit(request, entry)


async def refuse_if_failing(request: HTTPConnection) -> None:
    """429 for an address over its limit of failed authentication, before any lookup."""
    limiter = state_of(request).limiter
    blocked = await limiter.peek(limiter.auth_failures, "auth-failures", client_ip(request))
    if blocked is not None and not blocked.allowed:
        raise blocked.refusal("with failed authentication from this address", "auth_failures")


async def count_failure(request: HTTPConnection) -> Quota | None:
    """Counts one failed authentication against the client's address (429 once over)."""
    limiter = state_of(request).limiter
    quota = await limiter.hit(limiter.auth_failures, "auth-failures", client_ip(request))
    if quota is not None and not quota.allowed:
        raise quota.refusal("with failed authentication from this address", "auth_failures")
    return quota


async def admit(request: Request, entry: VerifiedKey) -> Caller:
    """A verified key's request, counted against its plan's limit, as the caller it stands for."""
    limiter = state_of(request).limiter
    quota = await limiter.hit(limiter.plan_limit(entry.plan), "key", str(entry.key_id))
    report_quota(request, quota)
    if quota is not None and not quota.allowed:
        raise quota.refusal(f"for this API key ({entry.plan} plan)", entry.plan)
    return Caller(
        actor=f"merchant:{entry.key_id}",
        merchant_id=entry.merchant_id,
        api_key_id=entry.key_id,
        key_type=entry.key_type,
        permissions=entry.permissions,
        plan=entry.plan,
    )


async def limit_by_ip(request: Request) -> None:
    """The public endpoints' limit, per client IP."""
    limiter = state_of(request).limiter
    quota = await limiter.hit(limiter.checkout, "checkout", client_ip(request))
    report_quota(request, quota)
    if quota is not None and not quota.allowed:
        raise quota.refusal("from this address", "checkout")


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
