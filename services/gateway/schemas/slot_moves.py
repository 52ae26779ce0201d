"""A slot move as the operator asks for it and follows it (POST/GET /v1/admin/slot-moves)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from libs.common.slotmove_control import SlotMove
from services.gateway.schemas.base import RequestModel, ResponseModel
from services.gateway.schemas.types import WHOLE

# One slot or an inclusive range of them, in 0-4095 (whether first <= last is checked after).
SLOTS_PATTERN = r"^(409[0-5]|40[0-8][0-9]|[0-3]?[0-9]{1,3})(-(409[0-5]|40[0-8][0-9]|[0-3]?[0-9]{1,3}))?$"
SHARD_MAX = 4095


class SlotMoveRequest(RequestModel):
    slots: str = Field(
        pattern=SLOTS_PATTERN,
        description='Inclusive: "0-511", or one slot "7" (0-4095, the first not after the last); '
        "all on one shard now.",
    )
    to_shard: Annotated[int, Field(ge=0, le=SHARD_MAX), WHOLE] = Field(
        description="A registered shard (`GET /v1/admin/shards`), not the slots' own."
    )


class SlotMoveView(ResponseModel):
    id: str
    slots: str = Field(description="first-last, inclusive.")
    from_shard: int
    to_shard: int
    phase: str = Field(description="copying, catching_up, fencing, cleaning, done; aborting, aborted.")
    paused: bool
    abort_requested: bool
    progress: float = Field(description="0..1: the copy's share until the switch, 1 from cleaning on.")
    rows_total: int = Field(description="Rows in the slots when the copy began, every service's tables.")
    rows_copied: int = Field(description="Rows written to the target: the copy, then the catch-up's.")
    rows_copied_by_table: dict[str, int] = Field(description='"schema.table": rows written to the target.')
    copy_seconds: float | None = Field(description="The bulk copy's duration; null until it is over.")
    rows_per_second: float | None = Field(description="The bulk copy's throughput.")
    fence_ms: float | None = Field(description="How long writes to the slots waited at the switch.")
    map_version: int | None = Field(description="The shard map version the switch published.")
    error: str | None = Field(description="Why the last run stopped, when it did not finish (it is retried).")
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, move: SlotMove) -> SlotMoveView:
        rate = None
        if move.copy_seconds:
            rate = round(sum(move.rows_copied.values()) / move.copy_seconds, 1)
        return cls(
            id=str(move.id),
            slots=f"{move.slots.first}-{move.slots.last}",
            from_shard=move.from_shard,
            to_shard=move.to_shard,
            phase=move.phase,
            paused=move.paused,
            abort_requested=move.abort_requested,
            progress=round(move.progress, 4),
            rows_total=move.rows_total,
            rows_copied=move.copied,
            rows_copied_by_table=move.rows_copied,
            copy_seconds=None if move.copy_seconds is None else round(move.copy_seconds, 3),
            rows_per_second=rate,
            fence_ms=None if move.fence_ms is None else round(move.fence_ms, 1),
            map_version=move.map_version,
            error=move.error,
            created_at=move.created_at,
            updated_at=move.updated_at,
            finished_at=move.finished_at,
        )


class SlotMoveList(ResponseModel):
    data: list[SlotMoveView] = Field(description="Newest first (the last 20).")
