"""The balance planner: slot moves that bring every shard of a tier group within 30 % of its
mean, from the rows each slot holds."""

from __future__ import annotations

from libs.common.balance import Move, imbalance_ratio, plan_moves, rows_of
from libs.common.shardmap import ShardMap

EVEN_ROWS = dict.fromkeys(range(4096), 10)


def after(shard_map: ShardMap, moves: list[Move]) -> ShardMap:
    for move in moves:
        shard_map = shard_map.reassign(move.start, move.end, move.to_shard)
    return shard_map


def test_an_even_platform_needs_no_moves() -> None:
    assert plan_moves(ShardMap.even(2), EVEN_ROWS, {0: "shared", 1: "shared"}) == []
    assert imbalance_ratio([100, 100]) == 0.0
    assert imbalance_ratio([]) == 0.0


def test_a_new_empty_shard_is_given_slots_until_every_shard_is_within_30_percent() -> None:
    shard_map = ShardMap.even(2)
    tiers = {0: "shared", 1: "shared", 2: "shared"}
    assert imbalance_ratio(rows_of(shard_map, EVEN_ROWS, s) for s in tiers) == 1.0
    moves = plan_moves(shard_map, EVEN_ROWS, tiers)
    assert moves and all(m.to_shard == 2 for m in moves)
    balanced = after(shard_map, moves)
    assert imbalance_ratio(rows_of(balanced, EVEN_ROWS, s) for s in tiers) <= 0.30
    # Taken from the edge of a range: each shard keeps a few contiguous ranges.
    assert len(balanced.ranges) <= 4
    assert moves[0].slots == f"{moves[0].start}-{moves[0].end - 1}"


def test_moves_stay_within_a_tier_group() -> None:
    rows = {slot: 50 for slot in range(0, 1024)} | {slot: 1 for slot in range(1024, 4096)}
    shard_map = ShardMap.even(4)
    tiers = {0: "enterprise", 1: "enterprise", 2: "shared", 3: "shared"}
    moves = plan_moves(shard_map, rows, tiers)
    assert {(m.from_shard, m.to_shard) for m in moves} <= {(0, 1), (1, 0)}
    balanced = after(shard_map, moves)
    assert imbalance_ratio(rows_of(balanced, rows, s) for s in (0, 1)) <= 0.30


def test_a_slot_too_heavy_to_move_is_left_where_it_is() -> None:
    # All of the rows in one slot: no move can even that out, and none is proposed.
    rows = {7: 1000}
    assert plan_moves(ShardMap.even(2), rows, {0: "shared", 1: "shared"}) == []
