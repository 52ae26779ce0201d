"""The copy engine of a slot move: how the rows of a slot get to another shard.

Which rows belong to a slot is the catalog's (libs/common/slotmove_catalog.py: `CATALOG`, the
`Table`s `describe` finds). A move of slots [first, last] from shard S to T:

1. `install_capture` on S: a `slot_fences` row (`copying`) and, on every catalog table, a row
   trigger that records each write in the moving slots in `slot_changes` (table, primary key).
2. `copy_table` per table: keyset batches of S's rows in the slots, upserted into T by primary
   key (ON CONFLICT), so copying again after a crash is harmless. Partitions S has are created
   on T first.
3. `catch_up`: the rows named in `slot_changes` since the last pass are read again on S and
   upserted into T, or deleted from T when S no longer has them.
4. `clean`: S's rows in the slots are deleted once the map names T (or T's copies, on abort).

Events are copied, never re-sent: a copied event carries transaction id 2 (PostgreSQL's frozen
xid, which no live transaction has) and the relay never publishes below 3, so other services'
projections, which saw the event from S, do not see it again from T.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable, Iterable, Sequence

import asyncpg

from libs.common.db import Connection
from libs.common.slotmove_catalog import SlotRange, Table
from libs.common.slotmoved import SLOT_MOVED

# Events copied to T carry this transaction id; the relay publishes only from 3 up.
COPIED_XID = 2
# pg_advisory_lock(FENCE_LOCK, move id): held by the mover while the moving slots are fenced;
# a command's write to `streams` in those slots takes it shared, so it waits, not fails.
FENCE_LOCK = 0x534C4F54  # "SLOT"
FENCED_TABLE = "streams"
# Set (SET LOCAL) by the mover's own writes, which the triggers let through.
MOVER_SETTING = "checkout.slot_mover"


# -- capture and fence ---------------------------------------------------------------------------
def _trigger_function(table: Table) -> str:
    """A row trigger for `table`: writes in a fenced slot are recorded (`copying`) or refused
    (`moved`); on `streams`, a command first waits while the mover holds the fence."""
    s = f'"{table.schema}"'
    slot = f"coalesce({table.slot_of('NEW')}, {table.slot_of('OLD')})"
    row_key = ", ".join(f'\'{c}\', coalesce(NEW."{c}", OLD."{c}")' for c in table.primary_key)
    wait = ""
    if table.name == FENCED_TABLE:
        wait = f"""PERFORM pg_advisory_xact_lock_shared({FENCE_LOCK}, fence.move_id::int);
        SELECT move_id, state, to_shard INTO fence FROM {s}.slot_fences WHERE move_id = fence.move_id;"""
    return f"""CREATE OR REPLACE FUNCTION {s}."slot_guard_{table.name}"() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    slot INTEGER := {slot};
    fence RECORD;
BEGIN
    IF slot IS NULL OR current_setting('{MOVER_SETTING}', true) = 'on' THEN RETURN NULL; END IF;
    SELECT move_id, state, to_shard INTO fence FROM {s}.slot_fences
    WHERE slot BETWEEN first_slot AND last_slot;
    IF NOT FOUND THEN RETURN NULL; END IF;
    {wait}
    IF fence.state = 'moved' THEN
        RAISE EXCEPTION 'slot % has moved to shard %', slot, fence.to_shard
            USING ERRCODE = '{SLOT_MOVED}', HINT = fence.to_shard::text;
    END IF;
    INSERT INTO {s}.slot_changes (move_id, table_name, row_key)
    VALUES (fence.move_id, '{table.name}', jsonb_build_object({row_key}));
    RETURN NULL;
END
$fn$"""


async def install_capture(
    conn: Connection, tables: Sequence[Table], move_id: int, slots: SlotRange, to_shard: int
) -> None:
    """Starts recording writes in `slots` (idempotent). Triggers go in one table at a time (each
    takes a brief table lock, and holding several at once could deadlock with the shard's own
    writers); they do nothing until the fence row, inserted last, arms them."""
    schema = tables[0].schema
    for table in tables:
        async with conn.transaction():
            await conn.execute(_trigger_function(table))
            await conn.execute(
                f'CREATE OR REPLACE TRIGGER "slot_guard" AFTER INSERT OR UPDATE OR DELETE ON {table.qualified} '
                f'FOR EACH ROW EXECUTE FUNCTION "{schema}"."slot_guard_{table.name}"()'
            )
    await conn.execute(
        f"""INSERT INTO "{schema}".slot_fences (move_id, first_slot, last_slot, to_shard, state)
            VALUES ($1, $2, $3, $4, 'copying') ON CONFLICT (move_id) DO NOTHING""",
        move_id,
        slots.first,
        slots.last,
        to_shard,
    )


async def writers_before(conn: Connection, moment: dt.datetime, move_id: int) -> bool:
    """Whether a transaction that began before `moment` and has written is still open, apart
    from those waiting at the move's fence (they will find the slots moved, and roll back). A
    writer that read the fence's old state is over once this is False."""
    return bool(
        await conn.fetchval(
            f"""SELECT EXISTS (SELECT 1 FROM pg_stat_activity a
                WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
                  AND a.backend_xid IS NOT NULL AND a.xact_start < $1
                  AND a.pid NOT IN (SELECT l.pid FROM pg_locks l
                                    WHERE l.locktype = 'advisory' AND NOT l.granted
                                      AND l.classid = {FENCE_LOCK} AND l.objid = $2 AND l.objsubid = 2))""",
            moment,
            move_id,
        )
    )


