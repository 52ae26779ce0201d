"""Each service schema on every shard: upgraded by Alembic revisions after the SQL baseline
(`upgrade_shard`, `migrate`), compared with its declared tables (services/*/tables.py:
`differences`), revisions drafted from them (`write_revision`), and what revisions call
(`require_sql_applied`, `create_index_concurrently`).

Alembic's autogenerate reads the schema back and lists every difference from the metadata; the
Alembic environment (libs/common/alembic/env.py) and the schema check in the tests use the same
rules, so what `alembic revision --autogenerate` would write and what the test fails on agree.
What the comparison cannot see, or would misread, is left out here, each with its reason.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command, op
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Column, Connection, MetaData, Sequence, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.elements import TextClause

from libs.common.config import Config
from libs.common.db import MigrationError, apply_sql, ensure_database, migrations_for, schema_lock

log = logging.getLogger("checkout.schema")

# Today's SQL runner's ledger (libs/common/db.py), which the baseline revisions stand on.
LEGACY_LEDGER = "schema_migrations"
VERSION_TABLE = "alembic_version"

IncludeName = Callable[[str | None, str, dict[str, str | None]], bool]


def partitions(connection: Connection) -> set[str]:
    """The partitions in the connection's schema (`events_2026_11`, `daily_metrics_2026_q4`...)."""
    rows = connection.execute(
        text(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relispartition AND n.nspname = current_schema()"
        )
    )
    return {row[0] for row in rows}


def include_name(skipped: set[str]) -> IncludeName:
    """Leaves out of the comparison the tables no revision declares:
    - partitions: the services create them ahead of time (libs/common/partitions.py) and move
      old ones to the archive schema, so which exist depends on the day, not on a revision;
      the metadata declares the partitioned parent (`postgresql_partition_by`);
    - the ledgers: the SQL runner's `schema_migrations`, kept so a replica of the previous
      release that starts during a deploy still finds its migrations applied, and Alembic's
      `alembic_version` (which Alembic skips itself only where it is not in a named schema)."""
    skipped = skipped | {LEGACY_LEDGER, VERSION_TABLE}

    def include(name: str | None, type_: str, parent_names: dict[str, str | None]) -> bool:
        return not (type_ == "table" and name in skipped)

    return include


def compare_server_default(
    context: MigrationContext,
    inspected_column: Column[Any],
    metadata_column: Column[Any],
    inspected_default: str | None,
    metadata_default: Any,
    rendered_metadata_default: str | None,
) -> bool | None:
    """A serial column (`events.sequence_number`, BIGSERIAL) is read back with no default: Alembic
    recognises the nextval() of the column's own sequence and drops it. Its metadata default is
    that same nextval(), so it would always differ; whether the sequence is there is another
    matter, checked by every append. Everything else: Alembic's own comparison (None)."""
    if isinstance(metadata_column.default, Sequence):
        return False
    return None


def context_options(skipped: set[str]) -> dict[str, Any]:
    return {
        "compare_type": True,
        "compare_server_default": compare_server_default,
        "include_name": include_name(skipped),
    }


def differences(connection: Connection, metadata: MetaData) -> list[Any]:
    """What autogenerate would write to bring the connection's schema (its search_path) to the
    metadata: empty when migrations and tables agree."""
    context = MigrationContext.configure(connection, opts=context_options(partitions(connection)))
    diffs: list[Any] = compare_metadata(context, metadata)
    return diffs


def engine_for(dsn: str, schema: str) -> AsyncEngine:
    """An engine on the asyncpg driver whose connections work in `schema` (as the services'
    pools do), opened per use: migrations and checks run seldom, and a pool would outlive them."""
    url = make_url(dsn).set(drivername="postgresql+asyncpg")
    return create_async_engine(
        url, poolclass=NullPool, connect_args={"server_settings": {"search_path": f"{schema},public"}}
    )


# -- upgrading a service schema on every shard ----------------------------------------------------

ENVIRONMENT = Path(__file__).parent / "alembic"


def alembic_config(service_dir: Path, schema: str, metadata: MetaData | None = None) -> AlembicConfig:
    """The service's Alembic configuration, built in code: the shared environment, the
    service's revisions, its schema (also the version table's)."""
    config = AlembicConfig()
    config.set_main_option("script_location", str(ENVIRONMENT))
    config.set_main_option("version_locations", str(service_dir / "migrations" / "versions"))
    config.set_main_option("path_separator", "os")
    config.set_main_option("file_template", "%%(rev)s")  # ids are the files' names: 0002_what_changes
    config.attributes.update(schema=schema, metadata=metadata, applied=[])
    return config


