"""What the gateway tells a service about the request it is serving, as gRPC metadata."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import HTTPConnection

from libs.common import consistency
from libs.common.cache import Cache
from libs.common.consistency import Token, TokenError
from services.gateway.errors import ApiError

Metadata = tuple[tuple[str, str], ...]


@dataclass
class Consistency:
    """One request's consistency tokens: the one its client sent (`Checkout-Consistency-Token`),
    passed to every service it calls, and the ones its writes returned, for its response."""

    sent: Token = field(default_factory=Token)
    returned: Token = field(default_factory=Token)
    # Of the last read: per shard, the position its data is at least as new as, and how many
    # seconds behind the primary it may be (the caches keep both with what they store).
    read_positions: dict[int, int] = field(default_factory=dict)
    read_staleness: float = 0.0

    def absorb(self, trailing: Iterable[tuple[str, str | bytes]]) -> None:
        pairs = list(trailing)
        staleness = [v for k, v in pairs if k == consistency.READ_STALENESS_KEY and isinstance(v, str)]
        try:
            self.returned = self.returned.merge(Token.from_metadata(pairs))
            self.read_positions = dict(Token.from_metadata(pairs, consistency.READ_POSITION_KEY).positions)
            self.read_staleness = max((float(v) for v in staleness), default=0.0)
        except (TokenError, ValueError):
            # A service that answers garbage is no reason to fail the request; nothing is cached.
            self.read_positions, self.read_staleness = {}, float("inf")

    async def cached(self, cache: Cache, key: str, shard: int) -> bytes | None:
        """A cache entry no older than the token this request sent for `shard`."""
        found = await cache.get_at(key, self.sent.at(shard))
        return None if found is None else found[0]

    async def keep(
        self, cache: Cache, key: str, shard: int, payload: bytes, *, hot: bool, fence: str | None = None
    ) -> None:
        """Caches what the last read returned, with the position it is at least as new as."""
        await cache.set_at(key, payload, self.read_positions.get(shard), hot=hot, fence=fence)


def consistency_of(conn: HTTPConnection) -> Consistency:
    """The request's Consistency, made from its header on first use (422 when malformed)."""
    state = conn.scope.setdefault("state", {})
    found = state.get("consistency")
    if isinstance(found, Consistency):
        return found
    raw = conn.headers.get(consistency.HEADER)
    try:
        sent = Token.parse(raw) if raw is not None else Token()
    except TokenError as error:
        raise ApiError.invalid(consistency.HEADER, str(error)) from None
    made = state["consistency"] = Consistency(sent)
    return made


def returned_token(scope: MutableMapping[str, Any]) -> str | None:
    """The token for a response's header: what its writes returned, if any."""
    state = scope.get("state")
    found = state.get("consistency") if isinstance(state, dict) else None
    if isinstance(found, Consistency) and found.returned:
        return found.returned.encode()
    return None


@dataclass(frozen=True)
class CallContext:
    request_id: str
    actor: str
    idempotency_key: str | None = None
    idempotency_hash: str | None = None
    consistency: Consistency | None = None

    def metadata(self) -> Metadata:
        pairs = [("x-request-id", self.request_id), ("x-actor", self.actor)]
        if self.consistency is not None and self.consistency.sent:
            pairs.append((consistency.METADATA_KEY, self.consistency.sent.encode()))
        if self.idempotency_key is not None and self.idempotency_hash is not None:
            pairs += [
                ("x-idempotency-key", self.idempotency_key),
                ("x-idempotency-hash", self.idempotency_hash),
            ]
        # No `traceparent` here: the call adds it (grpc_tracing.outgoing, or the instrumentation's).
        return tuple(pairs)


def request_id_of(conn: HTTPConnection) -> str:
    """The id the request middleware assigned (a fresh one outside it, e.g. in unit tests)."""
    state = conn.scope.setdefault("state", {})
    request_id = state.get("request_id")
    if not isinstance(request_id, str):
        request_id = str(uuid.uuid4())
        state["request_id"] = request_id
    return request_id
