"""Fresh: concurrent callers share reads, and each answer is of a read begun after its call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from libs.common.coalesce import Fresh
from libs.common.config import Config
from libs.common.db import migrate_shard, migrations_for
from tests.common.support import poll

POSITION = "SELECT (pg_current_wal_lsn() - '0/0')::bigint"
# The position as the read begins, then two seconds of work: a caller can arrive in the middle.
SLOW_POSITION = "SELECT (pg_current_wal_lsn() - '0/0')::bigint AS position, pg_sleep(2)"


@pytest.fixture
async def pool(config: Config, tmp_path: Path) -> AsyncIterator[asyncpg.Pool]:
    await migrate_shard(config.shard_dsn(0), "coalesce", migrations_for(tmp_path))  # the database
    pool = await asyncpg.create_pool(config.shard_dsn(0), min_size=1, max_size=4)
    assert pool is not None
    await pool.execute("CREATE TABLE IF NOT EXISTS coalesce_writes (n int)")
    yield pool
    await pool.execute("DROP TABLE coalesce_writes")
    await pool.close()


async def commit(pool: asyncpg.Pool) -> int:
    """A committed write, and the primary's position right after it."""
    async with pool.acquire() as conn:
        await conn.execute("INSERT INTO coalesce_writes VALUES (1)")
        return int(await conn.fetchval(POSITION))


async def test_twenty_callers_at_once_cost_two_reads_and_every_answer_covers_their_commits(
    pool: asyncpg.Pool,
) -> None:
    fresh = Fresh(lambda: pool.fetchval(POSITION))
    committed = [await commit(pool) for _ in range(20)]
    answers = await asyncio.gather(*(fresh.get() for _ in range(20)))
    # The first call's read begins at once; the other 19 ask while it runs and share the next.
    assert fresh.reads == 2
    assert min(answers) >= max(committed)


async def test_a_caller_arriving_during_a_read_waits_for_the_next_one(pool: asyncpg.Pool) -> None:
    fresh = Fresh(lambda: pool.fetchval(SLOW_POSITION))
    first = asyncio.create_task(fresh.get())

    async def reading() -> bool:
        running = "SELECT count(*) FROM pg_stat_activity WHERE query = $1 AND state = 'active'"
        return bool(await pool.fetchval(running, SLOW_POSITION))

    await poll(reading, what="the first read to be running in PostgreSQL")
    assert fresh.reads == 1
    late_commit = await commit(pool)
    late = await fresh.get()
    early = await first
    assert early < late_commit  # the running read began before this commit ...
    assert late >= late_commit  # ... so the late caller got the next read's answer
    assert fresh.reads == 2


async def test_a_failed_read_fails_its_callers_and_the_next_call_reads_again(pool: asyncpg.Pool) -> None:
    sql = ["SELECT nonsense FROM nowhere"]
    fresh = Fresh(lambda: pool.fetchval(sql[0]))
    results = await asyncio.gather(fresh.get(), fresh.get(), return_exceptions=True)
    assert all(isinstance(r, asyncpg.UndefinedTableError) for r in results)
    sql[0] = POSITION
    committed = await commit(pool)
    assert await fresh.get() >= committed
    assert fresh.reads == 3