def record_applied(config: AlembicConfig) -> Callable[..., None]:
    """env.py's `on_version_apply`: the revisions this run applied, for `upgrade_shard` to log."""

    def record(*, step: Any, **_: Any) -> None:
        if step.is_upgrade:
            config.attributes["applied"].append(step.up_revision_id)

    return record


def _hand_over(connection: Connection, config: AlembicConfig) -> None:
    """Gives env.py the connection, and the partitions it must not take for tables."""
    config.attributes["partitions"] = partitions(connection)
    connection.rollback()  # Alembic begins a transaction per revision, none may be open before
    config.attributes["connection"] = connection


def _upgrade(connection: Connection, config: AlembicConfig) -> list[str]:
    _hand_over(connection, config)
    command.upgrade(config, "heads")
    applied: list[str] = config.attributes["applied"]
    return applied


@dataclass(frozen=True)
class Revisions:
    heads: frozenset[str]  # the newest (one, unless two lines were merged without a merge revision)
    known: frozenset[str]


def revisions(service_dir: Path) -> Revisions:
    """The service's revisions, read again only when a revision file changes."""
    versions = service_dir / "migrations" / "versions"
    return _revisions(
        service_dir, tuple(sorted((p.name, p.stat().st_mtime_ns) for p in versions.glob("*.py")))
    )


@functools.cache
def _revisions(service_dir: Path, files: tuple[tuple[str, int], ...]) -> Revisions:
    script = ScriptDirectory.from_config(alembic_config(service_dir, ""))
    return Revisions(frozenset(script.get_heads()), frozenset(r.revision for r in script.walk_revisions()))


async def _recorded(conn: asyncpg.Connection) -> frozenset[str]:
    """The revisions recorded in the connection's schema (none before Alembic's first run)."""
    if not await conn.fetchval(f"SELECT to_regclass('{VERSION_TABLE}') IS NOT NULL"):
        return frozenset()
    return frozenset(r[0] for r in await conn.fetch(f"SELECT version_num FROM {VERSION_TABLE}"))


# Alembic keeps the migration it runs in module globals (`alembic.context`, `alembic.op`): two
# at once in one process would each take the other's. Shards run their SQL step concurrently,
# and their revisions one at a time (an asyncio lock per event loop, as a lock is bound to one).
_alembic_turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def _alembic_turn() -> asyncio.Lock:
    return _alembic_turns.setdefault(asyncio.get_running_loop(), asyncio.Lock())


async def upgrade_shard(dsn: str, schema: str, service_dir: Path) -> list[str]:
    """Brings the service's schema on one shard to its newest revision; returns what it applied.

    The SQL files first (`db.apply_sql`: on a database older than Alembic, only those it lacks;
    their `schema_migrations` ledger stays, so a replica of the previous release that starts
    during a deploy finds them applied), then the Alembic revisions after the baseline that
    stands for them, each in its own transaction. The schema's lock is held throughout: several
    services or replicas starting at once migrate one after the other, the others finding
    nothing left to do. A crash loses only the revision it was in (see `create_index_concurrently`
    for one that runs outside a transaction)."""
    await ensure_database(dsn)
    lock_holder = await asyncpg.connect(dsn)
    try:
        async with schema_lock(lock_holder, schema):
            applied = await apply_sql(lock_holder, schema, migrations_for(service_dir))
            recorded, ours = await _recorded(lock_holder), revisions(service_dir)
            if recorded == ours.heads:
                return applied  # a restart: Alembic would only find as much, 0.1 s later
            if recorded - ours.known:
                # A newer release migrated it (a rolling deploy, or one rolled back): its
                # revisions keep the schema working for this one, as every revision must.
                log.info("%s is at %s, after this release's revisions", schema, ", ".join(sorted(recorded)))
                return applied
            engine = engine_for(dsn, schema)
            try:
                async with _alembic_turn(), engine.connect() as connection:
                    try:
                        applied += await connection.run_sync(_upgrade, alembic_config(service_dir, schema))
                    except BaseException:
                        # A connection lost mid-revision is left half-closed by the autocommit
                        # block's clean-up; discard it outright (the lock holder ends as usual).
                        await connection.invalidate()
                        raise
            finally:
                await engine.dispose()
    finally:
        await lock_holder.close()
    return applied


