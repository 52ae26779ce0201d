"""Merchant sharding: FNV-1a over the merchant id into fixed slots, slot ranges to shards.

Keys hash into SLOT_COUNT slots once and forever; a versioned map assigns slot ranges to
physical shards, so adding a shard moves ranges of slots instead of rehashing every key.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

SLOT_COUNT = 4096  # 12 bits: exactly the `rand_a` field of a UUIDv7, see ids.py
FNV_OFFSET = 0x811C9DC5
FNV_PRIME = 0x01000193


def fnv1a_32(data: bytes) -> int:
    h = FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * FNV_PRIME) & 0xFFFFFFFF
    return h


def slot_for_merchant(merchant_id: uuid.UUID) -> int:
    return fnv1a_32(merchant_id.bytes) % SLOT_COUNT


def slot_for_email(email: str) -> int:
    """Where a merchant with this contact email lives.

    Placing merchants by email makes the per-shard unique index on contact_email a platform-wide
    one: two sign-ups with one email always meet on the same shard.
    """
    return fnv1a_32(email.strip().lower().encode()) % SLOT_COUNT


@dataclass(frozen=True)
class SlotRange:
    start: int  # inclusive
    end: int  # exclusive
    shard: int


@dataclass(frozen=True)
class ShardMap:
    version: int
    ranges: tuple[SlotRange, ...]

    @classmethod
    def even(cls, shard_count: int, version: int = 1) -> ShardMap:
        """Contiguous, near-equal slot ranges, shard i holding the i-th range."""
        if not 1 <= shard_count <= SLOT_COUNT:
            raise ValueError(f"shard_count must be in 1..{SLOT_COUNT}")
        bounds = [SLOT_COUNT * i // shard_count for i in range(shard_count + 1)]
        return cls(
            version,
            tuple(SlotRange(bounds[i], bounds[i + 1], i) for i in range(shard_count)),
        )

    def __post_init__(self) -> None:
        covered = sorted((r.start, r.end) for r in self.ranges)
        edges = [0] + [end for _, end in covered]
        if [start for start, _ in covered] != edges[:-1] or edges[-1] != SLOT_COUNT:
            raise ValueError("shard map ranges must cover every slot exactly once")

    @property
    def shard_count(self) -> int:
        return len({r.shard for r in self.ranges})

    def shard_for_slot(self, slot: int) -> int:
        if not 0 <= slot < SLOT_COUNT:
            raise ValueError(f"slot {slot} out of range")
        for r in self.ranges:
            if r.start <= slot < r.end:
                return r.shard
        raise AssertionError("unreachable: ranges cover every slot")

    def slots_of(self, shard: int) -> list[SlotRange]:
        return [r for r in self.ranges if r.shard == shard]

    def slot_count_of(self, shard: int) -> int:
        return sum(r.end - r.start for r in self.slots_of(shard))

    def reassign(self, start: int, end: int, shard: int) -> ShardMap:
        """The same map with slots [start, end) on `shard`, neighbouring ranges of one shard
        merged; the version is unchanged (publishing a map is what gives it its next one)."""
        if not 0 <= start < end <= SLOT_COUNT:
            raise ValueError(f"slot range [{start}, {end}) is not within 0..{SLOT_COUNT}")
        owners = [self.shard_for_slot(s) for s in range(SLOT_COUNT)]
        owners[start:end] = [shard] * (end - start)
        ranges: list[SlotRange] = []
        for slot, owner in enumerate(owners):
            if ranges and ranges[-1].shard == owner:
                ranges[-1] = SlotRange(ranges[-1].start, slot + 1, owner)
            else:
                ranges.append(SlotRange(slot, slot + 1, owner))
        return ShardMap(self.version, tuple(ranges))
