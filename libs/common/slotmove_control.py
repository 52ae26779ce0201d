"""The record of slot moves (control.slot_moves): what an operator asks for and sees.

`create_move` records a move, `request` pauses, resumes or aborts it, `get_move` and
`list_moves` show where each one is. The slot mover (libs/common/slotmover.py) runs what is
recorded here and writes each move's phase and progress back to its row.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass

import asyncpg

from libs.common import ids, shardstore
from libs.common.db import Connection
from libs.common.slotmove_catalog import SlotRange

ACTIVE = ("copying", "catching_up", "fencing", "cleaning", "aborting")
_COLUMNS = (
    "id, number, first_slot, last_slot, from_shard, to_shard, phase, paused, abort_requested, rows_total, "
    "rows_copied::text AS rows_copied, change_cursor::text AS change_cursor, fence_ms, copy_seconds, "
    "map_version, error, created_at, updated_at, finished_at"
)


class MoveError(ValueError):
    """A move that cannot be made as asked (`field` names the request's field at fault)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class MoveConflict(Exception):
    """Another move is in progress, or the move is past the point this action needs."""


@dataclass(frozen=True)
class SlotMove:
    id: uuid.UUID
    number: int  # the shards' name for the move (slot_fences.move_id)
    slots: SlotRange
    from_shard: int
    to_shard: int
    phase: str
    paused: bool
    abort_requested: bool
    rows_total: int
    rows_copied: dict[str, int]
    change_cursor: dict[str, int]
    fence_ms: float | None
    copy_seconds: float | None
    map_version: int | None
    error: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    finished_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> SlotMove:
        return cls(
            id=row["id"],
            number=row["number"],
            slots=SlotRange(row["first_slot"], row["last_slot"]),
            from_shard=row["from_shard"],
            to_shard=row["to_shard"],
            phase=row["phase"],
            paused=row["paused"],
            abort_requested=row["abort_requested"],
            rows_total=row["rows_total"],
            rows_copied=json.loads(row["rows_copied"]),
            change_cursor=json.loads(row["change_cursor"]),
            fence_ms=row["fence_ms"],
            copy_seconds=row["copy_seconds"],
            map_version=row["map_version"],
            error=row["error"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            finished_at=row["finished_at"],
        )

    @property
    def copied(self) -> int:
        return sum(self.rows_copied.values())

    @property
    def progress(self) -> float:
        """0..1: the copy's share of rows_total until the switch, 1 from cleaning on."""
        if self.phase in ("cleaning", "done"):
            return 1.0
        if not self.rows_total:
            return 0.0
        return min(0.99, self.copied / self.rows_total)


async def create_move(control: Connection, slots: SlotRange, to_shard: int) -> SlotMove:
    """Records a move of `slots` (all of one shard's now) to `to_shard`; the mover runs it."""
    shard_map, shards = await shardstore.load(control)
    if to_shard not in shards:
        raise MoveError(f"shard {to_shard} is not registered", "to_shard")
    owners = {shard_map.shard_for_slot(s) for s in range(slots.first, slots.last + 1)}
    if len(owners) != 1:
        raise MoveError(
            f"slots {slots.first}-{slots.last} lie on shards {sorted(owners)}: move one shard's at a time",
            "slots",
        )
    (from_shard,) = owners
    if from_shard == to_shard:
        raise MoveError(f"slots {slots.first}-{slots.last} are on shard {to_shard} already", "to_shard")
    try:
        row = await control.fetchrow(
            f"""INSERT INTO control.slot_moves (id, first_slot, last_slot, from_shard, to_shard, phase)
                VALUES ($5, $1, $2, $3, $4, 'copying') RETURNING {_COLUMNS}""",
            slots.first,
            slots.last,
            from_shard,
            to_shard,
            ids.new_id(slots.first),
        )
    except asyncpg.UniqueViolationError:
        raise MoveConflict("another slot move is in progress; it must finish or be aborted first") from None
    assert row is not None
    return SlotMove.from_row(row)


async def get_move(control: Connection, move_id: uuid.UUID) -> SlotMove | None:
    row = await control.fetchrow(f"SELECT {_COLUMNS} FROM control.slot_moves WHERE id = $1", move_id)
    return SlotMove.from_row(row) if row else None


async def list_moves(control: Connection, limit: int = 20) -> list[SlotMove]:
    rows = await control.fetch(f"SELECT {_COLUMNS} FROM control.slot_moves ORDER BY id DESC LIMIT $1", limit)
    return [SlotMove.from_row(r) for r in rows]


async def request(control: Connection, move_id: uuid.UUID, action: str) -> SlotMove | None:
    """pause, resume or abort; None when there is no such move. An abort is refused once the
    map has switched (the target is then authoritative: move the slots back instead)."""
    updates = {
        "pause": ("paused = true", ACTIVE),
        "resume": ("paused = false", ACTIVE),
        "abort": (
            "abort_requested = true, paused = false",
            ("copying", "catching_up", "fencing", "aborting"),
        ),
    }
    change, phases = updates[action]
    row = await control.fetchrow(
        f"""UPDATE control.slot_moves SET {change}, updated_at = NOW()
            WHERE id = $1 AND phase = ANY($2::text[]) RETURNING {_COLUMNS}""",
        move_id,
        list(phases),
    )
    if row is not None:
        return SlotMove.from_row(row)
    move = await get_move(control, move_id)
    if move is None:
        return None
    raise MoveConflict(f"slot move {move_id} is {move.phase}: it cannot {action} now")


async def runnable_move(control: Connection) -> SlotMove | None:
    """The move a mover should run now: the active one, unless it is paused."""
    row = await control.fetchrow(
        f"SELECT {_COLUMNS} FROM control.slot_moves WHERE phase = ANY($1::text[]) AND NOT paused",
        list(ACTIVE),
    )
    return SlotMove.from_row(row) if row else None
