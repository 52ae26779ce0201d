"""A service's SQL lives in its repository (`repository.py` or a `repository/` package) and its
migrations: projections, the ledger and the application decide, the repository stores. So no other
module under services/ runs a statement on a connection or a pool."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# asyncpg's ways of running SQL, on a connection or a pool.
RUNS_SQL = frozenset(
    {
        "execute",
        "executemany",
        "fetch",
        "fetchrow",
        "fetchval",
        "fetchmany",
        "cursor",
        "prepare",
        "copy_records_to_table",
        "copy_to_table",
        "copy_from_table",
        "copy_from_query",
    }
)


def is_repository(path: Path) -> bool:
    parts = path.relative_to(ROOT).parts
    return path.name == "repository.py" or "repository" in parts[:-1] or "migrations" in parts


def calls_running_sql(source: str) -> list[tuple[int, str]]:
    """(line, method) of each call of a RUNS_SQL method anywhere in `source` that is given what to
    run (asyncpg's always are: the statement; a Redis pipeline's `execute()` takes nothing)."""
    return [
        (node.lineno, node.func.attr)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in RUNS_SQL
        and (node.args or node.keywords)
    ]


def test_no_module_outside_a_repository_runs_sql() -> None:
    outside = [path for path in sorted((ROOT / "services").rglob("*.py")) if not is_repository(path)]
    assert len(outside) > 20  # the walk found the services' modules
    found = [
        f"{path.relative_to(ROOT)}:{line} .{method}"
        for path in outside
        for line, method in calls_running_sql(path.read_text())
    ]
    assert found == []


def test_repositories_and_migrations_are_where_sql_may_run() -> None:
    services = ROOT / "services"
    assert is_repository(services / "customer" / "repository.py")
    assert is_repository(services / "invoice" / "repository" / "watching.py")
    assert is_repository(services / "invoice" / "migrations" / "versions" / "0001_initial.py")
    assert not is_repository(services / "invoice" / "projections.py")
    assert not is_repository(services / "invoice" / "chains" / "positions.py")


def test_the_walk_sees_a_statement_run_inside_a_block() -> None:
    source = (
        "async def f(pool):\n"
        "    async with pool.acquire() as c:\n"
        "        await c.fetchval('SELECT 1')\n"
        "    return await pool.execute('SELECT 2')\n"
    )
    assert sorted(calls_running_sql(source)) == [(3, "fetchval"), (4, "execute")]


def test_the_check_sees_a_statement_run_but_not_a_redis_pipeline() -> None:
    source = (
        "async def f(conn, pipe):\n"
        "    await conn.execute('DELETE FROM t WHERE id = $1', 1)\n"
        "    rows = await conn.fetch(query=QUERY)\n"
        "    await pipe.execute()\n"
    )
    assert calls_running_sql(source) == [(2, "execute"), (3, "fetch")]
