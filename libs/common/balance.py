"""Shard balance: how much each shard holds, how uneven that is, and which slot moves even it.

The seed asks for a rebalance when shard sizes differ by more than 30 %: here, when a shard's
rows are more than TOLERANCE away from the mean of its tier group (shards of one tier serve one
kind of merchant on one hardware profile, so an enterprise shard is compared with enterprise
shards, never with the shared ones). Rows are events: every write of the platform is one, and
a slot's events are what moving the slot copies.

`plan_moves` is a pure function of the map, the rows per slot and the shards' tiers; the
operator view shows its proposal and the slot mover carries out the moves one by one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from libs.common.db import Connection
from libs.common.shardmap import ShardMap

TOLERANCE = 0.30
# A plan is a proposal to read, not a batch job: a few moves say what to do first.
MAX_MOVES = 16

# The slot an aggregate's id carries: libs/common/ids.py's 12 bits after the version nibble
# (SLOT_COUNT is 4096).
SLOT_OF_AGGREGATE = (
    "(((get_byte(uuid_send(aggregate_id), 6) & 15) << 8) | get_byte(uuid_send(aggregate_id), 7))"
)


@dataclass(frozen=True)
class ShardUsage:
    rows: int
    bytes: int
    slot_rows: Mapping[int, int]


async def shard_usage(conn: Connection, schema: str) -> ShardUsage:
    """One service schema's share of its shard: events by slot, and bytes on disk. Counted from
    the stream heads (one row per aggregate, its version is its event count), not by reading
    every event."""
    rows = await conn.fetch(
        f"SELECT {SLOT_OF_AGGREGATE} AS slot, sum(version)::bigint AS rows FROM streams GROUP BY 1"
    )
    slot_rows = {r["slot"]: r["rows"] for r in rows}
    return ShardUsage(sum(slot_rows.values()), await schema_bytes(conn, schema), slot_rows)


async def schema_bytes(conn: Connection, schema: str) -> int:
    """A schema's tables with their indexes and TOAST, on disk (from the catalog: cheap)."""
    size: int = await conn.fetchval(
        """SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = $1 AND c.relkind IN ('r', 'm')""",
        schema,
    )
    return size


def imbalance_ratio(rows: Iterable[int]) -> float:
    """The largest distance of a shard from the mean, as a fraction of the mean (0: even, or empty)."""
    values = list(rows)
    if not values or not sum(values):
        return 0.0
    mean = sum(values) / len(values)
    return max(abs(v - mean) for v in values) / mean


@dataclass(frozen=True)
class Move:
    start: int  # inclusive
    end: int  # exclusive
    from_shard: int
    to_shard: int
    rows: int

    @property
    def slots(self) -> str:
        """As POST /v1/admin/slot-moves takes them: first-last, inclusive."""
        return f"{self.start}-{self.end - 1}"


def plan_moves(
    shard_map: ShardMap,
    slot_rows: Mapping[int, int],
    tiers: Mapping[int, str],
    tolerance: float = TOLERANCE,
    max_moves: int = MAX_MOVES,
) -> list[Move]:
    """Slot moves that bring every shard within `tolerance` of its tier group's mean rows.

    Greedy, within each tier group: the fullest shard gives the emptiest a run of slots from the
    edge of one of its ranges (ranges stay few and contiguous), as many rows as bring one of the
    two to the mean without passing it. It stops when the group is within tolerance, or when no
    run can help (a slot heavier than what would bring the pair to the mean: slots are not split).
    """
    moves: list[Move] = []
    groups: dict[str, list[int]] = {}
    for shard in sorted(tiers):
        groups.setdefault(tiers[shard], []).append(shard)
    for shards in groups.values():
        while len(moves) < max_moves:
            move = _next_move(shard_map, slot_rows, shards, tolerance)
            if move is None:
                break
            moves.append(move)
            shard_map = shard_map.reassign(move.start, move.end, move.to_shard)
    return moves


def rows_of(shard_map: ShardMap, slot_rows: Mapping[int, int], shard: int) -> int:
    return sum(slot_rows.get(slot, 0) for r in shard_map.slots_of(shard) for slot in range(r.start, r.end))


def _next_move(
    shard_map: ShardMap, slot_rows: Mapping[int, int], shards: list[int], tolerance: float
) -> Move | None:
    if len(shards) < 2:
        return None
    totals = {s: rows_of(shard_map, slot_rows, s) for s in shards}
    mean = sum(totals.values()) / len(totals)
    if not mean or imbalance_ratio(totals.values()) <= tolerance:
        return None
    donor = max(shards, key=lambda s: (totals[s], -s))
    recipient = min(shards, key=lambda s: (totals[s], s))
    want = min(totals[donor] - mean, mean - totals[recipient])
    best: tuple[int, int, int] | None = None  # rows, start, end
    for r in shard_map.slots_of(donor):
        for step in (-1, 1):
            start, end, taken = _run(slot_rows, r.start, r.end, want, step)
            if taken and (best is None or taken > best[0]):
                best = (taken, start, end)
    if best is None:
        return None
    return Move(best[1], best[2], donor, recipient, best[0])


def _run(slot_rows: Mapping[int, int], start: int, end: int, want: float, step: int) -> tuple[int, int, int]:
    """The longest run from one edge of [start, end) (step 1: from `start`, -1: from `end`)
    holding at most `want` rows; (start, end, rows)."""
    taken, slot = 0, start if step > 0 else end - 1
    while start <= slot < end:
        rows = slot_rows.get(slot, 0)
        if taken + rows > want:
            break
        taken += rows
        slot += step
    if step > 0:
        return start, slot, taken
    return slot + 1, end, taken