async def set_fence_state(conn: Connection, schema: str, move_id: int, state: str) -> None:
    await conn.execute(f'UPDATE "{schema}".slot_fences SET state = $2 WHERE move_id = $1', move_id, state)


async def drop_fence(conn: Connection, schema: str, move_id: int) -> None:
    """An aborted move: writes in its slots are neither recorded nor refused any more."""
    async with conn.transaction():
        await conn.execute(f'DELETE FROM "{schema}".slot_fences WHERE move_id = $1', move_id)
        await conn.execute(f'DELETE FROM "{schema}".slot_changes WHERE move_id = $1', move_id)


# -- copy ----------------------------------------------------------------------------------------
def _in_slots(table: Table, row: str = "t") -> str:
    return f"{table.slot_of(row)} BETWEEN $1 AND $2"


def _pk(table: Table, row: str = "t") -> str:
    return ", ".join(f'{row}."{c}"' for c in table.primary_key)


def _json_array(docs: Iterable[str]) -> str:
    """Rows as JSON documents (to_jsonb's text) joined into one array, for jsonb_populate_recordset."""
    return "[" + ",".join(docs) + "]"


def _upsert(table: Table) -> str:
    columns = ", ".join(f'"{c}"' for c in table.columns)
    select = ", ".join(
        f"'{COPIED_XID}'::xid8" if table.immutable and c == "transaction_id" else f'r."{c}"'
        for c in table.columns
    )
    conflict = ", ".join(f'"{c}"' for c in table.primary_key)
    updates = [f'"{c}" = EXCLUDED."{c}"' for c in table.columns if c not in table.primary_key]
    action = "DO NOTHING" if table.immutable or not updates else "DO UPDATE SET " + ", ".join(updates)
    return (
        f"INSERT INTO {table.qualified} ({columns}) "
        f"SELECT {select} FROM jsonb_populate_recordset(NULL::{table.qualified}, $1::text::jsonb) r "
        f"ON CONFLICT ({conflict}) {action}"
    )


async def mover_transaction_setting(conn: Connection) -> None:
    """Inside a transaction: this connection's writes pass the slot triggers (it is the mover)."""
    await conn.execute(f"SELECT set_config('{MOVER_SETTING}', 'on', true)")


async def _write(target: Connection, table: Table, docs: Sequence[str]) -> None:
    async with target.transaction():
        await mover_transaction_setting(target)
        await target.execute(_upsert(table), _json_array(docs))


async def copy_partitions(source: Connection, target: Connection, table: Table) -> None:
    """The partitions `table` has on the source, created on the target when missing."""
    if not table.partitioned:
        return
    rows = await source.fetch(
        """SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i
           JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass""",
        table.qualified,
    )
    for row in rows:
        # DuplicateTableError: the target's own upkeep made it at the same moment.
        with contextlib.suppress(asyncpg.DuplicateTableError):
            await target.execute(
                f'CREATE TABLE IF NOT EXISTS "{table.schema}"."{row["relname"]}" '
                f"PARTITION OF {table.qualified} {row['bound']}"
            )


# Told of each batch written (table, rows); may raise to stop the copy (a pause, an abort).
Progress = Callable[[Table, int], Awaitable[None]]


async def copy_table(
    source: Connection,
    target: Connection,
    table: Table,
    slots: SlotRange,
    *,
    batch: int = 1000,
    progress: Progress | None = None,
) -> int:
    """Every row of `table` in `slots`, source to target, in keyset batches (`Table.order`);
    rows copied."""
    await copy_partitions(source, target, table)
    order = ", ".join(f't."{c}"' for c in table.order)
    first = (
        f"SELECT to_jsonb(t)::text AS doc, {order} FROM {table.qualified} t "
        f"WHERE {_in_slots(table)} ORDER BY {order} LIMIT {batch}"
    )
    params = ", ".join(f"${i + 3}" for i in range(len(table.order)))
    after = (
        f"SELECT to_jsonb(t)::text AS doc, {order} FROM {table.qualified} t "
        f"WHERE {_in_slots(table)} AND ({order}) > ({params}) ORDER BY {order} LIMIT {batch}"
    )
    copied = 0
    rows = await source.fetch(first, slots.first, slots.last)
    while rows:
        await _write(target, table, [r["doc"] for r in rows])
        copied += len(rows)
        if progress is not None:
            await progress(table, len(rows))
        if len(rows) < batch:
            break
        last = rows[-1]
        rows = await source.fetch(after, slots.first, slots.last, *(last[c] for c in table.order))
    return copied


