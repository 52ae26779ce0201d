"""The slot mover: runs the moves recorded in control.slot_moves (libs/common/slotmove_control.py),
one at a time platform-wide.

A move's phase is its durable position, and each phase can run again from its start, so a mover
killed at any moment (kill -9) is resumed by the next one that takes the lock:

- copying: capture armed on the source (libs/common/slotmove.py), then every table copied.
- catching_up: the rows written meanwhile copied again, until little is left.
- fencing: writes to the slots wait (the fence lock), the source's relay and consumers finish
  what was written in them, the last changes are copied, and the new shard map is published in
  the transaction that records the switch. Writers that waited then find the slots `moved`
  (SQLSTATE CKMOV) and go to the new owner. `fence_ms` is how long they waited.
- cleaning: the source's rows in the slots are deleted; then `done`.
- aborting (asked before the switch): the capture is dropped and the target's copies deleted;
  the source stayed authoritative throughout, so nothing is lost. Then `aborted`.

A paused move is left where it is until resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from nats.js import JetStreamContext

from libs.common import shardstore, slotmove, slotmove_catalog
from libs.common.config import SERVICES, Config
from libs.common.db import Connection
from libs.common.slotmove_catalog import Table
from libs.common.slotmove_control import SlotMove, get_move, runnable_move

log = logging.getLogger("checkout.slotmover")

_LOCK = 0x4D4F5645  # "MOVE": pg_advisory_lock on the control database, held by the running mover


class _Stop(Exception):
    """The move was paused or an abort was asked: stop between two batches."""


@dataclass
class MoverSettings:
    batch: int = 1000  # rows per copy batch
    catch_up_batch: int = 1000  # changes per catch-up batch
    # Catch-up passes go on until fewer changes than this wait: the fence copies the rest.
    fence_below: int = 200
    # How long the fence may hold writes while the relay and consumers finish; past it the fence
    # is lifted and tried again later (writes never wait longer than this).
    fence_timeout_seconds: float = 5.0
    poll_seconds: float = 0.02
    # Called at each checkpoint: the start of a phase, between batches, and in the fence between
    # marking the slots moved and publishing the map. The kill -9 tests stop the process there.
    checkpoint: Callable[[str], None] | None = field(default=None, repr=False)


class SlotMover:
    def __init__(
        self, config: Config, js: JetStreamContext | None = None, settings: MoverSettings | None = None
    ) -> None:
        self.config = config
        self.js = js
        self.settings = settings or MoverSettings()

    @contextlib.asynccontextmanager
    async def _lock(self) -> AsyncIterator[asyncpg.Connection | None]:
        """The control connection holding the platform-wide mover lock, or None (another has it)."""
        conn = await asyncpg.connect(self.config.control_database())
        try:
            if await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK):
                yield conn
            else:
                yield None
        finally:
            await conn.close()

    async def run_once(self) -> SlotMove | None:
        """Runs the active, unpaused move (if this mover gets the lock) until it is done, aborted,
        paused or fails; returns it as it was left."""
        async with self._lock() as control:
            if control is None:
                return None
            move = await runnable_move(control)
            if move is None:
                return None
            try:
                await _Run(self, control, move).run()
            except _Stop:
                pass
            except (asyncpg.PostgresError, OSError, LookupError, TimeoutError) as error:
                log.warning("slot move %s stopped: %s", move.id, error)
                await control.execute(
                    "UPDATE control.slot_moves SET error = $2, updated_at = NOW() WHERE id = $1",
                    move.id,
                    str(error),
                )
            return await get_move(control, move.id)

    async def run(self) -> None:
        """Until cancelled: picks up moves as they are created or resumed."""
        while True:
            try:
                await self.run_once()
            except (asyncpg.PostgresError, OSError) as error:
                log.warning("slot mover: control database: %s", error)
            await asyncio.sleep(max(self.config.shard_map_poll_seconds, 0.2))


class _Run:
    """One move's run, from its recorded phase on."""

    def __init__(self, mover: SlotMover, control: asyncpg.Connection, move: SlotMove) -> None:
        self.mover = mover
        self.settings = mover.settings
        self.control = control
        self.move = move
        self.copied = dict(move.rows_copied)
        self.cursor = dict(move.change_cursor)

    async def run(self) -> None:
        _, shards = await shardstore.load(self.control)
        self.source_dsn = shards[self.move.from_shard].dsn
        source = await asyncpg.connect(self.source_dsn)
        target = await asyncpg.connect(shards[self.move.to_shard].dsn)
        try:
            self.tables = {s: await slotmove_catalog.describe(source, s) for s in SERVICES}
            phase = self.move.phase
            while phase not in ("done", "aborted"):
                self.phase = phase
                self._checkpoint(phase)
                if phase != "aborting" and phase != "cleaning":
                    await self._check()
                phase = await getattr(self, f"_{phase}")(source, target)
                await self._set(phase=phase)
        except _Stop as stop:
            if str(stop) == "abort":
                await self._set(phase="aborting")
                await self._aborting(source, target)
                await self._set(phase="aborted", finished=True)
            raise
        finally:
            await source.close()
            await target.close()

    async def _set(self, *, phase: str | None = None, finished: bool = False, **values: Any) -> None:
        sets = ["updated_at = NOW()", "rows_copied = $2::text::jsonb", "change_cursor = $3::text::jsonb"]
        args: list[Any] = [self.move.id, json.dumps(self.copied), json.dumps(self.cursor)]
        for name, value in (({"phase": phase} if phase else {}) | values).items():
            args.append(value)
            sets.append(f"{name} = ${len(args)}")
        if finished:
            sets.append("finished_at = NOW()")
        if phase:
            sets.append("error = NULL")
        await self.control.execute(f"UPDATE control.slot_moves SET {', '.join(sets)} WHERE id = $1", *args)

    async def _check(self) -> None:
        """Stops between batches when the move was paused or an abort asked."""
        row = await self.control.fetchrow(
            "SELECT paused, abort_requested FROM control.slot_moves WHERE id = $1", self.move.id
        )
        assert row is not None
        if row["abort_requested"]:
            raise _Stop("abort")
        if row["paused"]:
            await self._set()
            raise _Stop("pause")

    def _checkpoint(self, phase: str) -> None:
        if self.settings.checkpoint is not None:
            self.settings.checkpoint(phase)

    async def _progress(self, table: Table, rows: int) -> None:
        key = f"{table.schema}.{table.name}"
        self.copied[key] = self.copied.get(key, 0) + rows
        await self._set()
        self._checkpoint(self.phase)
        await self._check()

    # -- phases ------------------------------------------------------------------------------------
    async def _copying(self, source: Connection, target: Connection) -> str:
        slots = self.move.slots
        for schema, tables in self.tables.items():
            await target.execute(
                f"DELETE FROM \"{schema}\".slot_fences WHERE state = 'moved' AND first_slot <= $2 AND last_slot >= $1",
                slots.first,
                slots.last,
            )  # the target gave these slots away once: they come back now
            await slotmove.install_capture(source, tables, self.move.number, slots, self.move.to_shard)
        # A write begun before the capture was armed is not recorded: it must be over (and so in
        # the copy's snapshot) before that snapshot is taken.
        armed = await source.fetchval("SELECT clock_timestamp()")
        deadline = time.monotonic() + self.settings.fence_timeout_seconds
        await self._until(deadline, lambda: self._quiet(source, armed), "transactions older than the capture")
        # One snapshot of the source for the whole copy: its rows agree with each other (a child
        # never without its parent), and whatever is written after it is in slot_changes.
        async with source.transaction(isolation="repeatable_read", readonly=True):
            total = 0
            for tables in self.tables.values():
                total += sum((await slotmove.count_rows(source, tables, slots)).values())
            self.copied = {}
            await self._set(rows_total=total)
            started = time.monotonic()
            for tables in self.tables.values():
                for table in tables:
                    await slotmove.copy_table(
                        source, target, table, slots, batch=self.settings.batch, progress=self._progress
                    )
        await self._set(copy_seconds=time.monotonic() - started)
        return "catching_up"

    async def _catch_up_all(self, source: Connection, target: Connection) -> int:
        """One pass over every schema's changes; how many were still waiting after it."""
        waiting = 0
        for schema, tables in self.tables.items():
            while True:
                last, handled = await slotmove.catch_up(
                    source,
                    target,
                    tables,
                    self.move.number,
                    self.cursor.get(schema, 0),
                    batch=self.settings.catch_up_batch,
                    progress=self._progress,
                )
                self.cursor[schema] = last
                if handled < self.settings.catch_up_batch:
                    break
            waiting += await slotmove.pending_changes(source, schema, self.move.number, self.cursor[schema])
        await self._set()
        return waiting

    async def _catching_up(self, source: Connection, target: Connection) -> str:
        while await self._catch_up_all(source, target) >= self.settings.fence_below:
            await self._check()
        return "fencing"

    async def _fencing(self, source: Connection, target: Connection) -> str:
        move, deadline_seconds = self.move, self.settings.fence_timeout_seconds
        fence = await asyncpg.connect(self.source_dsn)
        try:
            started = time.monotonic()
            deadline = started + deadline_seconds
            # Waits for the commands already past the fence, and holds back every later one.
            await fence.execute(f"SELECT pg_advisory_lock({slotmove.FENCE_LOCK}, $1::int)", move.number)
            try:
                await self._until(deadline, lambda: self._relayed(source), "the source's relay")
                await self._until(deadline, self._consumed, "the source's consumers")
                for schema in self.tables:
                    await slotmove.set_fence_state(source, schema, move.number, "moved")
                # Writers that read `copying` just before must be over before the last copy.
                self._checkpoint("fencing")
                moved = await source.fetchval("SELECT clock_timestamp()")
                await self._until(
                    deadline, lambda: self._quiet(source, moved), "transactions older than the fence"
                )
                while await self._catch_up_all(source, target):
                    pass
                current, _ = await shardstore.load(self.control)
                async with self.control.transaction():
                    published = await shardstore.publish_map(
                        self.control,
                        current.version,
                        current.reassign(move.slots.first, move.slots.last + 1, move.to_shard),
                        f"slot move {move.id}: slots {move.slots.first}-{move.slots.last} "
                        f"from shard {move.from_shard} to shard {move.to_shard}",
                    )
                    await self._set(
                        phase="cleaning",
                        fence_ms=(time.monotonic() - started) * 1000,
                        map_version=published.version,
                    )
            except TimeoutError:
                for schema in self.tables:
                    await slotmove.set_fence_state(source, schema, move.number, "copying")
                raise
            finally:
                await fence.execute(f"SELECT pg_advisory_unlock({slotmove.FENCE_LOCK}, $1::int)", move.number)
        finally:
            await fence.close()
        log.info("slot move %s switched to map version %d", move.id, published.version)
        return "cleaning"

    async def _cleaning(self, source: Connection, target: Connection) -> str:
        for schema, tables in self.tables.items():
            await slotmove.delete_slots(source, tables, self.move.slots, batch=self.settings.batch)
            await source.execute(f'DELETE FROM "{schema}".slot_changes WHERE move_id = $1', self.move.number)
        await self._set(finished=True)
        return "done"

    async def _aborting(self, source: Connection, target: Connection) -> str:
        for schema in self.tables:
            await slotmove.drop_fence(source, schema, self.move.number)
            await slotmove.delete_slots(
                target, await slotmove_catalog.describe(target, schema), self.move.slots
            )
        return "aborted"

    # -- fence conditions --------------------------------------------------------------------------
    async def _until(self, deadline: float, check: Callable[[], Any], what: str) -> None:
        while not await check():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the fence was lifted after {self.settings.fence_timeout_seconds}s waiting for {what}"
                )
            await asyncio.sleep(self.settings.poll_seconds)

    async def _quiet(self, source: Connection, moment: dt.datetime) -> bool:
        return not await slotmove.writers_before(source, moment, self.move.number)

    async def _relayed(self, source: Connection) -> bool:
        """No event in the moving slots is left that the source's relay has not published."""
        for schema in self.tables:
            waiting = await source.fetchval(
                f"""SELECT EXISTS (SELECT 1 FROM "{schema}".events e, "{schema}".relay_state r
                    WHERE (e.transaction_id >= greatest(r.floor, '3') OR e.transaction_id = ANY (r.pending))
                      AND "{schema}".slot_of(e.aggregate_id) BETWEEN $1 AND $2)
                    OR NOT EXISTS (SELECT 1 FROM "{schema}".relay_state)
                       AND EXISTS (SELECT 1 FROM "{schema}".events e
                                   WHERE "{schema}".slot_of(e.aggregate_id) BETWEEN $1 AND $2)""",
                self.move.slots.first,
                self.move.slots.last,
            )
            if waiting:
                return False
        return True

    async def _consumed(self) -> bool:
        """Every consumer of the source's subjects has acknowledged all that was published."""
        js = self.mover.js
        if js is None:
            return True
        config = self.mover.config
        stream = await js.stream_info(config.stream_name)
        marker = f"{config.subject_prefix}.s{self.move.from_shard}."
        for info in await js.consumers_info(config.stream_name):
            subjects = list(info.config.filter_subjects or []) + (
                [info.config.filter_subject] if info.config.filter_subject else []
            )
            if not any(s.startswith(marker) for s in subjects):
                continue
            drained = not info.num_pending and not info.num_ack_pending
            acked = info.ack_floor is not None and (info.ack_floor.stream_seq or 0) >= stream.state.last_seq
            if not (drained or acked):
                return False
        return True


def crash_at(spec: str) -> Callable[[str], None]:
    """A checkpoint that kills this process (SIGKILL, as kill -9 would) at the n-th checkpoint
    of a phase: "copying:3". For the tests that resume a move after the mover died."""
    phase, _, nth = spec.partition(":")
    seen = 0

    def checkpoint(at: str) -> None:
        nonlocal seen
        if at == phase:
            seen += 1
            if seen >= int(nth or 1):
                os.kill(os.getpid(), signal.SIGKILL)

    return checkpoint


async def main() -> None:
    """`python -m libs.common.slotmover`: runs the moves until stopped (CHECKOUT_* configuration);
    with --once, the active move only."""
    import nats

    config = Config.from_env()
    crash = os.environ.get("CHECKOUT_SLOT_MOVER_CRASH_AT", "")
    settings = MoverSettings(
        batch=int(os.environ.get("CHECKOUT_SLOT_MOVE_BATCH", "1000")),
        checkpoint=crash_at(crash) if crash else None,
    )
    nc = await nats.connect(config.nats_url)
    try:
        mover = SlotMover(config, nc.jetstream(), settings)
        if "--once" in sys.argv[1:]:
            await mover.run_once()
        else:
            await mover.run()
    finally:
        await nc.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main())
