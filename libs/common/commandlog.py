"""Idempotent commands: the command log (`command_log`) that remembers each idempotency key's
first answer.

A command runs through `Commands.run_on` in the transaction that appends its events
(libs/common/eventstore.py), so the key, the events and the answer are committed together: a
retry with the same key returns the stored answer and appends nothing; the same key with another
request is a Conflict.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from libs.common import consistency, context
from libs.common.db import Connection
from libs.common.errors import Conflict

R = TypeVar("R")


class Commands:
    """Idempotent commands: a retry with the same key returns the first result and appends
    nothing; the same key with a different request is a Conflict."""

    @staticmethod
    async def run(
        pool: asyncpg.Pool,
        scope: str,
        handler: Callable[[Connection], Awaitable[R]],
        encode: Callable[[R], bytes],
        decode: Callable[[bytes], R],
        request_hash: str = "",
    ) -> R:
        async with pool.acquire() as conn:
            return await Commands.run_on(conn, scope, handler, encode, decode, request_hash)

    @staticmethod
    async def replay(
        conn: Connection, scope: str, decode: Callable[[bytes], R], request_hash: str = ""
    ) -> R | None:
        """The first result of this request's idempotency key, or None when there is no key or
        no finished command under it yet. For work a command does before its transaction (that a
        retry should not repeat); `run_on` still settles a race between two first tries."""
        ctx = context.current()
        if not ctx.idempotency_key:
            return None
        row = await Commands._logged(conn, scope, ctx.idempotency_key)
        if row is None or row["response"] is None:
            return None
        return Commands._answer(row, ctx.idempotency_hash or request_hash, decode)

    @staticmethod
    async def run_on(
        conn: Connection,
        scope: str,
        handler: Callable[[Connection], Awaitable[R]],
        encode: Callable[[R], bytes],
        decode: Callable[[bytes], R],
        request_hash: str = "",
        *,
        one_statement: bool = False,
    ) -> R:
        """`run` on a connection the caller holds (outside a transaction). `one_statement`: the
        handler writes in a single statement, atomic alone, so without an idempotency key it
        runs outside a transaction (two round trips fewer: no BEGIN, no COMMIT)."""
        ctx = context.current()
        key = ctx.idempotency_key
        if not key:
            if one_statement:
                return await handler(conn)
            async with conn.transaction():
                return await handler(conn)
        request_hash = ctx.idempotency_hash or request_hash
        async with conn.transaction():
            # Claiming the key first makes a concurrent duplicate wait on this row until we
            # commit, after which it finds our result instead of running the command twice.
            claimed = await conn.fetchval(
                "INSERT INTO command_log (scope, idempotency_key, request_hash) "
                "VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING true",
                scope,
                key,
                request_hash,
            )
            if claimed:
                result = await handler(conn)
                await conn.execute(
                    "UPDATE command_log SET response = $3 WHERE scope = $1 AND idempotency_key = $2",
                    scope,
                    key,
                    encode(result),
                )
                return result
        row = await Commands._logged(conn, scope, key)
        assert row is not None and row["response"] is not None
        return Commands._answer(row, request_hash, decode)

    @staticmethod
    async def _logged(conn: Connection, scope: str, key: str) -> asyncpg.Record | None:
        return await conn.fetchrow(
            "SELECT request_hash, response FROM command_log WHERE scope = $1 AND idempotency_key = $2",
            scope,
            key,
        )

    @staticmethod
    def _answer(row: asyncpg.Record, request_hash: str, decode: Callable[[bytes], R]) -> R:
        if row["request_hash"] != request_hash:
            raise Conflict(
                "Idempotency-Key was already used with a different request",
                [],
            )
        context.command_replayed.set(True)
        consistency.mark_write()  # a retry's answer is the first one's, token included
        return decode(row["response"])