# -- catch-up ------------------------------------------------------------------------------------
async def catch_up(
    source: Connection,
    target: Connection,
    tables: Sequence[Table],
    move_id: int,
    after_change: int,
    *,
    batch: int = 1000,
    progress: Progress | None = None,
) -> tuple[int, int]:
    """Copies again the rows written since change `after_change`, one batch of changes; returns
    (the last change handled, how many). Rows S has are upserted into T in catalog order (parents
    first); rows S no longer has are deleted from T in reverse order (children first)."""
    schema = tables[0].schema
    changes = await source.fetch(
        f'SELECT id, table_name, row_key::text AS row_key FROM "{schema}".slot_changes '
        f"WHERE move_id = $1 AND id > $2 ORDER BY id LIMIT {batch}",
        move_id,
        after_change,
    )
    if not changes:
        return after_change, 0
    keys: dict[str, list[str]] = {}
    for change in changes:
        keys.setdefault(change["table_name"], []).append(change["row_key"])
    gone: list[tuple[Table, list[str]]] = []
    for table in tables:
        if table.name not in keys:
            continue
        wanted = _json_array(dict.fromkeys(keys[table.name]))
        k = _pk(table, "k")
        order = ", ".join(f't."{c}"' for c in table.order)
        present = await source.fetch(
            f"SELECT to_jsonb(t)::text AS doc FROM {table.qualified} t WHERE ({_pk(table)}) IN "
            f"(SELECT {k} FROM jsonb_populate_recordset(NULL::{table.qualified}, $1::text::jsonb) k) "
            f"ORDER BY {order}",
            wanted,
        )
        if present:
            await _write(target, table, [r["doc"] for r in present])
            if progress is not None:
                await progress(table, len(present))
        missing = await source.fetch(
            f"SELECT to_jsonb(k)::text AS doc FROM jsonb_populate_recordset(NULL::{table.qualified}, "
            f"$1::text::jsonb) k WHERE NOT EXISTS (SELECT 1 FROM {table.qualified} t "
            f"WHERE ({_pk(table)}) = ({k}))",
            wanted,
        )
        if missing:
            gone.append((table, [r["doc"] for r in missing]))
    for table, docs in reversed(gone):
        k = _pk(table, "k")
        async with target.transaction():
            await mover_transaction_setting(target)
            await target.execute(
                f"DELETE FROM {table.qualified} t WHERE ({_pk(table)}) IN (SELECT {k} FROM "
                f"jsonb_populate_recordset(NULL::{table.qualified}, $1::text::jsonb) k)",
                _json_array(docs),
            )
    return changes[-1]["id"], len(changes)


async def pending_changes(source: Connection, schema: str, move_id: int, after_change: int) -> int:
    return int(
        await source.fetchval(
            f'SELECT count(*) FROM "{schema}".slot_changes WHERE move_id = $1 AND id > $2',
            move_id,
            after_change,
        )
    )


# -- clean ---------------------------------------------------------------------------------------
async def delete_slots(
    conn: Connection, tables: Sequence[Table], slots: SlotRange, *, batch: int = 1000
) -> int:
    """Deletes every row in `slots` from these tables, children first, in batches (the source
    after the switch, or the target's copies after an abort); rows deleted."""
    deleted = 0
    for table in reversed(tables):
        pk = ", ".join(f'"{c}"' for c in table.primary_key)
        statement = (
            f"DELETE FROM {table.qualified} WHERE ({pk}) IN (SELECT {_pk(table)} FROM {table.qualified} t "
            f"WHERE {_in_slots(table)} LIMIT {batch})"
        )
        while True:
            async with conn.transaction():
                await mover_transaction_setting(conn)
                status = await conn.execute(statement, slots.first, slots.last)
            count = int(status.split()[-1])
            deleted += count
            if count < batch:
                break
            await asyncio.sleep(0)  # let the shard's own traffic in between batches
    return deleted


async def count_rows(conn: Connection, tables: Sequence[Table], slots: SlotRange) -> dict[str, int]:
    """Rows per table in `slots` (the move's progress total; a test's check)."""
    counts = {}
    for table in tables:
        counts[f"{table.schema}.{table.name}"] = int(
            await conn.fetchval(
                f"SELECT count(*) FROM {table.qualified} t WHERE {_in_slots(table)}", slots.first, slots.last
            )
        )
    return counts
