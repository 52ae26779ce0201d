"""Consistency tokens: a merchant reads its own writes even when reads go to replicas.

A write's response carries a token: per shard it wrote, the primary's WAL position after the
commit (`Checkout-Consistency-Token` over HTTP, `checkout-consistency-token` gRPC metadata). A read
that sends it back is served by a replica only once the replica has replayed that far
(libs/common/replicas.py), else by the primary. Clients treat the token as opaque; it only ever
makes a read fresher, so a forged one costs its sender a short wait and a primary read.

Each gRPC call has a `Ledger` in a context variable (set by the server interceptor): the token
the caller sent, the shards it touched on their primaries, whether it wrote, and the positions its
replica reads were served at (the gateway's cache keeps those with each entry, so it never serves
an entry older than a token).
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from libs.common.limits import CONSISTENCY_TOKEN_MAX_CHARS

HEADER = "Checkout-Consistency-Token"
METADATA_KEY = "checkout-consistency-token"
# Trailing metadata of a read: the WAL position (per shard) its data is at least as new as, and
# how many seconds older than the primary it may be (0: the primary answered).
READ_POSITION_KEY = "checkout-read-position"
READ_STALENESS_KEY = "checkout-read-staleness"

_VERSION = "v1"
_ENTRY = re.compile(r"^(\d{1,4})=([0-9a-f]{1,16})$")
MAX_SHARDS_PER_TOKEN = 64


class TokenError(ValueError):
    """Not a token this platform issued."""


@dataclass(frozen=True)
class Token:
    """WAL positions (bytes into the WAL, as `pg_lsn - '0/0'`) per shard."""

    positions: Mapping[int, int] = field(default_factory=dict)

    def at(self, shard: int) -> int | None:
        return self.positions.get(shard)

    def __bool__(self) -> bool:
        return bool(self.positions)

    def merge(self, other: Token) -> Token:
        """The later position of each shard: what both tokens ask for."""
        merged = dict(self.positions)
        for shard, position in other.positions.items():
            merged[shard] = max(position, merged.get(shard, position))
        return Token(merged)

    def encode(self) -> str:
        return _VERSION + ":" + ",".join(f"{s}={p:x}" for s, p in sorted(self.positions.items()))

    @classmethod
    def parse(cls, raw: str) -> Token:
        if len(raw) > CONSISTENCY_TOKEN_MAX_CHARS or not raw.startswith(_VERSION + ":"):
            raise TokenError("is not a consistency token this platform issued")
        entries = raw[len(_VERSION) + 1 :].split(",")
        if not 1 <= len(entries) <= MAX_SHARDS_PER_TOKEN:
            raise TokenError("is not a consistency token this platform issued")
        positions: dict[int, int] = {}
        for entry in entries:
            match = _ENTRY.match(entry)
            if match is None or int(match[1]) in positions:
                raise TokenError("is not a consistency token this platform issued")
            positions[int(match[1])] = int(match[2], 16)
        return cls(positions)

    @classmethod
    def from_metadata(cls, metadata: Iterable[tuple[str, str | bytes]], key: str = METADATA_KEY) -> Token:
        """The merged tokens under `key` in gRPC metadata (absent: an empty token)."""
        token = cls()
        for name, value in metadata:
            if name == key and isinstance(value, str):
                token = token.merge(cls.parse(value))
        return token


@dataclass
class Ledger:
    """What one gRPC call asked for and did, for its trailing metadata."""

    required: Token = field(default_factory=Token)
    touched: set[int] = field(default_factory=set)  # shards used through their primary pools
    wrote: bool = False
    read_positions: dict[int, int] = field(default_factory=dict)
    unknown: set[int] = field(default_factory=set)  # shards read at a position nobody measured
    staleness: float = 0.0  # the most any read of the call may lag the primary, seconds

    def note_read(self, shard: int, position: int | None, staleness: float = 0.0) -> None:
        """A read on `shard` saw data at least as new as `position` (None: unknown), at most
        `staleness` seconds older than the primary's."""
        self.staleness = max(self.staleness, staleness)
        if position is None:
            self.read_positions.pop(shard, None)
            self.unknown.add(shard)
        elif shard not in self.unknown:
            # Several reads of one call: the answer is only as new as the oldest of them.
            self.read_positions[shard] = min(position, self.read_positions.get(shard, position))


_current: contextvars.ContextVar[Ledger | None] = contextvars.ContextVar("checkout_ledger", default=None)


def begin(ledger: Ledger) -> contextvars.Token[Ledger | None]:
    return _current.set(ledger)


def end(token: contextvars.Token[Ledger | None]) -> None:
    _current.reset(token)


def current() -> Ledger | None:
    """The ledger of the gRPC call being served (None in background work)."""
    return _current.get()


def touch(shard: int) -> None:
    ledger = _current.get()
    if ledger is not None:
        ledger.touched.add(shard)


def mark_write() -> None:
    """The call changed data (or replayed a change: an idempotent retry): it gets a token."""
    ledger = _current.get()
    if ledger is not None:
        ledger.wrote = True


def required(shard: int) -> int | None:
    ledger = _current.get()
    return ledger.required.at(shard) if ledger is not None else None
