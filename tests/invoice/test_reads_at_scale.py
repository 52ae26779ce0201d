"""Search and date windows on a generated shard (tools/scale_data.py, small): the indexed queries
of services/invoice/repository/invoices.py return exactly what their plain definitions return."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from libs.common.config import Config
from libs.common.db import ShardPools
from services.invoice import repository
from tools.devservers import Servers
from tools.scale_data import COMMON_WORD, POPULAR_ELSEWHERE, Built, Sizes, build

PAGE = 51
DEFINITION = """SELECT id FROM invoices WHERE merchant_id = $1
                  AND to_tsvector('english', title || ' ' || coalesce(description, ''))
                      @@ plainto_tsquery('english', $2)
                  AND ($3::uuid IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"""


@pytest.fixture(scope="module")
async def shard(servers: Servers) -> AsyncIterator[tuple[asyncpg.Pool, Built]]:
    config = Config(
        database_url=servers.database_url, database_prefix=f"reads_{uuid.uuid4().hex[:8]}", shard_count=1
    )
    built = await build(config.shard_dsn(0), Sizes(invoices=6_000, merchants=30, largest=1_500), log=False)
    pools = ShardPools(config, "invoice")
    await pools.open([0])
    yield pools[0], built
    await pools.close()


async def test_search_finds_exactly_the_merchants_invoices_with_the_words(
    shard: tuple[asyncpg.Pool, Built],
) -> None:
    pool, built = shard
    merchants = [uuid.UUID(built.largest_merchant), uuid.UUID(built.median_merchant)]
    queries = [COMMON_WORD, built.mid_word, built.rare_word, POPULAR_ELSEWHERE, f"{COMMON_WORD} {built.mid_word}",
               "the", "no-such-word", built.largest_merchant]  # fmt: skip
    checked = 0
    # Past the plan cache's five custom plans: the service's pools run each statement for long.
    for _ in range(2):
        for merchant in merchants:
            for query in queries:
                cursor: uuid.UUID | None = None
                for _page in range(3):
                    where = repository.InvoiceFilter(merchant, search=query, before_id=cursor)
                    found = [r["id"] for r in await repository.invoices(pool, where, PAGE)]
                    expected = [r["id"] for r in await pool.fetch(DEFINITION, merchant, query, cursor, PAGE)]
                    assert found == expected, (merchant, query, cursor)
                    checked += len(found)
                    if len(found) < PAGE:
                        break
                    cursor = found[-1]
    assert checked > 4 * PAGE  # common words fill pages: this compared real results


async def test_date_windows_return_what_created_at_alone_says_even_for_an_id_minted_early(
    shard: tuple[asyncpg.Pool, Built],
) -> None:
    pool, built = shard
    largest = uuid.UUID(built.largest_merchant)
    # An invoice whose id was minted half an hour before its created_at (a slow create).
    early = await pool.fetchval(
        """UPDATE invoices SET created_at = created_at + interval '30 minutes'
           WHERE id = (SELECT id FROM invoices WHERE merchant_id = $1 ORDER BY id DESC OFFSET 700 LIMIT 1)
           RETURNING created_at""",
        largest,
    )
    newest = await pool.fetchval("SELECT max(created_at) FROM invoices")
    windows: list[tuple[dt.datetime | None, dt.datetime | None]] = [
        (early, early + dt.timedelta(milliseconds=1)),
        (early - dt.timedelta(minutes=1), early + dt.timedelta(minutes=1)),
        (None, early + dt.timedelta(milliseconds=1)),
        (early, None),
        (newest - dt.timedelta(days=200), newest - dt.timedelta(days=190)),
        (None, newest - dt.timedelta(days=100)),
        (dt.datetime(1, 1, 1, tzinfo=dt.UTC), dt.datetime(9999, 12, 31, 23, 59, tzinfo=dt.UTC)),
    ]
    for status in (None, "expired"):
        for after, before in windows:
            where = repository.InvoiceFilter(
                largest, status=status, created_after=after, created_before=before
            )
            found = [r["id"] for r in await repository.invoices(pool, where, PAGE)]
            expected = [
                r["id"]
                for r in await pool.fetch(
                    """SELECT id FROM invoices WHERE merchant_id = $1 AND ($2::text IS NULL OR status = $2)
                         AND ($3::timestamptz IS NULL OR created_at >= $3)
                         AND ($4::timestamptz IS NULL OR created_at < $4)
                       ORDER BY id DESC LIMIT $5""",
                    largest,
                    status,
                    after,
                    before,
                    PAGE,
                )
            ]
            assert found == expected, (status, after, before)
    only = repository.InvoiceFilter(
        largest, created_after=early, created_before=early + dt.timedelta(milliseconds=1)
    )
    assert [r["created_at"] for r in await repository.invoices(pool, only, PAGE)] == [early]