async def migrate(
    config: Config,
    schema: str,
    service_dir: Path,
    shards: Iterable[int] | None = None,
    dsn_of: Callable[[int], str] | None = None,
) -> None:
    """`checkout-service <name> migrate` and every service's start: each served shard at once,
    each at `dsn_of(shard)` (default: the configuration's DSN; the service runtime passes the
    shard registry's)."""
    targets = list(config.shards if shards is None else shards)
    dsn = dsn_of or config.shard_dsn
    results = await asyncio.gather(*(upgrade_shard(dsn(s), schema, service_dir) for s in targets))
    for shard, applied in zip(targets, results, strict=True):
        if applied:
            log.info("migrated %s on shard %d: %s", schema, shard, ", ".join(applied))


async def write_revision(dsn: str, schema: str, service_dir: Path, metadata: MetaData, message: str) -> Path:
    """Writes the service's next revision (`0002_what_changes.py`, its id the file's name) with
    what autogenerate finds between the metadata and a shard upgraded to the newest revision: a
    draft to read and finish by hand (data, CONCURRENTLY, what autogenerate cannot see)."""
    await upgrade_shard(dsn, schema, service_dir)
    config = alembic_config(service_dir, schema, metadata)
    script = ScriptDirectory.from_config(config)
    number = 1 + max(int(r.revision.split("_", 1)[0]) for r in script.walk_revisions())
    slug = re.sub(r"\W+", "_", message.lower()).strip("_")[:40]
    engine = engine_for(dsn, schema)

    def generate(connection: Connection) -> Path:
        _hand_over(connection, config)
        written = command.revision(config, message, autogenerate=True, rev_id=f"{number:04d}_{slug}")
        assert isinstance(written, Script)
        return Path(written.path)

    try:
        async with _alembic_turn(), engine.connect() as connection:
            return await connection.run_sync(generate)
    finally:
        await engine.dispose()


# -- what revisions use ---------------------------------------------------------------------------


# The event store's SQL migrations (libs/common/migrations/), in every service's baseline.
COMMON_SQL = ("0001_event_store", "0002_dead_letters", "0002_relay_cursor")


def require_sql_applied(versions: Iterable[str]) -> None:
    """A baseline revision's upgrade (each service's `0001_baseline`): the SQL files it stands
    for, in libs/common/migrations/ and the service's migrations/, are all in
    `schema_migrations`. `upgrade_shard` applies them before any revision, each once: a fresh
    shard gets them all, a shard migrated before Alembic only those it lacks; the baseline then
    records that state. The SQL files never change and none is added (a test says so): every
    change after the baseline is a revision. Refuses a schema where they are not all applied,
    such as one migrated by Alembic alone, rather than record a baseline that is not there."""
    done = set(op.get_bind().execute(text(f"SELECT version FROM {LEGACY_LEDGER}")).scalars())
    missing = [v for v in versions if v not in done]
    if missing:
        raise MigrationError(f"the baseline's SQL migrations are not applied: {', '.join(missing)}")


def create_index_concurrently(name: str, table: str, columns: Iterable[str | TextClause], **kw: Any) -> None:
    """Builds an index on a live table without blocking its writes (CREATE INDEX CONCURRENTLY,
    which PostgreSQL refuses inside a transaction: Alembic's autocommit block commits what the
    revision did before and runs it outside). Nothing rolls a crash back here: the revision stays
    unrecorded and runs again at the next start, so a revision holds only this, or steps as safe
    to repeat. An interrupted build leaves an INVALID index that IF NOT EXISTS would take for
    done: such an index is dropped and built again."""
    with op.get_context().autocommit_block():
        invalid = op.get_bind().execute(
            text(
                "SELECT NOT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE c.relname = :name AND c.relnamespace = current_schema()::regnamespace"
            ),
            {"name": name},
        )
        if invalid.scalar():
            log.warning("dropping the invalid index %s left by an interrupted build", name)
            op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
        op.create_index(name, table, list(columns), postgresql_concurrently=True, if_not_exists=True, **kw)
