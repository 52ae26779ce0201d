"""Composed queries as SQLAlchemy Core statements, run through our own asyncpg pools.

A repository whose query depends on which filters a request gives (list filters, cursors,
search) builds it as a Core statement on its service's tables (services/*/tables.py) instead of
joining strings: each condition is an expression of a declared column, so a misspelt column or a
misplaced AND fails where the statement is built, and a value can only ever be a bind parameter.

SQLAlchemy's own execution layer is not used: the statement is compiled once per shape (which
filters are present) for the asyncpg dialect, whose `$1, $2...` placeholders are asyncpg's, and
the SQL text runs on our pools with the arguments in the compiler's order. The pools, their
statement cache and asyncpg's records stay as they are; only the text is composed differently.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, bindparam, select
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

# Renders `$n` placeholders with a cast to the column's type (`$1::UUID`): asyncpg then knows
# each argument's type from the text, as it did from the hand-written `$1::uuid` casts.
_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]  # the dialect's __init__ is untyped


@dataclass(frozen=True)
class Query:
    """A compiled statement: its SQL and the names of its bind parameters in `$n` order."""

    sql: str
    names: tuple[str, ...]
    constants: Mapping[str, Any]

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        """The positional arguments for `values` by bind parameter name (constants the statement
        itself holds need not be given); a name left out is a KeyError, never a silent NULL."""
        return [values[name] if name in values else self.constants[name] for name in self.names]


def compile_query(statement: ClauseElement) -> Query:
    """`statement` as asyncpg runs it. Values are named `bindparam`s given to `Query.args`, so one
    compiled query serves every request of its shape; a literal in the statement is a constant."""
    compiled = statement.compile(dialect=_DIALECT)
    assert isinstance(compiled, SQLCompiler)  # a statement's compiler, which numbers its binds
    names = tuple(compiled.positiontup or ())
    constants = {
        name: bind.effective_value for bind, name in compiled.bind_names.items() if not bind.required
    }
    return Query(str(compiled), names, constants)


@functools.cache
def newest_first(table: Table, columns: str, filters: tuple[str, ...], paged: bool) -> Query:
    """`columns` (comma-separated names) of `table`'s rows whose each of `filters` equals the
    bind parameter of that name, newest first by id (our ids are time-ordered), below the cursor
    `before` when `paged`, at most `limit`: the shape of every keyset-paged list with optional
    equality filters. Only the filters given become conditions, so each shape gets its own plan
    instead of `$n IS NULL OR ...`, which no index serves."""
    c = table.c
    conditions = [c[name] == bindparam(name) for name in filters]
    if paged:
        conditions.append(c.id < bindparam("before"))
    selected = [c[name.strip()] for name in columns.split(",")]
    return compile_query(select(*selected).where(*conditions).order_by(c.id.desc()).limit(bindparam("limit")))
