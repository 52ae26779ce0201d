"""Plan notes for the scale bench: the plan PostgreSQL really ran for each prepared statement.

The repository code runs on a `Recorder` around one real connection, so its statements land in
that connection's statement cache as in a service's pool; afterwards each is `EXPLAIN EXECUTE`d by
its prepared statement's name, so the plan cache decides (generic or custom) exactly as it did.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg

Calls = list[tuple[str, tuple[Any, ...]]]


@dataclass
class Recorder:
    """Runs the repository code on one real connection and remembers the statements it sent, so
    each can be EXPLAINed afterwards through the same prepared statement."""

    conn: asyncpg.Connection
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        self.calls.append((sql, args))
        return list(await self.conn.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        self.calls.append((sql, args))
        return await self.conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self.calls.append((sql, args))
        return await self.conn.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        self.calls.append((sql, args))
        return await self.conn.execute(sql, *args)

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[Recorder]:
        yield self

    @asynccontextmanager
    async def transaction(self, **options: Any) -> AsyncIterator[None]:
        async with self.conn.transaction(**options):
            yield


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        items = ",".join('"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in value)
        return _literal("{" + items + "}")
    if isinstance(value, dt.datetime | dt.date):
        value = value.isoformat()
    if isinstance(value, int | Decimal):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _walk(node: dict[str, Any], depth: int = 0) -> list[str]:
    text = node["Node Type"]
    if node.get("Scan Direction") == "Backward":
        text += " Backward"
    if "Index Name" in node:
        text += f" using {node['Index Name']}"
    elif "Relation Name" in node:
        text += f" on {node['Relation Name']}"
    text += f" (rows {node.get('Actual Rows', 0)}"
    loops = node.get("Actual Loops", 1)
    if loops and loops > 1:
        text += f" x{loops} loops"
    for removed in ("Rows Removed by Filter", "Rows Removed by Index Recheck"):
        if node.get(removed):
            text += f", {removed.lower()} {node[removed]}"
    text += ")"
    if "Index Cond" in node:
        text += f" on {node['Index Cond'][:160]}"
    lines = ["  " * depth + text]
    for child in node.get("Plans", []):
        lines.extend(_walk(child, depth + 1))
    return lines


async def _plan_counts(conn: asyncpg.Connection, name: str) -> tuple[int, int]:
    row = await conn.fetchrow(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = $1", name
    )
    assert row is not None
    return int(row["generic_plans"]), int(row["custom_plans"])


async def explain(conn: asyncpg.Connection, calls: Calls) -> list[dict[str, Any]]:
    """The plan, its time and the plan cache's counts of each recorded statement, in order."""
    notes: list[dict[str, Any]] = []
    settings: list[str] = []  # SET LOCALs the code ran first: they decide the plan too
    for sql, args in calls:
        if sql.lstrip().upper().startswith("SET LOCAL"):
            settings.append(sql)
            continue
        prepared = await conn.fetchrow(
            "SELECT name, parameter_types::text[] AS types FROM pg_prepared_statements WHERE statement = $1",
            sql,
        )
        if prepared is None:
            continue
        params = ", ".join(f"{_literal(a)}::{t}" for a, t in zip(args, prepared["types"], strict=True))
        command = f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE {prepared['name']}"
        before = await _plan_counts(conn, prepared["name"])
        # Rolled back: EXPLAIN ANALYZE of a FOR UPDATE takes its row locks.
        transaction = conn.transaction()
        await transaction.start()
        try:
            for setting in settings:
                await conn.execute(setting)
            plan = (await conn.fetchval(command + (f"({params})" if params else "")))[0]
        finally:
            await transaction.rollback()
        counts = await _plan_counts(conn, prepared["name"])
        notes.append({
            "statement": " ".join(sql.split())[:160],
            # What this execution used: the plan cache's choice after the rounds.
            "plan_kind": "generic" if counts[0] > before[0] else "custom",
            "plan": _walk(plan["Plan"]),
            "execution_ms": round(plan["Execution Time"], 2),
            "generic_plans": counts[0],
            "custom_plans": counts[1],
        })  # fmt: skip
    return notes
