"""Dashboard sessions: an API key given once at sign-in, exchanged for a short-lived cookie.

The cookie holds a random token and nothing else; Redis keeps the session under the token's
SHA-256 (so a copy of Redis holds no usable cookie), with the merchant, the key's id and
SHA-256 (what the merchant service stores of it, no credential) and the session's CSRF token,
and expires it by itself. The API key itself is never kept. Every request asks the gateway's key
cache for the key (keycache.py: from memory, else from the merchant service's record), which
drops a key the moment it is revoked, so a revoked or expired key ends its sessions at once, as
it ends API calls at once.

Unlike the cache, sessions do not fail open: with Redis down the dashboard answers 503.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from libs.common.cache import PREFIX
from services.gateway.auth import count_failure, refuse_if_failing
from services.gateway.context import request_id_of
from services.gateway.errors import ApiError
from services.gateway.keycache import VerifiedKey
from services.gateway.state import GatewayState

COOKIE = "checkout_session"
# Before sign-in there is no session to hold a CSRF token; the form's token is matched against
# this cookie instead (double submit), so another site cannot sign a browser in.
SIGN_IN_COOKIE = "checkout_sign_in"
SIGN_IN_SECONDS = 600
PATH = "/dashboard"
REDIS_TIMEOUT_SECONDS = 1.0


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _key(token: str) -> str:
    return f"{PREFIX}dashboard-session:{_digest(token)}"


@dataclass(frozen=True)
class Session:
    merchant_id: uuid.UUID
    api_key_id: uuid.UUID
    key_digest: str
    csrf_token: str
    expires_at: dt.datetime

    def to_json(self) -> str:
        return json.dumps(
            {
                "merchant_id": str(self.merchant_id),
                "api_key_id": str(self.api_key_id),
                "key_digest": self.key_digest,
                "csrf_token": self.csrf_token,
                "expires_at": self.expires_at.isoformat(),
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> Session | None:
        try:
            body = json.loads(raw)
            return cls(
                merchant_id=uuid.UUID(body["merchant_id"]),
                api_key_id=uuid.UUID(body["api_key_id"]),
                key_digest=str(body["key_digest"]),
                csrf_token=str(body["csrf_token"]),
                expires_at=dt.datetime.fromisoformat(body["expires_at"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


class SessionStore:
    def __init__(self, redis_url: str, ttl_seconds: int) -> None:
        self.ttl_seconds = ttl_seconds
        self._redis = aioredis.Redis.from_url(
            redis_url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            retry_on_timeout=False,
        )

    @staticmethod
    def _unavailable(error: Exception) -> ApiError:
        return ApiError("unavailable", f"dashboard sessions are unavailable: {type(error).__name__}")

    async def create(
        self, merchant_id: uuid.UUID, api_key_id: uuid.UUID, key_digest: str
    ) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.ttl_seconds)
        session = Session(merchant_id, api_key_id, key_digest, secrets.token_urlsafe(32), expires)
        try:
            await self._redis.set(_key(token), session.to_json(), ex=self.ttl_seconds)
        except (RedisError, OSError) as error:
            raise self._unavailable(error) from error
        return token, session

    async def get(self, token: str) -> Session | None:
        try:
            raw = await self._redis.get(_key(token))
        except (RedisError, OSError) as error:
            raise self._unavailable(error) from error
        if raw is None:
            return None
        session = Session.from_json(raw)
        if session is None or session.expires_at <= dt.datetime.now(dt.UTC):
            return None
        return session

    async def delete(self, token: str) -> None:
        try:
            await self._redis.delete(_key(token))
        except (RedisError, OSError) as error:
            raise self._unavailable(error) from error

    async def close(self) -> None:
        await self._redis.aclose()


def csrf_matches(sent: str | None, expected: str) -> bool:
    return bool(sent) and bool(expected) and hmac.compare_digest(str(sent).encode(), expected.encode())


def same_origin(request: Request, public_url: str) -> bool:
    """A browser names the page a form was sent from; it must be this site (public or as
    addressed). No Origin at all (an old browser) leaves the CSRF token to decide."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    own = f"{request.url.scheme}://{request.url.netloc}"
    return origin in (own, public_url)


@dataclass(frozen=True)
class SignedIn:
    token: str
    session: Session
    key: VerifiedKey  # the session's API key as it stands now


async def signed_in(request: Request, state: GatewayState, store: SessionStore) -> SignedIn | None:
    """The session the request's cookie opens, if any. An address sending cookies that open
    nothing is counted as failing to authenticate, and refused (429) once over that limit."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    await refuse_if_failing(request)
    session = await store.get(token)
    if session is None:
        await count_failure(request)
        return None
    key = await state.keys.verify_known(
        session.key_digest, session.api_key_id, session.merchant_id, request_id_of(request)
    )
    if key is None or key.key_id != session.api_key_id or key.merchant_id != session.merchant_id:
        await store.delete(token)
        return None
    return SignedIn(token, session, key)


def set_cookie(response: Response, name: str, value: str, max_age: int, *, secure: bool) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path=PATH, secure=secure, httponly=True, samesite="strict"
    )


def clear_cookie(response: Response, name: str, *, secure: bool) -> None:
    response.delete_cookie(name, path=PATH, secure=secure, httponly=True, samesite="strict")
