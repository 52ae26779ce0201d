"""/v1/admin/slot-moves: the operator starts a slot move and follows, pauses, resumes or aborts
it. The move itself is run by the slot mover (libs/common/slotmover.py, in the merchant service);
these routes read and write its record in the control store."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg
from starlette.requests import Request

from libs.common import slotmove_catalog, slotmove_control
from services.gateway.errors import ApiError
from services.gateway.operations import Args, Operation, Reply, Rule
from services.gateway.schemas.slot_moves import SlotMoveList, SlotMoveRequest, SlotMoveView
from services.gateway.state import state_of

TAG = "Operator"
RULES = (
    Rule(
        r"slots",
        r"slots must lie within 0-4095, the first not after the last",
        "slots: the first slot not after the last.",
    ),
    Rule(
        r"slots",
        r"slots .* lie on shards .*",
        "slots: all on one shard now (a move takes one shard's slots).",
    ),
    Rule(r"to_shard", r"shard \d+ is not registered", "to_shard: a registered shard."),
    Rule(r"to_shard", r"slots .* are on shard \d+ already", "to_shard: not the shard the slots are on."),
)


@contextlib.asynccontextmanager
async def _control(request: Request) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the control store; down is a 503, as any backing server's outage."""
    try:
        conn = await asyncpg.connect(state_of(request).config.control_database(), timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        raise ApiError(
            "unavailable", f"the control database is unavailable: {type(error).__name__}"
        ) from None
    try:
        yield conn
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        raise ApiError(
            "unavailable", f"the control database is unavailable: {type(error).__name__}"
        ) from None
    finally:
        await conn.close()


async def create_slot_move(args: Args[SlotMoveRequest, None]) -> Reply:
    try:
        slots = slotmove_catalog.parse_slots(args.body.slots)
    except ValueError as error:
        raise ApiError.invalid("slots", str(error)) from None
    async with _control(args.request) as conn:
        try:
            move = await slotmove_control.create_move(conn, slots, args.body.to_shard)
        except slotmove_control.MoveError as error:
            raise ApiError.invalid(error.field, str(error)) from None
        except slotmove_control.MoveConflict as error:
            raise ApiError("conflict", str(error)) from None
    return Reply(SlotMoveView.of(move), status=201)


async def list_slot_moves(args: Args[None, None]) -> SlotMoveList:
    async with _control(args.request) as conn:
        return SlotMoveList(data=[SlotMoveView.of(m) for m in await slotmove_control.list_moves(conn)])


async def get_slot_move(args: Args[None, None]) -> SlotMoveView:
    async with _control(args.request) as conn:
        move = await slotmove_control.get_move(conn, args.ids["id"])
    if move is None:
        raise ApiError.not_found("slot move")
    return SlotMoveView.of(move)


async def _act(args: Args[None, None], action: str) -> SlotMoveView:
    async with _control(args.request) as conn:
        try:
            move = await slotmove_control.request(conn, args.ids["id"], action)
        except slotmove_control.MoveConflict as error:
            raise ApiError("failed_precondition", str(error)) from None
    if move is None:
        raise ApiError.not_found("slot move")
    return SlotMoveView.of(move)


async def pause_slot_move(args: Args[None, None]) -> SlotMoveView:
    return await _act(args, "pause")


async def resume_slot_move(args: Args[None, None]) -> SlotMoveView:
    return await _act(args, "resume")


async def abort_slot_move(args: Args[None, None]) -> SlotMoveView:
    return await _act(args, "abort")


operations = [
    Operation(
        "POST", "/v1/admin/slot-moves", create_slot_move, "Move a range of slots to another shard", TAG,
        "operator", response=SlotMoveView, status=201, body=SlotMoveRequest, errors=(409, 503), rules=RULES,
        example={"slots": "0-511", "to_shard": 2},
        description="Copies the slots' rows of every service while merchants keep writing, catches up, holds "
        "their writes for a moment (`fence_ms`) while the shard map switches, then deletes them from the "
        "source. One move at a time: 409 while another is in progress.",
    ),
    Operation(
        "GET", "/v1/admin/slot-moves", list_slot_moves, "The latest slot moves", TAG, "operator",
        response=SlotMoveList, errors=(503,),
    ),
    Operation(
        "GET", "/v1/admin/slot-moves/{id}", get_slot_move, "A slot move's phase and progress", TAG,
        "operator", response=SlotMoveView, errors=(404, 503),
    ),
    Operation(
        "POST", "/v1/admin/slot-moves/{id}/pause", pause_slot_move, "Pause a slot move", TAG, "operator",
        response=SlotMoveView, errors=(404, 409, 503),
        description="It stops after the batch in hand and stays in its phase until resumed.",
    ),
    Operation(
        "POST", "/v1/admin/slot-moves/{id}/resume", resume_slot_move, "Resume a paused slot move", TAG,
        "operator", response=SlotMoveView, errors=(404, 409, 503),
    ),
    Operation(
        "POST", "/v1/admin/slot-moves/{id}/abort", abort_slot_move, "Abort a slot move", TAG, "operator",
        response=SlotMoveView, errors=(404, 409, 503),
        description="Before the switch only (409 after): the source stays authoritative and the target's "
        "copies are deleted.",
    ),
]  # fmt: skip
