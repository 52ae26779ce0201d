"""Shard-aware ids: a UUIDv7 whose 12-bit `rand_a` field carries the owner's slot.

Layout (RFC 9562 v7): 48 bits unix milliseconds | 4 bits version | 12 bits slot | 2 bits variant
| 62 random bits. Time order keeps B-tree inserts local; the slot lets any id (invoice, customer,
API key) route to its shard with no directory. Merchant ids are also minted so that the FNV-1a
hash of the id falls in the same slot, so the seed's `fnv(merchant_id)` rule and the embedded
slot always agree.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
import uuid

from libs.common.shardmap import SLOT_COUNT, slot_for_email, slot_for_merchant


def _build(unix_ms: int, slot: int, version: int, rand: int) -> uuid.UUID:
    value = (unix_ms & ((1 << 48) - 1)) << 80
    value |= version << 76
    value |= slot << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


def new_id(slot: int) -> uuid.UUID:
    if not 0 <= slot < SLOT_COUNT:
        raise ValueError(f"slot {slot} out of range")
    return _build(time.time_ns() // 1_000_000, slot, 7, int.from_bytes(os.urandom(8)))


def first_id_at(at: dt.datetime) -> uuid.UUID:
    """The smallest id minted in `at`'s millisecond or later, in any slot: ids sort by their time
    first, so `id >= first_id_at(t)` bounds an index on id to what was minted from `t` on."""
    unix_ms = int(at.timestamp() * 1000)
    return uuid.UUID(int=(min(max(unix_ms, 0), (1 << 48) - 1)) << 80)


def slot_of(value: uuid.UUID) -> int:
    """The slot an id carries (works for every id this platform mints)."""
    return (value.int >> 64) & 0xFFF


def new_merchant_id(contact_email: str) -> uuid.UUID:
    """A merchant id in the email's slot (where every merchant lives without tiered placement)."""
    return new_merchant_id_in(slot_for_email(contact_email))


def new_merchant_id_in(slot: int) -> uuid.UUID:
    """A v7 id in `slot` whose FNV-1a hash lands in that slot too.

    About SLOT_COUNT tries on average (a few milliseconds): paid once per merchant sign-up.
    """
    unix_ms = time.time_ns() // 1_000_000
    while True:
        candidate = _build(unix_ms, slot, 7, int.from_bytes(os.urandom(8)))
        if slot_for_merchant(candidate) == slot:
            return candidate


def derived_id(slot: int, *names: str) -> uuid.UUID:
    """A deterministic id (UUIDv8 layout) for a natural key, carrying `slot`.

    Used where two services must agree on an id without talking, e.g. the customer of
    (merchant, email): the invoice service names it, the customer service projects it.
    """
    digest = hashlib.sha256("\x1f".join(names).encode()).digest()
    return _build(int.from_bytes(digest[:6]), slot, 8, int.from_bytes(digest[6:14]))


def parse_id(raw: str) -> uuid.UUID | None:
    """A canonical UUID string, or None (callers turn None into their own 404 / 422)."""
    try:
        value = uuid.UUID(raw)
    except (ValueError, AttributeError, TypeError):
        return None
    return value if str(value) == raw.lower() else None
